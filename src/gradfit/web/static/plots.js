// The four plots, drawn with Plotly from what the server sent. No math here beyond choosing
// a colour scale: every number comes from the server.
import { fmt, spansDecades } from "./state.js";

// The user's data never leave the machine: no "Share chart..." button (Plotly's own sends
// the chart, data and all, to Plotly's cloud), and no server to send it to.
const CONFIG = { displaylogo: false, responsive: true, showSendToCloud: false, plotlyServerURL: "",
                 modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage", "sendChartToCloud"] };
// The title sits under the row of Plotly's buttons (the modebar), which had covered it (the
// loss value itself) on hover, and always on a touch screen.
const MARGIN = { l: 50, r: 12, t: 58, b: 40 };
const title = (text, more = {}) => ({ text, yref: "container", y: 1, yanchor: "top", pad: { t: 30 }, ...more });
// legends sit at the foot of the figure, under the axis' title (at a fraction of the plot's
// height below it they had sat on the title on a phone)
const LEGEND = { orientation: "h", x: 0, xref: "container", y: 0, yref: "container", yanchor: "bottom",
                 font: { size: 11 } };
const BELOW = { ...MARGIN, b: 84 };
const ORANGE = "#e4572e", BLUE = "#2e86ab", GREY = "#999";

// A column's name as plain text in a title (Plotly reads <b>, <a href> in titles: a shared
// link's column name had become a working link)
export const plain = (t) => String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const MANY = 3000;       // from this many points, markers are drawn by WebGL (100,000 SVG
                         // markers had held the page for 7 s a slider step)
const finiteRange = (a) => { let lo = Infinity, hi = -Infinity;
  for (const v of a || []) if (isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } return [lo, hi]; };

// The y range: the data's, where the model's curve spans over ten times as much (a start
// of 1e18 on data of 1e-9 had flattened every point onto one line); else Plotly's own.
function yRange(y, curve) {
  const [lo, hi] = finiteRange(y), [clo, chi] = finiteRange(curve);
  if (!(hi >= lo) || !(chi >= clo)) return undefined;
  const span = hi - lo || Math.abs(hi) || 1;
  return chi - clo > 10 * span ? [lo - 0.25 * span, hi + 0.25 * span] : undefined;
}

// The loss by what it is, as the report names it: with σ, mse is χ²/N (it had said MSE;
// the loss plot, the landscape and the slice had gone on saying mse)
export function lossLabel(name, sigma) {
  if (!sigma) return name.toUpperCase();
  return { mse: "χ²/N", rmse: "√(χ²/N)" }[name] || `${name.toUpperCase()} (weighted by 1/σ)`;
}

// A plot Plotly cannot draw, said in gradfit's words: values whose range is below what its
// axes can scale (about 1e-306: subnormal data had shown "Something went wrong with axis
// scaling" as the model's error, under the last data's title), or else its own words.
const MIN_SPAN = 1e-300;
function spanOf(values) {
  const [lo, hi] = finiteRange(values);
  return hi >= lo ? hi - lo : NaN;
}
// axes: [name, values, advice]: what would mend a range too small (the data rescaled)
function drawn(what, axes, draw) {
  try { return draw(); } catch (e) {
    for (const [name, values, advice] of axes) {
      const s = spanOf(values);
      if (s > 0 && s < MIN_SPAN) throw new Error(`${what}: ${name} spans only ${fmt(s)}, too small a ` +
        `range to draw (the plots need one above ${fmt(MIN_SPAN)}): expected ${advice}`);
    }
    throw new Error(`${what}: the plotting library could not draw it (${e.message})`);
  }
}

// data: {x, y, x2?, sigma?, inputs, test}; view: {curve, loss, lossName, exact, parts}
export function drawData(d, view) {
  const c = view.curve || {};
  const scaled = (name) => `the data rescaled, e.g. ${name} × 1e300`;
  const x = plain(d.inputs[0]), y = plain(d.yName || "y"), x2 = plain(d.inputs[1] || "x2");
  return drawn("cannot plot the data", [[x, d.x, scaled(x)], [y, d.y, scaled(y)],
                                        ["the model's curve", c.y, "the model's parameters nearer the data"],
                                        [x2, d.x2, scaled(x2)]],
               () => drawDataNow(d, view));
}

function drawDataNow(d, view) {
  const gd = document.getElementById("plot-data");
  const heading = view.loss === undefined ? "" : `${lossLabel(view.lossName, d.sigma)} = ${fmt(view.loss)}`;
  if (d.x2) return drawSurface(gd, d, view, heading);
  const test = d.test || [];
  const pick = (arr, want) => arr ? arr.filter((_, i) => !!test[i] === want) : undefined;
  const type = d.x.length >= MANY ? "scattergl" : "scatter";
  const traces = [{
    type, x: pick(d.x, false), y: pick(d.y, false), mode: "markers", name: "data",
    marker: { color: BLUE, size: 7 },
    error_y: d.sigma ? { type: "data", array: pick(d.sigma, false), visible: true, color: "#7fb3cc", thickness: 1 } : undefined,
  }];
  const band = view.exact && view.exact.uncertainty && view.exact.uncertainty.band;
  if (band) {
    traces.push({ x: band.x, y: band.hi, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false });
    traces.push({ x: band.x, y: band.lo, mode: "lines", line: { width: 0 }, fill: "tonexty",
                  fillcolor: "rgba(46,134,171,0.18)", name: "95% band (exact fit)", hoverinfo: "skip" });
  }
  if (test.some(Boolean)) traces.push({
    type, x: pick(d.x, true), y: pick(d.y, true), mode: "markers", name: "test points",
    marker: { color: "#fff", size: 8, line: { color: ORANGE, width: 2 } },
    error_y: d.sigma ? { type: "data", array: pick(d.sigma, true), visible: true, color: ORANGE, thickness: 1 } : undefined,
  });
  if (view.curve && view.curve.x) {
    (view.curve.parts || []).forEach((p, i) => traces.push({
      x: view.curve.x, y: p, mode: "lines", name: i ? undefined : "ReLU units", showlegend: i === 0,
      line: { color: GREY, width: 1, dash: "dot" }, hoverinfo: "skip" }));
    traces.push({ x: view.curve.x, y: view.curve.y, mode: "lines", name: "model", line: { color: ORANGE, width: 2.5 } });
  }
  const range = yRange(d.y, view.curve && view.curve.y);
  Plotly.react(gd, traces, {
    title: title(heading), margin: BELOW, legend: LEGEND, showlegend: true, uirevision: "data",
    xaxis: { title: { text: plain(d.inputs[0]) } },
    yaxis: { title: { text: plain(d.yName || "y") }, ...(range ? { range, autorange: false } : { autorange: true }) },
  }, CONFIG);
}

function drawSurface(gd, d, view, heading) {
  const c = view.curve || {};
  const all = [...d.y, ...((c.z || []).flat().filter((v) => v !== null))];
  const cmin = Math.min(...all), cmax = Math.max(...all);
  const test = d.test || [];
  const traces = [
    { type: "heatmap", x: c.x1, y: c.x2, z: c.z, colorscale: "RdBu", zmin: cmin, zmax: cmax,
      colorbar: { thickness: 10, title: { text: "model" } }, name: "model", hoverinfo: "skip" },
    { x: d.x, y: d.x2, mode: "markers", name: "data (colour: y)",
      marker: { color: d.y, colorscale: "RdBu", cmin, cmax, size: 10,
                symbol: d.x.map((_, i) => test[i] ? "diamond" : "circle"),
                line: { color: d.x.map((_, i) => test[i] ? ORANGE : "#222"), width: 1.5 } } },
  ];
  Plotly.react(gd, traces, {
    title: title(heading), margin: BELOW, legend: LEGEND, uirevision: "data",
    xaxis: { title: { text: plain(d.inputs[0]) } }, yaxis: { title: { text: plain(d.inputs[1]) } },
  }, CONFIG);
}

// hist: {steps, losses, testSteps, testLosses}; head: the title's text
export function drawLoss(hist, lossName, head) {
  const traces = [{ x: hist.steps, y: hist.losses, mode: "lines", name: "training loss", line: { color: ORANGE } }];
  if (hist.testSteps.length) traces.push({ x: hist.testSteps, y: hist.testLosses, mode: "lines",
    name: "test loss", line: { color: BLUE, dash: "dash" } });
  Plotly.react("plot-loss", traces, {
    title: title(head, { font: { size: 13 } }), margin: BELOW, legend: LEGEND, showlegend: true,
    xaxis: { title: { text: "step" } }, yaxis: { type: "log", title: { text: lossName } },
    datarevision: hist.losses.length + hist.testLosses.length }, CONFIG);
}

// g: the server's grid; marks: {path, start, now, best, bestName, optimum (whether best is
// an optimum: else it is marked as a point where a fit stopped), lossName, note}
export function drawLandscape(g, marks) {
  const why = (name) => `the data rescaled, so that ${name} is nearer 1`;
  return drawn("cannot draw the landscape", g ? [[g.names[0], g.x, why(g.names[0])], [g.names[1], g.y, why(g.names[1])]] : [],
               () => drawLandscapeNow(g, marks));
}

function drawLandscapeNow(g, marks) {
  const gd = document.getElementById("plot-landscape");
  if (!g) { Plotly.react(gd, [], { title: title("one parameter: see the slice"), margin: MARGIN }, CONFIG); return; }
  const log = spansDecades(g.loss);
  const lossName = marks.lossName || g.loss_name;
  const z = log ? g.loss.map((r) => r.map((v) => (v > 0 ? Math.log10(v) : null))) : g.loss;
  const flat = z.flat().filter((v) => v !== null && isFinite(v));
  const lo = Math.min(...flat), hi = Math.max(...flat);
  const ticks = [];
  if (log) for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) ticks.push(k);
  const traces = [
    { type: "contour", x: g.x, y: g.y, z, colorscale: "Viridis", reversescale: true,
      contours: { coloring: "heatmap" }, ncontours: 25, line: { width: 0.5 }, hoverinfo: "skip",
      colorbar: { thickness: 10, title: { text: log ? `${lossName} (log)` : lossName },
                  ...(log ? { tickvals: ticks, ticktext: ticks.map((k) => `1e${k}`) } : {}) },
      showlegend: false },
    { x: marks.path.map((p) => p[0]), y: marks.path.map((p) => p[1]), mode: "lines", name: "path",
      line: { color: "#fff", width: 2.5 } },
    { x: [marks.start[0]], y: [marks.start[1]], mode: "markers", name: "start",
      marker: { color: "#fff", size: 10, symbol: "circle", line: { color: "#000", width: 2 } } },
    { x: [marks.now[0]], y: [marks.now[1]], mode: "markers", name: "now",
      marker: { color: ORANGE, size: 11, line: { color: "#fff", width: 1.5 } } },
  ];
  // the optimum: a white star ringed in black stands out on every colour of the scale; a
  // point where a fit stopped short of one (failed), a cross: it is no optimum
  const optimum = marks.optimum !== false;
  if (marks.best) traces.push({ x: [marks.best[0]], y: [marks.best[1]], mode: "markers", name: marks.bestName,
    marker: optimum ? { color: "#fff", size: 18, symbol: "star", line: { color: "#000", width: 2 } }
                    : { color: "#fff", size: 14, symbol: "x", line: { color: "#000", width: 1.5 } } });
  Plotly.react(gd, traces, {
    title: title(`${lossName} over ${g.names[0]}, ${g.names[1]}${log ? " (log colours)" : ""}` +
                 (marks.note ? ` · ${marks.note}` : ""), { font: { size: 13 } }),
    margin: BELOW, legend: LEGEND, showlegend: true, uirevision: g.names.join(","),
    xaxis: { title: { text: g.names[0] } }, yaxis: { title: { text: g.names[1] } } }, CONFIG);
  gd.dataset.log = log ? "1" : "0";
}

// A plot with nothing to show, and why (text: a short line; the reason is said beside it).
export function blankPlot(id, text) {
  Plotly.react(id, [], { title: title(text, { font: { size: 13, color: GREY } }), margin: MARGIN,
                         xaxis: { visible: false }, yaxis: { visible: false } }, CONFIG);
}

export function drawSlice(s, now, lossName) {
  if (!s) return;
  const name = lossName || s.loss_name;
  drawn("cannot draw the slice", [[s.name, s.values, `the data rescaled, so that ${s.name} is nearer 1`]], () => Plotly.react("plot-slice", [
    { x: s.values, y: s.loss, mode: "lines", name, line: { color: BLUE } },
  ], { title: title(`${name} along ${s.name}`, { font: { size: 13 } }), margin: MARGIN, showlegend: false,
       xaxis: { title: { text: s.name } }, yaxis: { title: { text: name } },
       shapes: [{ type: "line", x0: now, x1: now, yref: "paper", y0: 0, y1: 1,
                  line: { color: ORANGE, dash: "dot" } }] }, CONFIG));
}

// One PNG of the whole view: the four plots drawn onto one canvas, as they are laid out.
export async function viewPNG() {
  const ids = ["plot-data", "plot-loss", "plot-landscape", "plot-slice"];
  const boxes = ids.map((id) => document.getElementById(id).getBoundingClientRect());
  const x0 = Math.min(...boxes.map((b) => b.left)), y0 = Math.min(...boxes.map((b) => b.top));
  const w = Math.max(...boxes.map((b) => b.right)) - x0, h = Math.max(...boxes.map((b) => b.bottom)) - y0;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(w); canvas.height = Math.round(h);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  for (let i = 0; i < ids.length; i++) {
    const b = boxes[i];
    const url = await Plotly.toImage(ids[i], { format: "png", width: Math.round(b.width), height: Math.round(b.height) });
    const img = new Image();
    await new Promise((ok) => { img.onload = ok; img.src = url; });
    ctx.drawImage(img, b.left - x0, b.top - y0);
  }
  return canvas.toDataURL("image/png");
}

// While a slider moves, a dot over the landscape and a line over the slice follow it with
// no redraw (a contour's redraw holds the page's thread for tens of ms, which a drag cannot
// wait for); the plots are redrawn when the drag rests, and the marks go. now: [x, y] on
// the landscape's axes (y null: a vertical line).
export function dragMark(id, now) {
  const gd = document.getElementById(id), wrap = gd.parentElement;
  let el = wrap.querySelector(".drag-mark");
  const area = gd.querySelector(".nsewdrag"), L = gd.layout || {};
  const rx = L.xaxis && L.xaxis.range, ry = L.yaxis && L.yaxis.range;
  if (!now || !area || !rx || !ry) { if (el) el.hidden = true; return; }
  if (!el) {
    el = document.createElement("div");
    wrap.appendChild(el);
  }
  const a = area.getBoundingClientRect(), w = wrap.getBoundingClientRect();
  const fx = (now[0] - rx[0]) / (rx[1] - rx[0]);
  const fy = now[1] === null ? 0.5 : (now[1] - ry[0]) / (ry[1] - ry[0]);
  el.className = now[1] === null ? "drag-mark line" : "drag-mark dot";
  el.hidden = !(fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1);
  el.style.left = `${a.left - w.left + fx * a.width}px`;
  el.style.top = now[1] === null ? `${a.top - w.top}px` : `${a.top - w.top + (1 - fy) * a.height}px`;
  if (now[1] === null) el.style.height = `${a.height}px`;
}
export function dropDragMark(id) {
  const el = document.getElementById(id).parentElement.querySelector(".drag-mark");
  if (el) el.hidden = true;
}
