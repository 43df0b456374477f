// gradfit playground. The page holds no math: every number it shows comes from the server.
// Its whole state lives in the URL hash, so a copied link reproduces it.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULTS = {
  data: "lesson", n: 20, mult: 0.15, add: 1.5, dseed: 42,
  model: "a*x^2 + b*x + c", p: { a: 1.1, b: 1.1, c: 1.1 }, p0: { a: 1.1, b: 1.1, c: 1.1 },
  loss: "mae", opt: "gd", lr: 0.01, spf: 10, maxsteps: 100000, seed: 0, step: 0,
  added: [], drop: [], move: {}, pa: "", pb: "", ps: "", csv: null,
};
const JSON_KEYS = ["p", "p0", "added", "drop", "move", "csv"];
const SPF = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];
const MAX_SLIDERS = 16;
const MAX_TRAIL = 3000;

let S = structuredClone(DEFAULTS);
let meta = null;
let base = { x: [], y: [] };          // the dataset as generated or uploaded
let pts = { x: [], y: [], origin: [] };  // after the user's edits; origin: ["b", i] | ["a", j]
let model = { names: [], kind: "expression", initial: {} };
let exact = null;                      // {params, loss}
let lossHist = { steps: [], losses: [] };
let trail = [];                        // params per frame, for the landscape's path
let ws = null, playing = false, lastResult = null;
let csvFile = null;

// ------------------------------------------------------------------ state <-> URL
function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const s = structuredClone(DEFAULTS);
  for (const [k, v] of q) {
    if (!(k in DEFAULTS)) continue;
    try {
      if (JSON_KEYS.includes(k)) s[k] = JSON.parse(v);
      else if (typeof DEFAULTS[k] === "number") s[k] = Number(v);
      else s[k] = v;
    } catch (e) { /* a bad field keeps its default */ }
  }
  if (q.has("model") && !q.has("p")) { s.p = {}; s.p0 = {}; }
  if (q.has("data") && s.data !== DEFAULTS.data && !q.has("n")) s.n = -1;   // the dataset's own
  return s;
}

let hashTimer = null;
function writeHash() {
  clearTimeout(hashTimer);
  hashTimer = setTimeout(() => history_replace(), 100);
}
function history_replace() {
  const q = new URLSearchParams();
  for (const k of Object.keys(DEFAULTS)) {
    const v = S[k];
    if (v === null || v === "" ) continue;
    q.set(k, JSON_KEYS.includes(k) ? JSON.stringify(v) : String(v));
  }
  window.history.replaceState(null, "", "#" + q.toString());
}

// ------------------------------------------------------------------ server
async function api(path, body) {
  const r = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(typeof out.detail === "string" ? out.detail : JSON.stringify(out.detail));
  return out;
}
const dataBody = () => ({ x: pts.x, y: pts.y });
const problem = () => ({ data: dataBody(), model: S.model, loss: S.loss });

// ------------------------------------------------------------------ data
async function loadData() {
  $("data-error").textContent = "";
  if (S.data === "csv") {
    if (!S.csv) { S.data = "lesson"; return loadData(); }
    base = { x: S.csv.x, y: S.csv.y };
  } else {
    const d = meta.datasets[S.data] || meta.datasets.lesson;
    if (S.n < 0) { S.n = d.n; S.mult = d.mult; S.add = d.add; }
    try {
      base = await api("/api/data", { name: S.data, n: S.n, mult: S.mult, add: S.add, seed: S.dseed });
    } catch (e) { $("data-error").textContent = e.message; return; }
  }
  rebuildPoints();
}

function rebuildPoints() {
  const x = [], y = [], origin = [];
  const drop = new Set(S.drop);
  for (let i = 0; i < base.x.length; i++) {
    if (drop.has(i)) continue;
    const m = S.move[i];
    x.push(m ? m[0] : base.x[i]); y.push(m ? m[1] : base.y[i]); origin.push(["b", i]);
  }
  S.added.forEach((p, j) => { x.push(p[0]); y.push(p[1]); origin.push(["a", j]); });
  pts = { x, y, origin };
}

function editPoint(k, xy) {        // move point k (index into pts) to xy, or remove it (xy null)
  const [kind, i] = pts.origin[k];
  if (kind === "a") {
    if (xy) S.added[i] = xy; else S.added.splice(i, 1);
  } else if (xy) S.move[i] = xy;
  else { S.drop.push(i); delete S.move[i]; }
  rebuildPoints();
}

// ------------------------------------------------------------------ model and sliders
async function setModel(keepParams) {
  $("model-error").textContent = "";
  let info;
  try {
    info = await api("/api/model", { model: S.model, data: dataBody(), seed: S.seed });
  } catch (e) { $("model-error").textContent = e.message; return false; }
  model = { names: info.param_names, kind: info.kind, initial: info.initial,
            constants: info.constants || {} };
  const fits = (p) => p && model.names.every((n) => n in p) && Object.keys(p).length === model.names.length;
  if (!keepParams || !fits(S.p)) S.p = { ...info.initial, ...pick(S.p, model.names) };
  if (!keepParams || !fits(S.p0)) S.p0 = { ...S.p };
  $("btn-add-relu").hidden = info.kind !== "relu";
  for (const id of ["pa", "pb", "ps"]) fillSelect($(id), model.names);
  if (!model.names.includes(S.pa)) S.pa = model.names[0];
  if (!model.names.includes(S.pb) || S.pb === S.pa) S.pb = model.names.find((n) => n !== S.pa) || "";
  if (!model.names.includes(S.ps)) S.ps = model.names[model.names.length - 1];
  $("pa").value = S.pa; $("pb").value = S.pb; $("ps").value = S.ps;
  buildSliders();
  return true;
}
function pick(p, names) { const o = {}; for (const n of names) if (p && n in p) o[n] = p[n]; return o; }

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  if (model.names.length > MAX_SLIDERS) {
    box.innerHTML = `<div class="hint">${model.names.length} parameters: too many for sliders; press play.</div>`;
    return;
  }
  for (const name of model.names) {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label><span class="name" title="${name}">${name}</span>
      <input type="range" id="slider-${cssId(name)}" data-name="${name}">
      <output id="out-${cssId(name)}"></output></label>`;
    box.appendChild(row);
    const input = row.querySelector("input");
    setSliderRange(input, S.p[name]);
    input.addEventListener("input", () => {
      S.p[name] = Number(input.value);
      $(`out-${cssId(name)}`).textContent = fmt(S.p[name]);
      onParamsByHand();
    });
  }
  const consts = Object.entries(model.constants);
  if (consts.length) {          // e and pi are constants, never sliders: say so
    const hint = document.createElement("div");
    hint.className = "hint";
    hint.id = "constants";
    hint.textContent = "constants, not parameters: " +
      consts.map(([k, v]) => `${k} = ${fmt(v)} (to fit one, name it ${k}0)`).join(", ");
    box.appendChild(hint);
  }
  showSliders();
}
const cssId = (n) => n.replace(/[^A-Za-z0-9_-]/g, "_");
function setSliderRange(input, v) {
  const half = Math.max(5, 2 * Math.abs(v || 0));
  input.min = String(-half); input.max = String(half); input.step = String(half / 1000);
}
function showSliders() {
  for (const name of model.names) {
    const input = $(`slider-${cssId(name)}`);
    if (!input) continue;
    const v = S.p[name];
    if (v < Number(input.min) || v > Number(input.max)) setSliderRange(input, v);
    input.value = String(v);
    $(`out-${cssId(name)}`).textContent = fmt(v);
  }
}

// ------------------------------------------------------------------ evaluation (throttled)
let evalBusy = false, evalAgain = false;
async function evaluate() {
  if (evalBusy) { evalAgain = true; return; }
  evalBusy = true;
  try {
    const r = await api("/api/eval", { ...problem(), params: S.p, optimum: exact && exact.params });
    showEval(r.loss, r.curve, r.distance);
    $("model-error").textContent = "";
  } catch (e) { $("model-error").textContent = e.message; }
  evalBusy = false;
  if (evalAgain) { evalAgain = false; evaluate(); }
}

let landBusy = false, landAgain = false, landTimer = null;
function landscapeSoon(delay = 120) {
  if (landTimer) return;
  landTimer = setTimeout(() => { landTimer = null; landscape(); }, delay);
}
async function landscape() {
  if (landBusy) { landAgain = true; return; }
  if (!model.names.length) return;
  landBusy = true;
  try {
    const two = model.names.length >= 2;
    const path = trail.map((p) => [p[S.pa], p[S.pb]]);
    path.push([S.p[S.pa], S.p[S.pb]], [S.p0[S.pa], S.p0[S.pb]]);
    if (exact) path.push([exact.params[S.pa], exact.params[S.pb]]);
    const r = await api("/api/landscape", {
      ...problem(), params: S.p, names: two ? [S.pa, S.pb] : null, slice: S.ps,
      resolution: 61, path: two ? path : null,
    });
    drawLandscape(r.grid); drawSlice(r.slice);
  } catch (e) { /* shown by evaluate */ }
  landBusy = false;
  if (landAgain) { landAgain = false; landscapeSoon(); }
}

async function refreshExact() {
  exact = null;
  try {
    exact = await api("/api/exact", { ...problem(), p0: S.p, seed: S.seed });
    $("exact-info").textContent = `exact fit (${exact.optimizer}): loss ${fmt(exact.loss)} at ` +
      Object.entries(exact.params).slice(0, 6).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
  } catch (e) { $("exact-info").textContent = ""; }
}

// while a slider moves, only the curve and loss follow it (the < 100 ms path); the landscape
// and slice are redrawn once it rests, so their heavier drawing never delays the curve
let restTimer = null;
function onParamsByHand() {
  evaluate(); writeHash();
  clearTimeout(restTimer);
  restTimer = setTimeout(() => landscape(), 200);
}

async function refreshAll(keepParams = true) {
  if (!(await setModel(keepParams))) { clearCurves(); return; }
  await refreshExact();
  await evaluate();
  drawStart();
  landscape();
  writeHash();
}

// ------------------------------------------------------------------ plots
const fmt = (v) => (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toPrecision(6).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
const lossTitle = (v) => `${S.loss.toUpperCase()} = ${v === null || v === undefined ? "–" : Number(v).toPrecision(6)}`;
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const MARGIN = { l: 50, r: 15, t: 40, b: 40 };

function drawData() {
  Plotly.react("plot-data", [
    { x: pts.x, y: pts.y, mode: "markers", name: "data", marker: { size: 8, color: "#1f3b73" } },
    { x: [], y: [], mode: "lines", name: "start", line: { dash: "dot", color: "#aaa" } },
    { x: [], y: [], mode: "lines", name: "current", line: { color: "#e4572e", width: 3 } },
  ], dataLayout(), PLOT_CONFIG);
}
function dataLayout(title) {
  return { title: { text: title || lossTitle(null) }, margin: MARGIN, dragmode: false,
           hovermode: false, showlegend: true, legend: { x: 0, y: 1, bgcolor: "rgba(255,255,255,.6)" },
           xaxis: { title: { text: "x" } }, yaxis: { title: { text: "y" } } };
}
let startCurve = null;
async function drawStart() {
  try {
    const r = await api("/api/eval", { ...problem(), params: S.p0 });
    startCurve = r.curve;
    Plotly.restyle("plot-data", { x: [startCurve.x], y: [startCurve.y] }, [1]);
  } catch (e) { /* the model error is shown elsewhere */ }
}
function showEval(loss, curve, distance) {
  const gd = $("plot-data");
  const traces = gd.data ? gd.data.length : 0;
  Plotly.update(gd, { x: [pts.x, curve.x], y: [pts.y, curve.y] }, { "title.text": lossTitle(loss) }, [0, 2]);
  const parts = curve.parts || [];
  const extra = traces - 3;
  if (extra > parts.length) Plotly.deleteTraces(gd, [...Array(extra - parts.length).keys()].map((i) => 3 + parts.length + i));
  if (parts.length) {
    const have = Math.min(extra, parts.length);
    if (have) Plotly.restyle(gd, { x: parts.slice(0, have).map(() => curve.x), y: parts.slice(0, have) },
                             [...Array(have).keys()].map((i) => 3 + i));
    if (parts.length > have) Plotly.addTraces(gd, parts.slice(have).map((p, i) => ({
      x: curve.x, y: p, mode: "lines", name: `unit ${have + i + 1}`, showlegend: false,
      line: { width: 1, color: "rgba(46,134,171,.7)" } })));
  }
  $("loss-value").textContent = fmt(loss);
  $("loss-value").dataset.loss = loss === null ? "" : String(loss);
  $("distance").textContent = fmt(distance);
}
function clearCurves() {
  Plotly.restyle("plot-data", { x: [[], []], y: [[], []] }, [1, 2]);
  Plotly.relayout("plot-data", { "title.text": "the model has an error" });
}

function drawLoss(label) {
  const lr = S.opt === "auto" || S.opt === "lm" ? "" : ` · lr ${fmt(S.lr)}`;
  Plotly.react("plot-loss", [{ x: lossHist.steps, y: lossHist.losses, mode: "lines", name: "loss",
                               line: { color: "#e4572e" } }],
    { title: { text: `${S.loss} vs steps · ${S.opt}${lr}${label ? " · " + label : ""}` },
      margin: MARGIN, xaxis: { title: { text: "step" } }, datarevision: lossHist.losses.length,
      yaxis: { type: "log", title: { text: S.loss } }, showlegend: false }, PLOT_CONFIG);
}

function drawLandscape(g) {
  const gd = $("plot-landscape");
  if (!g) { Plotly.react(gd, [], { title: { text: "one parameter: see the slice" }, margin: MARGIN }); return; }
  const path = trail.map((p) => [p[g.names[0]], p[g.names[1]]]);
  const traces = [
    { type: "contour", x: g.x, y: g.y, z: g.loss, colorscale: "Viridis", reversescale: true,
      contours: { coloring: "heatmap" }, ncontours: 25, line: { width: 0.5 },
      colorbar: { thickness: 10 }, hoverinfo: "skip", name: g.loss_name },
    { x: path.map((p) => p[0]), y: path.map((p) => p[1]), mode: "lines", name: "path",
      line: { color: "#fff", width: 2 } },
    { x: [S.p0[g.names[0]]], y: [S.p0[g.names[1]]], mode: "markers", name: "start",
      marker: { color: "#fff", size: 9, symbol: "circle-open", line: { width: 2 } } },
    { x: [S.p[g.names[0]]], y: [S.p[g.names[1]]], mode: "markers", name: "now",
      marker: { color: "#e4572e", size: 11 } },
  ];
  if (exact) traces.push({ x: [exact.params[g.names[0]]], y: [exact.params[g.names[1]]],
    mode: "markers", name: "exact", marker: { color: "#ffd400", size: 14, symbol: "star" } });
  Plotly.react(gd, traces, {
    title: { text: `${g.loss_name} over ${g.names[0]}, ${g.names[1]} (others at their values)` },
    margin: MARGIN, showlegend: false, xaxis: { title: { text: g.names[0] } },
    yaxis: { title: { text: g.names[1] } } }, PLOT_CONFIG);
}

function drawSlice(s) {
  if (!s) return;
  Plotly.react("plot-slice", [
    { x: s.values, y: s.loss, mode: "lines", name: s.loss_name, line: { color: "#2e86ab" } },
    { x: [S.p[s.name]], y: [null], mode: "markers", name: "now", marker: { color: "#e4572e", size: 10 } },
  ], { title: { text: `${s.loss_name} along ${s.name}` }, margin: MARGIN, showlegend: false,
       xaxis: { title: { text: s.name } }, yaxis: { title: { text: s.loss_name } },
       shapes: [{ type: "line", x0: S.p[s.name], x1: S.p[s.name], yref: "paper", y0: 0, y1: 1,
                  line: { color: "#e4572e", dash: "dot" } }] }, PLOT_CONFIG);
}

// ------------------------------------------------------------------ clicking and dragging points
function plotCoords(ev) {
  const gd = $("plot-data"), fl = gd._fullLayout;
  if (!fl) return null;
  const xa = fl.xaxis, ya = fl.yaxis, box = gd.getBoundingClientRect();
  const px = ev.clientX - box.left - xa._offset, py = ev.clientY - box.top - ya._offset;
  if (px < 0 || py < 0 || px > xa._length || py > ya._length) return null;
  return { px, py, x: xa.p2l(px), y: ya.p2l(py), xa, ya };
}
function nearestPoint(c) {
  let best = -1, bestD = 10;                      // pixels
  for (let i = 0; i < pts.x.length; i++) {
    const d = Math.hypot(c.xa.l2p(pts.x[i]) - c.px, c.ya.l2p(pts.y[i]) - c.py);
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}
let dragging = -1;
function onMouseDown(ev) {
  if (ev.button !== 0) return;
  const c = plotCoords(ev);
  if (!c) return;
  ev.preventDefault(); ev.stopPropagation();
  const k = nearestPoint(c);
  if (ev.shiftKey) {
    if (k >= 0 && pts.x.length > 1) { editPoint(k, null); afterDataEdit(); }
    return;
  }
  if (k >= 0) { dragging = k; return; }
  S.added.push([c.x, c.y]);
  rebuildPoints();
  afterDataEdit();
}
function onMouseMove(ev) {
  if (dragging < 0) return;
  const c = plotCoords(ev);
  if (!c) return;
  editPoint(dragging, [c.x, c.y]);
  evaluate();
}
function onMouseUp() {
  if (dragging < 0) return;
  dragging = -1;
  afterDataEdit();
}
async function afterDataEdit() {
  evaluate(); writeHash();
  await refreshExact();
  evaluate(); drawStart(); landscapeSoon();
}

// ------------------------------------------------------------------ runs
function runBody(steps, paced) {
  return { type: "start", ...problem(), optimizer: S.opt, lr: S.lr, steps, p0: S.p, seed: S.seed,
           steps_per_frame: paced ? S.spf : Math.max(1, steps), step_offset: S.step, paced,
           optimum: exact && exact.params, optimum_loss: exact && exact.loss };
}
function startRun(steps, paced = true) {
  if (ws) return;
  $("run-error").textContent = "";
  if (!trail.length) trail.push({ ...S.p });
  const sock = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/run`);
  ws = sock;
  playing = paced;
  setPlayButton();
  sock.onopen = () => sock.send(JSON.stringify(runBody(steps, paced)));
  sock.onmessage = (ev) => onRunMessage(JSON.parse(ev.data));
  sock.onclose = () => { if (ws === sock) { ws = null; playing = false; setPlayButton(); } };
}
let lastLandscape = 0;
function onRunMessage(m) {
  if (m.type === "error" || m.type === "busy") { $("run-error").textContent = m.detail; return; }
  if (m.type === "warning") { $("run-error").textContent = m.detail; return; }
  if (m.type === "frame" || m.type === "done") {
    if (m.type === "frame") {
      m.losses.forEach((v, i) => { lossHist.steps.push(m.first_step + i); lossHist.losses.push(v); });
      S.step = m.step + 1;
    } else {
      S.step = m.step;
      lastResult = m.result;
    }
    S.p = { ...m.params };
    trail.push({ ...m.params });
    if (trail.length > MAX_TRAIL) trail = trail.filter((_, i) => i % 2 === 0);
    showSliders();
    showEval(m.loss, m.curve, m.distance);
    drawLoss(m.label);
    $("step").textContent = String(S.step);
    const now = performance.now();
    if (m.type === "done" || now - lastLandscape > 300) { lastLandscape = now; landscapeSoon(0); }
    if (m.type === "done") {
      $("run-status").textContent = `${m.reason}: ${m.message}`;
      if (m.type === "done" && m.loss !== null) evaluate();   // the loss after the last step
      writeHash();
    } else $("run-status").textContent = `running: ${m.optimizer}, lr ${fmt(m.lr)}`;
  }
}
function setPlayButton() { $("btn-play").textContent = playing ? "❚❚ pause" : "▶ play"; }
function sendSet(change) { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "set", ...change })); }

function resetRun() {
  if (ws) ws.send("cancel");
  S.p = { ...S.p0 }; S.step = 0; lossHist = { steps: [], losses: [] }; trail = [];
  lastResult = null;
  $("step").textContent = "0"; $("run-status").textContent = "";
  showSliders(); drawLoss(); evaluate(); landscape(); writeHash();
}

// ------------------------------------------------------------------ exports
function download(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
function exportJSON() {
  download("gradfit-run.json", JSON.stringify({
    state: S, link: location.href, data: dataBody(), params: S.p, exact, result: lastResult,
    history: { steps: lossHist.steps, losses: lossHist.losses },
  }, null, 1), "application/json");
}
function exportPNG() {
  for (const id of ["plot-data", "plot-loss", "plot-landscape", "plot-slice"])
    Plotly.downloadImage(id, { format: "png", filename: `gradfit-${id.slice(5)}`, width: 800, height: 500 });
}
async function showCode() {
  const edited = S.data === "csv" || S.added.length || S.drop.length || Object.keys(S.move).length;
  try {
    const r = await api("/api/code", {
      data: S.data === "csv" ? { source: "csv", file: S.csv && S.csv.name, x: S.csv && S.csv.xn, y: S.csv && S.csv.yn }
                             : { name: S.data, n: S.n, mult: S.mult, add: S.add, seed: S.dseed },
      model: S.model, loss: S.loss, optimizer: S.opt, lr: S.lr, steps: S.maxsteps, p0: S.p0,
      seed: S.seed, points: edited ? dataBody() : null });
    $("code").textContent = r.code;
    $("code-dialog").showModal();
  } catch (e) { $("run-error").textContent = e.message; }
}

// ------------------------------------------------------------------ CSV
async function uploadCSV() {
  if (!csvFile) return;
  const form = new FormData();
  form.append("file", csvFile);
  if ($("csv-x").value) form.append("x", $("csv-x").value);
  if ($("csv-y").value) form.append("y", $("csv-y").value);
  $("data-error").textContent = "";
  const r = await fetch("/api/csv", { method: "POST", body: form });
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) { $("data-error").textContent = out.detail; return; }
  fillSelect($("csv-x"), out.columns); fillSelect($("csv-y"), out.columns);
  $("csv-x").value = out.x_name; $("csv-y").value = out.y_name;
  $("csv-cols").hidden = false;
  S.data = "csv"; S.added = []; S.drop = []; S.move = {};
  S.csv = { name: out.name, xn: out.x_name, yn: out.y_name,
            x: out.x.length <= 2000 ? out.x : [], y: out.y.length <= 2000 ? out.y : [] };
  base = { x: out.x, y: out.y };
  if (out.x.length > 2000) $("data-error").textContent = "more than 2000 points: a copied link will not hold them";
  $("dataset").value = "csv";
  rebuildPoints(); drawData(); await refreshAll(true);
}

// ------------------------------------------------------------------ wiring
function fillSelect(sel, values, labels) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v; o.textContent = labels ? labels[v] : v;
    sel.appendChild(o);
  }
}
function showControls() {
  $("dataset").value = S.data; $("n").value = S.n; $("mult").value = S.mult; $("add").value = S.add;
  $("n-out").textContent = S.n; $("mult-out").textContent = S.mult; $("add-out").textContent = S.add;
  $("dseed").value = S.dseed; $("model").value = S.model; $("loss").value = S.loss;
  $("optimizer").value = S.opt; $("lr").value = Math.log10(S.lr); $("lr-out").textContent = fmt(S.lr);
  $("spf").value = S.spf; $("maxsteps").value = S.maxsteps; $("step").textContent = S.step;
  const d = meta.datasets[S.data];
  $("dataset-desc").textContent = d ? d.description : (S.csv ? S.csv.name : "");
}

function wire() {
  const onData = async () => {
    S.added = []; S.drop = []; S.move = {};
    showControls(); await loadData(); drawData(); await refreshAll(true);
  };
  $("dataset").addEventListener("change", () => {
    if ($("dataset").value === "csv") { $("csv").click(); return; }
    S.data = $("dataset").value;
    const d = meta.datasets[S.data];
    Object.assign(S, { n: d.n, mult: d.mult, add: d.add });
    if (d.model !== S.model) { S.model = d.model; S.p = {}; S.p0 = {}; resetHistory(); }
    onData();
  });
  for (const id of ["n", "mult", "add"]) {
    $(id).addEventListener("input", () => { $(`${id}-out`).textContent = $(id).value; });
    $(id).addEventListener("change", () => { S[id] = Number($(id).value); onData(); });
  }
  $("dseed").addEventListener("change", () => { S.dseed = Number($("dseed").value); onData(); });
  $("btn-clear-edits").addEventListener("click", () => { onData(); });
  $("csv").addEventListener("change", () => { csvFile = $("csv").files[0]; $("csv-x").innerHTML = ""; $("csv-y").innerHTML = ""; uploadCSV(); });
  $("csv-x").addEventListener("change", uploadCSV);
  $("csv-y").addEventListener("change", uploadCSV);
  let modelTimer = null;
  $("model").addEventListener("input", () => {
    clearTimeout(modelTimer);
    modelTimer = setTimeout(() => { S.model = $("model").value; resetHistory(); refreshAll(true); }, 250);
  });
  $("model-examples").addEventListener("change", () => {
    const v = $("model-examples").value;
    if (!v) return;
    $("model").value = v; S.model = v; resetHistory(); refreshAll(true);
    $("model-examples").value = "";
  });
  $("btn-add-relu").addEventListener("click", async () => {
    const k = Number((S.model.split(":")[1] || "1").trim()) + 1;
    S.model = `relu:${k}`; $("model").value = S.model;
    const keep = { ...S.p };
    if (await setModel(true)) { S.p = { ...S.p, ...pick(keep, model.names) }; showSliders(); }
    resetHistory(); refreshAll(true);
  });
  $("loss").addEventListener("change", async () => {
    S.loss = $("loss").value; sendSet({ loss: S.loss });
    await refreshExact(); evaluate(); landscape(); drawLoss(); writeHash();
  });
  $("optimizer").addEventListener("change", () => {
    S.opt = $("optimizer").value;
    S.lr = meta.optimizers[S.opt].default_lr; showControls();
    sendSet({ optimizer: S.opt, lr: S.lr }); drawLoss(); writeHash();
  });
  $("lr").addEventListener("input", () => {
    S.lr = Number(Math.pow(10, Number($("lr").value)).toPrecision(3));
    $("lr-out").textContent = fmt(S.lr);
  });
  $("lr").addEventListener("change", () => { sendSet({ lr: S.lr }); drawLoss(); writeHash(); });
  $("spf").addEventListener("change", () => { S.spf = Number($("spf").value); writeHash(); });
  $("maxsteps").addEventListener("change", () => { S.maxsteps = Number($("maxsteps").value); writeHash(); });
  $("btn-play").addEventListener("click", () => {
    if (playing && ws) { ws.send("cancel"); return; }
    startRun(Math.max(1, S.maxsteps - S.step), true);
  });
  $("btn-step").addEventListener("click", () => { if (!ws) startRun(1, false); });
  $("btn-reset").addEventListener("click", resetRun);
  for (const id of ["pa", "pb", "ps"]) $(id).addEventListener("change", () => {
    S[id] = $(id).value; landscape(); writeHash();
  });
  $("btn-json").addEventListener("click", exportJSON);
  $("btn-png").addEventListener("click", exportPNG);
  $("btn-code").addEventListener("click", showCode);
  $("btn-link").addEventListener("click", () => { history_replace(); navigator.clipboard && navigator.clipboard.writeText(location.href).catch(() => {}); });
  const gd = $("plot-data");
  gd.addEventListener("mousedown", onMouseDown, true);
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  window.addEventListener("hashchange", () => {
    const s = readHash();
    if (JSON.stringify(s) !== JSON.stringify(S)) location.reload();
  });
}
function resetHistory() { lossHist = { steps: [], losses: [] }; trail = []; S.step = 0; drawLoss(); $("step").textContent = "0"; }

async function main() {
  meta = await (await fetch("/api/meta")).json();
  fillSelect($("dataset"), [...Object.keys(meta.datasets), "csv"],
             Object.fromEntries([...Object.keys(meta.datasets).map((k) => [k, k]), ["csv", "CSV file…"]]));
  fillSelect($("loss"), ["mae", "mse", "huber"].filter((k) => k in meta.losses));
  fillSelect($("optimizer"), meta.page_optimizers);
  fillSelect($("spf"), SPF);
  fillSelect($("model-examples"), ["", ...meta.models.examples],
             Object.fromEntries([["", "examples…"], ...meta.models.examples.map((k) => [k, k])]));
  S = readHash();
  if (S.data !== "csv" && !(S.data in meta.datasets)) S.data = "lesson";
  await loadData();
  showControls();
  drawData(); drawLoss();
  wire();
  await refreshAll(true);
  document.body.dataset.ready = "1";
}
main();
