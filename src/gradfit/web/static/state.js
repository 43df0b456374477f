// The page's state as one value, and its URL form. Pure: no page, no server, no globals.
// A run's settings use FitConfig's own query form (FitConfig.to_query/from_query: only the
// fields that differ from FitConfig's defaults, p0 and options as JSON); the page's own keys
// (data, view, the run's position) follow them.

export const CONFIG_KEYS = ["model", "loss", "delta", "optimizer", "lr", "steps", "p0", "seed", "options"];
export const PAGE = {
  data: "lesson", n: -1, mult: -1, add: -1, dseed: 42, spf: 10, step: 0, changes: [],
  added: [], drop: [], move: {}, pa: "", pb: "", ps: "", test: 0, split: 0, csv: null,
};
const JSON_PAGE = ["changes", "added", "drop", "move", "csv"];
const JSON_CONFIG = ["p0", "options"];

// The state a fresh page opens with: the server's page defaults over FitConfig's.
export function initial(meta) {
  return { ...structuredClone(meta.config_defaults), ...structuredClone(meta.page_defaults),
           ...structuredClone(PAGE) };
}

// "#k=v&..." -> state. An empty hash is the page's defaults; otherwise the config part is
// read as FitConfig reads it (a missing key is FitConfig's default). A bad field keeps its
// default.
export function decode(hash, meta) {
  const text = hash.replace(/^#/, "");
  if (!text) return initial(meta);
  const q = new URLSearchParams(text);
  const s = { ...structuredClone(meta.config_defaults), ...structuredClone(PAGE) };
  for (const [k, v] of q) {
    if (!Object.hasOwn(s, k)) continue;
    let value;
    try {
      if (JSON_PAGE.includes(k) || JSON_CONFIG.includes(k)) value = JSON.parse(v);
      else if (k === "lr") value = v === "" ? null : Number(v);
      else if (typeof PAGE[k] === "number" || ["delta", "steps", "seed"].includes(k)) value = Number(v);
      else value = v;
    } catch (e) { continue; }           // keeps its default
    if (valid(k, value)) s[k] = value;
  }
  return s;
}

// Each field's form: a hand-edited link (seed=-1, n=1e9, csv={"x":null}) keeps the default
// of a field it breaks rather than leave a blank page.
const WHOLE = { seed: 0, dseed: 0, step: 0, split: 0, spf: 1, steps: 1 };   // smallest value
const UNSET_OR = { n: 1, mult: 0, add: 0 };          // -1 (the dataset's own) or at least this
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const numbers = (a) => Array.isArray(a) && a.every((v) => typeof v === "number" && isFinite(v));
export function valid(k, v) {
  if (k in WHOLE) return Number.isInteger(v) && v >= WHOLE[k] && v <= 1e12;
  if (k in UNSET_OR) return v === -1 || (isFinite(v) && v >= UNSET_OR[k] && (k !== "n" || Number.isInteger(v)));
  if (k === "lr") return v === null || (isFinite(v) && v > 0);
  if (k === "delta") return isFinite(v) && v > 0;
  if (k === "test") return isFinite(v) && v >= 0 && v < 1;
  if (k === "p0") return isObject(v) && Object.values(v).every((x) => typeof x === "number" && isFinite(x));
  if (k === "options" || k === "move") return isObject(v);
  if (k === "changes") return Array.isArray(v) && v.every((c) => isObject(c) && Number.isInteger(c.step));
  if (k === "added" || k === "drop") return Array.isArray(v);
  if (k === "csv") return v === null || (isObject(v) && numbers(v.x) && numbers(v.y) && v.x.length === v.y.length
    && (v.inputs === undefined || (Array.isArray(v.inputs) && v.inputs.every((n) => typeof n === "string")))
    && (v.xNames === undefined || (Array.isArray(v.xNames) && v.xNames.every((n) => typeof n === "string")))
    && (v.x2 === undefined || (numbers(v.x2) && v.x2.length === v.x.length))
    && (v.sigma === undefined || (numbers(v.sigma) && v.sigma.length === v.x.length))
    && (v.columns === undefined || (Array.isArray(v.columns) && v.columns.every((n) => typeof n === "string"))));
  return typeof v === "string";
}

function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

// state -> "k=v&..." : the config keys as FitConfig.to_query writes them, then the page's.
export function encode(s, meta) {
  const q = new URLSearchParams();
  for (const k of CONFIG_KEYS) {
    if (same(s[k], meta.config_defaults[k])) continue;
    q.set(k, JSON_CONFIG.includes(k) ? JSON.stringify(s[k]) : s[k] === null ? "" : String(s[k]));
  }
  for (const k of Object.keys(PAGE)) {
    if (same(s[k], PAGE[k]) || s[k] === null) continue;
    q.set(k, JSON_PAGE.includes(k) ? JSON.stringify(s[k]) : String(s[k]));
  }
  return q.toString();
}

// The settings in force at `step`: the run's start settings with the changes up to it.
export function settingsAt(s, step) {
  const out = { optimizer: s.optimizer, lr: s.lr, loss: s.loss };
  for (const c of s.changes || []) {
    if (c.step > step) break;
    for (const k of ["optimizer", "lr", "loss"]) if (c[k] !== undefined && c[k] !== null) out[k] = c[k];
  }
  return out;
}

// A change made while no run is live, at the run's current position (it applies from the
// next update on): merged into the last change when it is at the same step.
export function addChange(changes, step, change) {
  const out = structuredClone(changes || []).filter((c) => c.step <= step);
  if (step <= 0) return out;
  const last = out[out.length - 1];
  if (last && last.step === step) Object.assign(last, change);
  else out.push({ step, ...change });
  return out;
}

// Where the loss spans decades a colour scale is logarithmic: ratio of the largest to the
// smallest positive finite value above 100.
export function spansDecades(rows) {
  let lo = Infinity, hi = -Infinity;
  for (const row of rows) for (const v of row) {
    if (v === null || !(v > 0) || !isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi / lo > 100;
}

// The label of a run, or how far its judging has got.
export function labelText(label, judged, window) {
  if (label) return label;
  return judged > 0 ? `judging… ${judged}/${window} steps` : "";
}

// Short numbers for the page: 6 significant digits, no trailing zeros.
export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e6)) return String(Number(v.toPrecision(6)).toExponential());
  return String(Number(v.toPrecision(6)));
}
