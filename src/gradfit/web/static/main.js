// gradfit playground: wiring. The page holds no math: every number comes from the server.
// The state is one value (state.js) and lives in the URL; a link replays the run to its step.
import { UNREACHABLE, api, get, upload } from "./api.js";
import { rebuild, wireEditing } from "./edit.js";
import { Player } from "./player.js";
import { blankPlot, dragMark, drawData, drawLandscape, drawLoss, drawSlice, dropDragMark, lossLabel, viewPNG } from "./plots.js";
import { codeBody, csvFields, csvMenus, download, fill, uncertaintyHTML } from "./panels.js";
import { makeSliders, setSliders } from "./sliders.js";
import { addChange, configText, decode, encode, fmt, freeStart, labelText, runSettings, settingsAt } from "./state.js";

const $ = (id) => document.getElementById(id);
const MAX_SLIDERS = 16, MAX_TRAIL = 3000, MAX_LINK_POINTS = 2000, MAX_LINK_COLUMNS = 1000;
const TEST_FRACTIONS = [0, 0.1, 0.2, 0.3, 0.5];

let meta, S;
let base = { x: [], y: [], inputs: ["x"] };        // the data as generated or uploaded
let pts = { x: [], y: [], origin: [] };            // after the user's edits
let model = { names: [], kind: "expression", flexible: false };
let exact = null, lastEval = null, lastResult = null, lastLabel = { label: null, judged: 0 };
let hist, trail = [];
// a CSV: the file asked for, the columns asked of it ({}: the server's choice), whether its
// rows with gaps go; and the upload on the plot ({file, dropNaN, out}), which the column
// menus show (a refused file or choice had left the menus, and the next click, on it)
let csvFile = null, csvAsk = {}, dropNaN = false, loaded = null;
let sent = null, sentAt = 0;                       // a change sent to the live run, not yet applied
// what the link said that the page could not take (a key twice, a bad value, an unknown
// key): shown with the run's settings, never dropped without a word
let linkNotes = [];
// every optimizer option the page was given (a link's, the weight decay): S.options holds
// those the run's optimizer takes, the others wait for one that takes them (and are said)
let optionMemo = {};
const cur = () => ({ ...settingsAt(S, S.step), ...(sent || {}) });   // the settings in force now
const editable = () => !base.x2 && !base.sigma;

// ------------------------------------------------------------------ data
function dataBody() {
  const d = { x: pts.x, y: pts.y, inputs: base.inputs };
  if (base.x2) d.x2 = base.x2;
  if (base.sigma) d.sigma = base.sigma;
  return d;
}
const problem = () => ({ data: dataBody(), model: S.model, loss: cur().loss, delta: S.delta, test_fraction: S.test, split_seed: S.split });

async function loadData() {
  $("data-error").textContent = "";
  try { base = await fetchData(); } catch (e) {
    // a link whose data are gone (points left out of it, a shared key no longer held):
    // said, and the lesson's data instead (a dummy point had been plotted as "your data")
    // the link's run was of its data: not replayed on the lesson's (a run of 179 steps of
    // another model had been, and the link rewritten to claim it)
    $("data-error").textContent = e.message + (S.step > 0 ? `; the link's run (to step ${S.step}) was of that data, so it is not replayed` : "");
    Object.assign(S, { data: "lesson", n: -1, mult: -1, add: -1, csv: null, added: [], drop: [], move: {},
                       step: 0, changes: [] });
    try { base = await fetchData(); } catch (e2) { base = { x: [0], y: [0], inputs: ["x"] }; }
  }
  base.inputs = base.inputs || ["x"];
  pts = editable() ? rebuild(base, S) : { x: base.x, y: base.y, origin: [] };
  showDataControls();
}

async function fetchData() {
  if (S.data === "csv") {
    if (S.csv && S.csv.x.length) return { ...S.csv };
    throw new Error(`this link does not hold its data (a file of more than ${MAX_LINK_POINTS} points): ` +
                    "open the file again with “CSV file…”");
  }
  if (S.data.startsWith("shared:")) return await get(`/api/shared/${encodeURIComponent(S.data.slice(7))}`);
  if (!(S.data in meta.datasets)) S.data = "lesson";
  const d = meta.datasets[S.data];
  for (const k of ["n", "mult", "add"]) if (S[k] < 0) S[k] = d[k];      // each left unset: the dataset's
  return await api("/api/data", { name: S.data, n: S.n, mult: S.mult, add: S.add, seed: S.dseed });
}

function showDataControls() {
  const builtin = S.data in meta.datasets;
  $("gen").hidden = !builtin;                     // generator sliders: generated data only
  const d = meta.datasets[S.data];
  $("dataset-desc").textContent = d ? d.description : `${base.name || "your data"}: y = ${base.yName || base.y_name || "y"}`;
  $("model-label").textContent = `model of ${base.inputs.join(", ")}`;
  $("csv-cols").hidden = S.data !== "csv";
}

// ------------------------------------------------------------------ model and sliders
async function setModel(keep) {
  $("model-error").textContent = "";
  let info;
  try { info = await api("/api/model", { model: S.model, data: dataBody(), seed: S.seed }); }
  catch (e) { $("model-error").textContent = e.message; return false; }
  model = { names: info.param_names, kind: info.kind, flexible: info.flexible,
            constants: info.constants || {}, scales: info.scales || {} };
  // another model while a run is live or paused: that run was of the old one (with the same
  // parameter names it had gone on fitting it under the new model's name)
  if (modelText !== null && modelText !== S.model && (S.step > 0 || player.live)) resetRun();
  modelText = S.model;
  const fits = (p) => p && model.names.every((n) => Object.hasOwn(p, n)) && Object.keys(p).length === model.names.length;
  const held = pick(S.fixed, model.names);        // a fixed parameter starts, and stays, there
  if (S.p0) Object.assign(S.p0, held);
  if (!keep || !fits(S.p0)) { S.p0 = { ...info.initial, ...pick(S.p0, model.names), ...held }; resetRun(); }
  if (!S.p || !fits(S.p)) S.p = { ...S.p0 };
  if (S.step === 0) Object.assign(S.p, held);
  $("btn-add-relu").hidden = info.kind !== "relu";
  for (const id of ["pa", "pb", "ps"]) fill($(id), model.names);
  if (!model.names.includes(S.pa)) S.pa = model.names[0];
  if (!model.names.includes(S.pb) || S.pb === S.pa) S.pb = model.names.find((n) => n !== S.pa) || "";
  if (!model.names.includes(S.ps)) S.ps = model.names[model.names.length - 1];
  $("pa").value = S.pa; $("pb").value = S.pb; $("ps").value = S.ps;
  buildSliders();
  return true;
}
let modelText = null;                    // the model the sliders and the run are of
function pick(p, names) { const o = {}; for (const n of names) if (p && Object.hasOwn(p, n)) o[n] = p[n]; return o; }
function buildSliders() {
  makeSliders($("sliders"), model.names, S.p, MAX_SLIDERS, (name, value) => {
    if (S.step > 0 || player.live) newStart();
    S.p[name] = value; S.p0 = { ...S.p };
    evaluate(); dragged(); writeHash();
  }, model.constants, released, model.scales);
  for (const [name, v] of Object.entries(S.fixed || {})) {     // held by the config: no slider to move
    const input = [...document.querySelectorAll("#sliders input")].find((i) => i.dataset.name === name);
    if (input) { input.disabled = true; input.title = `${name} is fixed at ${v} (the run's fixed)`; }
  }
}
const showSliders = () => setSliders(model.names, S.p);

// ------------------------------------------------------------------ the server's numbers
let evalBusy = false, evalAgain = false;
// What an answer of /api/eval is about: the run's step and the frames shown of it, the
// problem (the points by identity: 100,000 of them are not compared). An answer whose
// question is no longer the page's is dropped: a link's replay had shown step N's sliders
// under the start's curve, loss and title, the start's answer arriving after step N's
// frame. (A slider's newer value is asked for next: evalAgain.)
let frames = 0;                          // run frames received
const evalKey = () => JSON.stringify([S.step, frames, S.model, cur().loss, S.delta, S.test, S.split]);
async function evaluate() {
  if (evalBusy) { evalAgain = true; return; }
  evalBusy = true;
  const key = evalKey(), of = pts, data = base;
  try {
    const r = await api("/api/eval", { ...problem(), params: S.p, optimum: exact && exact.params });
    if (key === evalKey() && of === pts && data === base) {
      lastEval = r;
      show(r.loss, r.test_loss, r.curve, r.distance);
      $("model-error").textContent = "";
    }
  } catch (e) { if (key === evalKey() && of === pts) $("model-error").textContent = e.message; }
  evalBusy = false;
  if (evalAgain) { evalAgain = false; evaluate(); }
}

function show(loss, testLoss, curve, distance) {
  try {
    drawData({ ...pts, x2: base.x2, sigma: base.sigma, inputs: base.inputs, yName: base.yName || base.y_name,
               test: lastEval ? lastEval.test : [] },
             { curve, loss, lossName: cur().loss, exact });
    $("plot-error").textContent = "";
  } catch (e) {               // no plot of other data (or its title) stays up, and why is said
    $("plot-error").textContent = e.message;
    blankPlot("plot-data", "no plot: see the message above");
  }
  $("loss-value").textContent = fmt(loss);
  $("test-value").textContent = testLoss === null || testLoss === undefined ? "" : `test ${fmt(testLoss)}`;
  $("distance").textContent = fmt(distance);
}

// A slider's move redraws the curve and the loss at once (evaluate); the landscape and the
// slice follow with a mark (dragMark) and are redrawn, from the server, when the slider is
// let go (or held still for DRAG_REST ms): a contour's redraw holds the page's thread for
// tens of ms, which a drag's next move would wait for.
const DRAG_REST = 1000;
let restTimer = null, markFrame = 0, moves = 0;
function dragged() {
  moves++;
  if (!markFrame) markFrame = requestAnimationFrame(() => {
    markFrame = 0;
    if (model.names.length >= 2) dragMark("plot-landscape", [S.p[S.pa], S.p[S.pb]]);
    dragMark("plot-slice", [S.p[S.ps], null]);
  });
  clearTimeout(restTimer);
  restTimer = setTimeout(() => { restTimer = null; landscape(); }, DRAG_REST);
}

function released() {
  clearTimeout(restTimer); restTimer = null;
  landscape();
}

let landBusy = false, landAgain = false, landTimer = null;
let landOf = null;        // what the landscape and slice on screen were drawn for
const landKey = () => JSON.stringify([S.model, cur().loss, S.delta, S.test, S.split, S.pa, S.pb, S.ps, model.names]);
function landscapeSoon(delay = 150) {
  if (landTimer) return;
  landTimer = setTimeout(() => { landTimer = null; landscape(); }, delay);
}
async function landscape() {
  if (landBusy) { landAgain = true; return; }
  if (!model.names.length) return;
  landBusy = true;
  const key = landKey(), of = pts;
  // another problem's plots stay greyed until this one's are drawn (a landscape of 50,000
  // points takes seconds, and had shown the last model's all along)
  const stale = !landOf || landOf.key !== key || landOf.pts !== of;
  for (const id of ["plot-landscape", "plot-slice"]) $(id).classList.toggle("stale", stale);
  try {
    const two = model.names.length >= 2, [a, b] = [S.pa, S.pb];
    // the path from the run's start (it had begun at the first frame, away from the start)
    const from = trail.length && (trail[0][a] !== S.p0[a] || trail[0][b] !== S.p0[b]) ? [S.p0] : [];
    const path = [...from, ...trail].map((p) => [p[a], p[b]]);
    const keep = [...path, [S.p[a], S.p[b]], [S.p0[a], S.p0[b]]];
    if (exact) keep.push([exact.params[a], exact.params[b]]);
    const asked = moves;         // a slider moved since: this answer is stale, and redrawn at rest
    // the resolution the server's limits allow (lowered for many points: the page has no
    // control of it, and a CSV of 25,000 points had had no landscape)
    const r = await api("/api/landscape", { ...problem(), params: S.p, names: two ? [a, b] : null,
                                            slice: S.ps, resolution: RESOLUTION, fit_resolution: true,
                                            path: two ? keep : null });
    if (!asksNow(key, of)) { landAgain = true; return; }     // of another problem: never drawn
    if (asked === moves) {
      drawLandscape(r.grid, { path, start: [S.p0[a], S.p0[b]], now: [S.p[a], S.p[b]],
                              best: exact && [exact.params[a], exact.params[b]],
                              bestName: optimumName(), optimum: !!exact && (model.flexible || exact.converged),
                              lossName: lossName(cur().loss),
                              note: r.resolution < RESOLUTION ? `${r.resolution} × ${r.resolution} grid for ${pts.x.length.toLocaleString("en")} points` : "" });
      dropDragMark("plot-landscape");
      await new Promise((ok) => setTimeout(ok, 0));    // a slider's answer may be drawn between
    }
    if (asked === moves) { drawSlice(r.slice, S.p[S.ps], lossName(cur().loss)); dropDragMark("plot-slice"); }
    landOf = { key, pts: of };
    $("landscape-error").textContent = "";
    for (const id of ["plot-landscape", "plot-slice"]) $(id).classList.remove("stale");
  } catch (e) {
    // refused (too much work, the time limit): no plot of another problem stays up, and the
    // server's words say why (a question that a newer one replaces is not shown)
    if (!asksNow(key, of)) landAgain = true;
    else if (!landAgain) {
      $("landscape-error").textContent = `landscape and slice: ${e.message}`;
      blankPlot("plot-landscape", "no landscape: see the message above");
      blankPlot("plot-slice", "no slice: see the message above");
      for (const id of ["plot-landscape", "plot-slice"]) $(id).classList.remove("stale");
      landOf = null;
    }
  } finally {
    landBusy = false;
    if (landAgain) { landAgain = false; landscapeSoon(); }
  }
}
const asksNow = (key, of) => landKey() === key && pts === of;   // the question is still this one
const RESOLUTION = 61;       // the landscape's grid, where the server's limits allow it
// the loss's name in the plots' titles and axes: with σ, what it is (mse is χ²/N, as the
// data plot's title says; the others had gone on saying mse)
const lossName = (name) => (base.sigma ? lossLabel(name, base.sigma) : name);

// What the exact fit's point is: the optimum only where that fit converged (a failed one,
// the Jacobian's rank lost, had been starred and measured as "the exact optimum")
function optimumName() {
  if (model.flexible) return "best start";
  if (!exact || exact.converged) return "exact optimum";
  return `where the exact fit stopped (${exact.reason}: no optimum)`;
}
function distanceLabel() {
  if (model.flexible) return `distance to the best of ${meta.flexible_starts} starts`;
  if (!exact || exact.converged) return "distance to the exact optimum";
  return `distance to where the exact fit stopped (${exact.reason})`;
}

let exactAsked = 0;
async function refreshExact() {
  const ticket = ++exactAsked;           // only the latest question's answer is shown
  exact = null;
  $("exact-info").textContent = "finding the optimum…";
  $("distance-label").textContent = distanceLabel();
  try {
    const r = await api("/api/exact", { ...problem(), p0: freeStart(S.p0, S.fixed), seed: S.seed,
                                        bounds: S.bounds, fixed: S.fixed, absolute_sigma: S.absolute_sigma });
    if (ticket !== exactAsked) return;
    exact = r;
    $("distance-label").textContent = distanceLabel();
    $("exact-info").textContent = `${exact.label}: loss ${fmt(exact.loss)}` + (model.names.length <= 6 ? " at " +
      Object.entries(exact.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") : "") +
      (["failed", "diverged", "max_steps"].includes(exact.reason) ? ` (${exact.message})` : "");
  } catch (e) { if (ticket === exactAsked) $("exact-info").textContent = e.message; }
  if (ticket === exactAsked) $("uncertainty").innerHTML = uncertaintyHTML(exact);
}


// ------------------------------------------------------------------ runs
const player = new Player({
  frame: (m) => onRun(m), done: (m) => onRun(m),
  error: (t) => { $("run-error").textContent = t; },
  lost: (opened) => {                    // the socket closed with no done message
    $("run-error").textContent = opened ? `lost the connection to the gradfit server at step ${S.step}` : UNREACHABLE;
    $("run-status").textContent = "";
  },
  state: (st) => { $("btn-play").textContent = st === "playing" ? "❚❚ pause" : "▶ play"; },
});
function clearHistory() { hist = { steps: [], losses: [], testSteps: [], testLosses: [] }; trail = []; lastLabel = { label: null, judged: 0 }; }
// The run: its FitConfig, every field the page runs (runSettings: schedule, options,
// bounds, fixed, dtype, the stops, starts), from the start p0 (the free parameters').
function runBody(extra) {
  const c = { optimizer: S.optimizer, lr: S.lr, loss: S.loss };
  return { ...problem(), ...c, ...runSettings(S), steps: S.steps, p0: freeStart(S.p0, S.fixed), seed: S.seed,
           steps_per_frame: S.spf, paced: true, changes: S.changes,
           optimum: exact && exact.params, optimum_loss: exact && exact.loss, ...extra };
}
function onRun(m) {
  frames++;
  if (m.first_step === 0 || m.type === "done" && m.step === 0) clearHistory();
  for (const t of m.trail || []) {         // a replay: where the frames it did not send were
    trail.push({ ...t.params });
    if (t.test_loss !== null && t.test_loss !== undefined) {
      hist.testSteps.push(t.step); hist.testLosses.push(t.test_loss);
    }
  }
  (m.losses || []).forEach((v, i) => { hist.steps.push(m.first_step + i); hist.losses.push(v); });
  if (m.test_loss !== null && m.test_loss !== undefined) { hist.testSteps.push(m.step); hist.testLosses.push(m.test_loss); }
  S.step = m.step; S.p = { ...m.params }; S.changes = m.changes || S.changes;
  if (sent && m.step > sentAt) sent = null;         // the run has it now (in m.changes)
  lastLabel = { label: m.verdict || m.label, judged: m.judged };   // how it ended, where it did
  trail.push({ ...m.params });
  if (trail.length > MAX_TRAIL) trail = trail.filter((_, i) => i % 2 === 0);
  $("step").textContent = String(S.step);
  if (m.type === "done") {
    lastResult = m.result;
    $("run-status").textContent = `${m.reason}: ${m.message}`;
  } else $("run-status").textContent = m.paused ? `paused at step ${S.step}` : `running: ${m.optimizer}, lr ${fmt(m.lr)}`;
  // the numbers now; the plots at the next animation frame (the latest message wins)
  if (!pendingDraw) requestAnimationFrame(() => {
    const d = pendingDraw; pendingDraw = null;
    showSliders(); showControls();
    show(d.loss, d.test_loss, d.curve, d.distance);
    lossPlot();
  });
  pendingDraw = m;
  landscapeSoon(m.type === "done" || m.paused ? 0 : 1000);   // the heaviest plot, seldom while running
  writeHash();
}
let pendingDraw = null;
function lossPlot() {
  const c = cur(), text = labelText(lastLabel.label, lastLabel.judged, meta.label_window);
  const name = lossName(c.loss);
  drawLoss(hist, name, `${name} vs steps · ${c.optimizer}, lr ${fmt(c.lr)}${text ? " · " + text : ""}`);
  $("plot-loss").title = meta.lr_rule;
}
function newStart() {                    // the run so far is dropped; the current point starts anew
  player.cancel();
  Object.assign(S, cur()); sent = null;
  S.step = 0; S.changes = []; S.p0 = { ...S.p };
  clearHistory(); lossPlot(); $("step").textContent = "0"; $("run-status").textContent = "";
}
function resetRun() {
  player.cancel();
  Object.assign(S, cur()); sent = null;
  S.step = 0; S.changes = []; S.p = { ...S.p0 }; lastResult = null;
  clearHistory(); lossPlot();
  $("step").textContent = "0"; $("run-status").textContent = ""; $("run-error").textContent = "";
  buildSliders(); writeHash();          // ranges fitted to the start again (a run's had grown them)
}
function changeSetting(change) {
  if (S.step === 0 && !player.live) Object.assign(S, change);
  else if (player.live) { player.set(change); sent = { ...(sent || {}), ...change }; sentAt = S.step; }
  else S.changes = addChange(S.changes, S.step, change);
  fixOptions(); showControls(); lossPlot(); writeHash();
}
const takes = (optimizer) => (meta.optimizers[optimizer] || {}).options || [];
// The run's options: those of optionMemo its optimizer takes (weight decay from its box
// when `fromInput`); the others are kept for an optimizer that takes them, and said.
function fixOptions(fromInput = false) {
  Object.assign(optionMemo, S.options || {});
  if (fromInput) {
    const row = meta.settings.weight_decay;
    const wd = Math.min(row.high, Math.max(row.low, Number($("wd").value) || 0));
    $("wd").value = wd;
    if (wd > 0) optionMemo.weight_decay = wd; else delete optionMemo.weight_decay;
  }
  S.options = Object.fromEntries(Object.entries(optionMemo).filter(([k]) => takes(S.optimizer).includes(k)));
  $("wd").disabled = !takes(cur().optimizer).includes("weight_decay");
  $("wd-hint").textContent = $("wd").disabled ? `weight decay: ${meta.weight_decay_optimizers.join(", ")} only` : "";
  showConfig();
}
// The settings in force that have no control here (a link's schedule is on its menu), what
// the page cannot run (the device), and what a link said that the page could not take.
function showConfig() {
  const { extra, notRun } = configText(S, meta);
  $("config-extra").textContent = extra;
  const now = cur().optimizer;
  const left = Object.keys(optionMemo).filter((k) => k !== "weight_decay" && !takes(now).includes(k));
  const idle = left.length ? [`${now} does not take ${left.map((k) => `${k} = ${optionMemo[k]}`).join(", ")}: ` +
                             "left out of its run (kept for an optimizer that takes it)"] : [];
  $("config-note").textContent = [...linkNotes, ...notRun, ...idle].join("\n");
}

// ------------------------------------------------------------------ URL, controls
let hashTimer = null;
function writeHash() {          // at most every 120 ms, the latest state (frames come faster:
  if (hashTimer) return;        // a timer restarted on each had never fired during a run)
  hashTimer = setTimeout(() => { hashTimer = null; history.replaceState(null, "", "#" + encode(S, meta)); }, 120);
}
function showControls() {
  const c = cur();
  $("dataset").value = S.data.startsWith("shared:") ? "shared" : S.data;
  $("n").value = S.n; $("mult").value = S.mult; $("add").value = S.add;
  $("n-out").textContent = S.n; $("mult-out").textContent = S.mult; $("add-out").textContent = S.add;
  $("dseed").value = S.dseed; if (document.activeElement !== $("model")) $("model").value = S.model;
  $("loss").value = c.loss; $("optimizer").value = c.optimizer;
  $("delta-row").hidden = c.loss !== "huber" && S.loss !== "huber";
  if (document.activeElement !== $("delta")) $("delta").value = S.delta;
  $("lr").value = Math.log10(c.lr || 0.01); $("lr-out").textContent = fmt(c.lr);
  $("spf").value = S.spf; $("maxsteps").value = S.steps; $("test").value = S.test;
  $("schedule").value = S.schedule;
  $("wd").value = (S.options || {}).weight_decay || optionMemo.weight_decay || 0;
  showConfig();
}
async function refreshAll(keep) {
  if (!(await setModel(keep))) return;
  evaluate(); await refreshExact(); evaluate(); landscape(); lossPlot(); writeHash();
}

async function onCSV() {
  $("data-error").textContent = ""; $("btn-dropnan").hidden = true;
  let out;
  try { out = await upload(csvFile, dropNaN ? { ...csvAsk, drop_nan: true } : csvAsk); } catch (e) {
    const shown = $("dataset-desc").textContent;
    $("data-error").textContent = e.message + (shown ? `\nthe plot still shows ${shown}` : "");
    $("btn-dropnan").hidden = !e.message.includes("or leave such rows out");   // offered here
    if (loaded) csvMenus(loaded.out);          // the menus: the columns on the plot
    return;
  }
  loaded = { file: csvFile, dropNaN, out };
  csvMenus(out);
  const keepInline = out.x.length <= MAX_LINK_POINTS;
  if (!keepInline) $("data-error").textContent = `more than ${MAX_LINK_POINTS} points: a copied link will not hold them`;
  if (out.dropped) $("data-error").textContent += `${keepInline ? "" : "; "}left out ${out.dropped} row(s) with missing values`;
  S.data = "csv"; S.added = []; S.drop = []; S.move = {};
  S.csv = { name: out.name, yName: out.y_name, sigmaName: out.sigma_name || null, x: out.x, y: out.y, inputs: out.inputs,
            ...(out.x_names.join(",") !== out.inputs.join(",") ? { xNames: out.x_names } : {}),
            ...(out.x2 ? { x2: out.x2 } : {}), ...(out.sigma ? { sigma: out.sigma } : {}),
            ...(out.columns.join(",").length <= MAX_LINK_COLUMNS ? { columns: out.columns } : {}) };
  if (!keepInline) S.csv = { ...S.csv, x: [], y: [] };
  base = { ...S.csv, x: out.x, y: out.y }; pts = { x: out.x, y: out.y, origin: [] };
  S.p0 = {};          // the last data's values mean nothing here: the server's start, to scale
  resetRun(); showDataControls(); showControls(); await refreshAll(true);
}

function wire() {
  const onData = async () => { resetRun(); showControls(); await loadData(); await refreshAll(true); };
  $("dataset").addEventListener("change", () => {
    const v = $("dataset").value;
    if (v === "csv") { $("csv").click(); return; }
    if (!(v in meta.datasets)) return;
    const d = meta.datasets[v];
    Object.assign(S, { data: v, n: d.n, mult: d.mult, add: d.add, added: [], drop: [], move: {}, csv: null });
    if (d.model !== S.model) { S.model = d.model; S.p0 = {}; }
    onData();
  });
  for (const id of ["n", "mult", "add"]) {
    $(id).addEventListener("input", () => { $(`${id}-out`).textContent = $(id).value; });
    $(id).addEventListener("change", () => { S[id] = Number($(id).value); onData(); });
  }
  $("dseed").addEventListener("change", () => { S.dseed = Number($("dseed").value); onData(); });
  $("btn-clear-edits").addEventListener("click", () => { S.added = []; S.drop = []; S.move = {}; onData(); });
  // a new file: nothing asked of it yet; the button: the same question, its gaps left out;
  // a menu: the file on the plot, with its columns as the menus now say
  $("csv").addEventListener("change", () => {
    csvFile = $("csv").files[0]; csvAsk = {}; dropNaN = false; if (csvFile) onCSV();
  });
  $("btn-dropnan").addEventListener("click", () => { dropNaN = true; if (csvFile) onCSV(); });
  for (const id of ["csv-x", "csv-x2", "csv-y", "csv-sigma"]) $(id).addEventListener("change", () => {
    if (!loaded) return;                  // a link's data: the file is not here to read again
    csvFile = loaded.file; dropNaN = loaded.dropNaN; csvAsk = csvFields(); onCSV();
  });
  $("test").addEventListener("change", () => { S.test = Number($("test").value); resetRun(); refreshAll(true); });
  let modelTimer = null;
  $("model").addEventListener("input", () => {
    clearTimeout(modelTimer);
    modelTimer = setTimeout(() => { S.model = $("model").value; refreshAll(true); }, 250);
  });
  $("model-examples").addEventListener("change", () => {
    const v = $("model-examples").value;
    if (!v) return;
    $("model").value = v; S.model = v; refreshAll(true);
    $("model-examples").value = "";
  });
  $("btn-add-relu").addEventListener("click", async () => {
    const k = Number((S.model.split(":")[1] || "1").trim()) + 1;
    const keep = { ...S.p };
    S.model = `relu:${k}`; $("model").value = S.model;
    S.p0 = keep;                        // the units so far keep their values; the new one starts fresh
    await refreshAll(true);
  });
  $("loss").addEventListener("change", async () => {
    changeSetting({ loss: $("loss").value });
    await refreshExact(); evaluate(); landscape();
  });
  $("optimizer").addEventListener("change", () => {
    const o = $("optimizer").value;
    // auto runs its choice at that method's own rate unless one is set (no lr: null)
    changeSetting({ optimizer: o, lr: o === "auto" ? null : meta.optimizers[o].default_lr });
  });
  $("lr").addEventListener("input", () => { $("lr-out").textContent = fmt(Number(Math.pow(10, Number($("lr").value)).toPrecision(3))); });
  $("lr").addEventListener("change", () => changeSetting({ lr: Number(Math.pow(10, Number($("lr").value)).toPrecision(3)) }));
  $("wd").addEventListener("change", () => { fixOptions(true); resetRun(); });
  $("schedule").addEventListener("change", () => { S.schedule = $("schedule").value; resetRun(); showControls(); });
  $("delta").addEventListener("change", async () => {     // huber's δ: another loss, a new run
    const v = Number($("delta").value);
    if (!(v > 0 && Number.isFinite(v))) { $("delta").value = S.delta; return; }
    S.delta = v; resetRun();
    await refreshExact(); evaluate(); landscape();
  });
  $("spf").addEventListener("change", () => { S.spf = Number($("spf").value); writeHash(); });
  $("maxsteps").addEventListener("change", () => {          // within the table's range
    const row = meta.settings.steps;
    S.steps = Math.min(row.high, Math.max(row.low, Math.round(Number($("maxsteps").value)) || 0));
    $("maxsteps").value = S.steps; writeHash();
  });
  $("btn-play").addEventListener("click", () => {
    if (player.state === "playing") return player.pause();
    if (player.live) return player.play();
    if (S.step >= S.steps) { $("run-status").textContent = "at the step limit: raise it or reset"; return; }
    player.start(runBody({ quiet_until: S.step }));
  });
  $("btn-step").addEventListener("click", () => {
    if (player.state === "paused") return player.step();
    if (player.state === "playing") return player.pause();
    if (!player.live && S.step < S.steps) player.start(runBody({ quiet_until: S.step + 1, pause_at: S.step + 1 }));
  });
  $("btn-reset").addEventListener("click", () => { resetRun(); evaluate(); landscape(); });
  for (const id of ["pa", "pb", "ps"]) $(id).addEventListener("change", () => { S[id] = $(id).value; landscape(); writeHash(); });
  $("btn-json").addEventListener("click", () => download("gradfit-run.json", URL.createObjectURL(new Blob([JSON.stringify({
    state: S, link: location.href, data: dataBody(), params: S.p, exact, result: lastResult, history: hist }, null, 1)],
    { type: "application/json" }))));
  $("btn-png").addEventListener("click", async () => download("gradfit-view.png", await viewPNG()));
  $("btn-code").addEventListener("click", showCode);
  $("btn-link").addEventListener("click", () => {
    history.replaceState(null, "", "#" + encode(S, meta));
    // refused inside a notebook's iframe without allow="clipboard-write", or outside a secure
    // context: said, with the link to copy by hand (it had failed without a word)
    const refused = () => { $("run-status").textContent = `the browser refused to copy the link here: ${location.href}`; };
    if (navigator.clipboard) navigator.clipboard.writeText(location.href).catch(refused); else refused();
  });
  window.addEventListener("hashchange", () => location.reload());   // a link opened here (ours use replaceState)
  wireEditing($("plot-data"), {
    editable, points: () => pts, state: () => S,
    changed: async (final) => {
      pts = rebuild(base, S); evaluate();
      if (final) { resetRun(); writeHash(); await refreshExact(); evaluate(); landscapeSoon(); }
    },
  });
}
async function showCode() {       // "Show code": the page's run and its exact fit as a script
  try {
    const r = await api("/api/code", codeBody(S, meta.datasets, base, dataBody(), lastEval && lastEval.test));
    $("code").textContent = r.code;
    $("code-dialog").showModal();
  } catch (e) { $("run-error").textContent = e.message; }
}

// The column menus of a link's CSV: its columns where the link holds them, else the chosen ones.
function linkColumns(c) {
  const xs = c.xNames || c.inputs || ["x"];       // the x columns' names (inputs: the model's)
  const chosen = [...xs, c.yName || "y", c.sigmaName].filter(Boolean);
  return { columns: c.columns || chosen, x_names: xs, y_name: c.yName || "y", sigma_name: c.sigmaName || null };
}

async function main() {
  meta = await get("/api/meta");
  const names = Object.keys(meta.datasets);
  fill($("dataset"), [...names, "csv", "shared"], Object.fromEntries([...names.map((k) => [k, k]), ["csv", "CSV file…"], ["shared", "from Python"]]));
  $("dataset").querySelector("option[value=shared]").hidden = true;
  S = decode(location.hash, meta, linkNotes);
  optionMemo = { ...S.options };
  fill($("loss"), Object.keys(meta.losses));
  // the page's menu, and a link's optimizer beyond it (rmsprop, irls ...: it runs as given)
  fill($("optimizer"), [...new Set([...meta.page_optimizers, S.optimizer])]);
  fill($("schedule"), meta.settings.schedule.choices);
  fill($("spf"), meta.steps_per_frame);
  const fractions = [...new Set([...TEST_FRACTIONS, S.test])].sort((a, b) => a - b);
  fill($("test"), fractions, Object.fromEntries(fractions.map((f) => [f, f ? `${Math.round(f * 1000) / 10}% held out` : "none"])));
  fill($("model-examples"), ["", ...meta.models.examples], Object.fromEntries([["", "examples…"], ...meta.models.examples.map((k) => [k, k])]));
  // the inputs' limits: the settings table's
  $("maxsteps").min = meta.settings.steps.low; $("maxsteps").max = meta.settings.steps.high;
  $("wd").max = meta.settings.weight_decay.high;
  $("dseed").max = meta.settings.seed.high;
  clearHistory();
  await loadData();
  if (S.data === "csv" && S.csv) csvMenus(linkColumns(S.csv));    // a link's columns, as chosen
  showControls(); fixOptions();
  wire();
  const target = S.step;
  S.p = { ...S.p0 }; S.step = 0;
  await refreshAll(true);
  if (target > 0) {                       // a link: replay the same run to the same step
    $("run-status").textContent = `replaying to step ${target}…`;
    S.step = target;
    player.start(runBody({ quiet_until: target, pause_at: target }));
  }
  document.body.dataset.ready = "1";
}
main();
