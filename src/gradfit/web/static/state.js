// The page's state as one value, and its URL form. Pure: no page, no server, no globals.
// A run's settings use FitConfig's own query form (FitConfig.to_query/from_query: every
// field of FitConfig, in its order, left out where it is FitConfig's default; the maps p0,
// options, bounds and fixed as JSON); the page's own keys (data, view, the run's position)
// follow them. Each field is checked by its row of the settings table (meta.settings, the
// server's gradfit.settings): the page keeps no limit or default of its own.

export const PAGE = {
  data: "lesson", n: -1, mult: -1, add: -1, dseed: 42, spf: 10, step: 0, changes: [],
  added: [], drop: [], move: {}, pa: "", pb: "", ps: "", test: 0, split: 0, csv: null,
};
const JSON_PAGE = ["changes", "added", "drop", "move", "csv"];
// the page's keys that are settings of the table under another name
const ROW_OF = { dseed: "seed", split: "seed", test: "test_fraction" };
// what a link of the all-default config says: its FitConfig query is empty, and an empty
// hash opens the lesson's run (pagemeta.DEFAULT_CONFIG_MARK)
export const DEFAULT_CONFIG_MARK = "step=0";

// The run's keys: FitConfig's fields, in its order (meta.config_defaults holds them all).
export const configKeys = (meta) => Object.keys(meta.config_defaults);
const isMap = (k, meta) => isObject(meta.config_defaults[k]);

// The state a fresh page opens with: the server's page defaults over FitConfig's.
export function initial(meta) {
  return { ...structuredClone(meta.config_defaults), ...structuredClone(meta.page_defaults),
           ...structuredClone(PAGE) };
}

// "#k=v&..." -> state. An empty hash is the page's defaults (the lesson's run); otherwise
// the config part is read as FitConfig reads it (a missing key is FitConfig's default).
// A field that breaks its row keeps its default, and so does a key given twice; each such
// key, and each unknown one, is said in `notes` (an array the caller shows): a link is
// never changed without a word.
export function decode(hash, meta, notes = []) {
  const text = hash.replace(/^#/, "");
  if (!text) return initial(meta);
  const q = new URLSearchParams(text);
  const s = { ...structuredClone(meta.config_defaults), ...structuredClone(PAGE) };
  const count = {};
  for (const [k] of q) count[k] = (count[k] || 0) + 1;
  const said = new Set();
  for (const [k, v] of q) {
    if (said.has(k)) continue;
    if (!Object.hasOwn(s, k)) {
      said.add(k); notes.push(`the link's ${short(k)} is no setting of the page: left out`);
      continue;
    }
    if (count[k] > 1) {
      said.add(k);
      notes.push(`the link gives ${k} ${count[k]} times: expected each key once; ${k} kept its default ${show(s[k])}`);
      continue;
    }
    const value = parse(k, v, meta);
    if (value === undefined || !valid(k, value, meta)) {
      notes.push(`bad ${k} in the link: expected ${expected(k, meta, value)}, got ${short(v)}; ${k} kept its default ${show(s[k])}`);
      continue;
    }
    s[k] = value;
  }
  return s;
}
const short = (v) => JSON.stringify(String(v).slice(0, 40));
const show = (v) => (v === null ? "(none)" : typeof v === "object" ? JSON.stringify(v) : String(v));

// A row of the settings table for a key of the state (null: a page key of its own).
export function rowOf(k, meta) {
  const name = ROW_OF[k] || (Object.hasOwn(meta.config_defaults, k) ? k : null);
  return name && meta.settings && Object.hasOwn(meta.settings, name) ? meta.settings[name] : null;
}

// A text of the URL as its key's value: by the row's type, as FitConfig.from_query reads it
// (Setting.parse_text: "inf" a float, "True" a bool, "" None where the row allows it).
// undefined: it does not parse.
function parse(k, v, meta) {
  try {
    if (JSON_PAGE.includes(k) || isMap(k, meta)) return JSON.parse(v);
  } catch (e) { return undefined; }
  const row = rowOf(k, meta);
  // without its row (a meta without the table): by the default's type, None a number's
  const d = Object.hasOwn(meta.config_defaults, k) ? meta.config_defaults[k] : PAGE[k];
  const kind = row ? row.type : typeof d === "number" || d === null ? "float"
    : typeof d === "boolean" ? "bool" : "str";
  if (v === "" && (row ? row.optional : d === null)) return null;
  if (kind === "int") return /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : undefined;
  if (kind === "float") {
    const t = v.trim().toLowerCase();
    if (/^[+-]?(inf|infinity)$/.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
    return t === "" ? undefined : Number(t);
  }
  if (kind === "bool") {
    const t = v.toLowerCase();
    return ["true", "1"].includes(t) ? true : ["false", "0"].includes(t) ? false : undefined;
  }
  return v;
}

// What a key's row expects, in words (`value`: the value given, where it parsed).
function expected(k, meta, value) {
  if (k === "p0" || k === "fixed") return "a JSON object of name: finite number";
  if (k === "bounds") return "a JSON object of name: [low, high] (null: no bound on that side), low < high";
  if (k === "options") {
    const bad = isObject(value) && Object.keys(value).find((n) => !valid("options", { [n]: value[n] }, meta));
    return bad ? `options.${bad}: ${expected(bad, { ...meta, config_defaults: { [bad]: null } })}`
      : "a JSON object of option: value";
  }
  const row = rowOf(k, meta);
  if (!row) return `a value of the page's ${k}`;
  if (row.choices) return "one of " + row.choices.join(", ");
  const kind = { int: "a whole number", float: "a finite number", bool: "true or false",
                 str: "a text", map: "a JSON object" }[row.type];
  const lo = row.low === null || row.low === undefined ? "" : `${row.low} ${row.low_open ? "<" : "≤"} `;
  const hi = row.high === null || row.high === undefined ? "" : ` ${row.high_open ? "<" : "≤"} ${row.high}`;
  const inf = row.allow_inf ? " or inf" : "";
  return kind + inf + (lo || hi ? ` (${lo}${ROW_OF[k] ? ROW_OF[k] : k}${hi})` : "") + (row.optional ? ", or empty" : "");
}

// Within a row: its type, its choices or range (low/high, open or not), None where optional.
function fitsRow(row, v, k) {
  if (v === null) return !!row.optional;
  if (row.choices) return row.choices.includes(v);
  if (row.type === "bool") return typeof v === "boolean";
  if (row.type === "str") return typeof v === "string" && v.trim() !== "";
  if (row.type === "int" || row.type === "float") {
    if (typeof v !== "number" || Number.isNaN(v)) return false;
    if (row.type === "int" && !Number.isInteger(v)) return false;
    if (!Number.isFinite(v) && !(row.allow_inf && v === Infinity)) return false;
    if (row.low !== null && row.low !== undefined && (v < row.low || (row.low_open && v === row.low))) return false;
    return !(row.high !== null && row.high !== undefined && (v > row.high || (row.high_open && v === row.high)));
  }
  return true;
}

// Each field's form: a hand-edited link (seed=-1, n=1e9, csv={"x":null}) keeps the default
// of a field it breaks rather than leave a blank page. A key with a row of the settings
// table is checked by it; the maps entry by entry (options by their own rows); the page's
// own keys by their forms below.
const WHOLE = { step: 0, spf: 1 };                    // the page's own: smallest value
const UNSET_OR = { n: 1, mult: 0, add: 0 };          // -1 (the dataset's own) or at least this
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const numbers = (a) => Array.isArray(a) && a.every((v) => typeof v === "number" && isFinite(v));
const finiteMap = (v) => isObject(v) && Object.values(v).every((x) => typeof x === "number" && isFinite(x));
export function valid(k, v, meta) {
  if (k === "p0" || k === "fixed") return finiteMap(v);
  if (k === "bounds") return isObject(v) && Object.values(v).every((b) => Array.isArray(b) && b.length === 2
    && b.every((x) => x === null || (typeof x === "number" && !Number.isNaN(x)))
    && (b[0] === null ? -Infinity : b[0]) < (b[1] === null ? Infinity : b[1]));
  if (k === "options") return isObject(v) && Object.entries(v).every(([name, x]) => {
    const row = meta && meta.settings && meta.settings[name];
    return row && row.scope === "option" ? fitsRow(row, x, name) : ["number", "boolean"].includes(typeof x);
  });
  const row = meta ? rowOf(k, meta) : null;
  if (row) return fitsRow(row, v, k);
  if (k in WHOLE) return Number.isInteger(v) && v >= WHOLE[k];
  if (k in UNSET_OR) return v === -1 || (isFinite(v) && v >= UNSET_OR[k] && (k !== "n" || Number.isInteger(v)));
  if (meta && (Object.hasOwn(meta.config_defaults, k) || ROW_OF[k])) {   // a setting without its row
    const d = Object.hasOwn(meta.config_defaults, k) ? meta.config_defaults[k] : PAGE[k];
    const number = typeof v === "number" && Number.isFinite(v);
    return d === null ? v === null || number : typeof d === "number" ? number : typeof v === typeof d;
  }
  if (k === "move") return isObject(v);
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
// a value as FitConfig's query writes it (str(): inf for infinity; "" for None)
const text = (v) => (v === null ? "" : v === Infinity ? "inf" : v === -Infinity ? "-inf" : String(v));

// p0 without the parameters held fixed: their value is the fixed one (FitConfig's p0
// names the free ones' starts)
export function freeStart(p0, fixed) {
  const out = {};
  for (const [k, v] of Object.entries(p0 || {})) if (!Object.hasOwn(fixed || {}, k)) out[k] = v;
  return out;
}

// state -> "k=v&..." : the config keys as FitConfig.to_query writes them, then the page's.
// Never empty: the all-default config says DEFAULT_CONFIG_MARK (an empty hash is the lesson).
export function encode(s, meta) {
  const q = new URLSearchParams();
  for (const k of configKeys(meta)) {
    const v = k === "p0" ? freeStart(s.p0, s.fixed) : s[k];
    if (v === undefined || same(v, meta.config_defaults[k])) continue;
    q.set(k, isMap(k, meta) ? JSON.stringify(v) : text(v));
  }
  for (const k of Object.keys(PAGE)) {
    if (same(s[k], PAGE[k]) || s[k] === null) continue;
    q.set(k, JSON_PAGE.includes(k) ? JSON.stringify(s[k]) : String(s[k]));
  }
  return q.toString() || DEFAULT_CONFIG_MARK;
}

// The run's settings beyond the loss, the optimizer, the rate and the start, as the server
// takes them (schemas.FitSettings): divergence inf is null (JSON has no infinity).
export function runSettings(s) {
  return { schedule: s.schedule, options: s.options || {}, bounds: s.bounds || {}, fixed: s.fixed || {},
           dtype: s.dtype, ftol: s.ftol, gtol: s.gtol, time_limit: s.time_limit,
           divergence: s.divergence === Infinity ? null : s.divergence,
           absolute_sigma: s.absolute_sigma, starts: s.starts };
}

// The settings in force that the page has no control for (a link's), in words; and the
// fields it cannot run (meta.not_run: the device), each with why.
export function configText(s, meta) {
  const d = meta.config_defaults, parts = [];
  const num = (v) => (v === Infinity ? "inf" : String(v));
  if (!same(s.bounds, d.bounds) && s.bounds) parts.push("bounds " + Object.entries(s.bounds).map(([k, [lo, hi]]) =>
    `${lo === null ? "-inf" : num(lo)} ≤ ${k} ≤ ${hi === null ? "inf" : num(hi)}`).join(", "));
  if (!same(s.fixed, d.fixed) && s.fixed) parts.push("fixed " + Object.entries(s.fixed).map(([k, v]) => `${k} = ${v}`).join(", "));
  const opts = Object.entries(s.options || {}).filter(([k]) => k !== "weight_decay");
  if (opts.length) parts.push("options " + opts.map(([k, v]) => `${k} = ${v}`).join(", "));
  for (const k of ["dtype", "ftol", "gtol", "time_limit", "divergence", "absolute_sigma", "starts"]) {
    if (Object.hasOwn(d, k) && !same(s[k], d[k]) && s[k] !== undefined) parts.push(`${k} ${num(s[k])}`);
  }
  const notRun = Object.entries(meta.not_run || {}).filter(([k]) => Object.hasOwn(d, k) && !same(s[k], d[k]))
    .map(([k, why]) => `${k} ${s[k]} is not run here: ${why} (the link and Show code keep it)`);
  return { extra: parts.length ? "also in force: " + parts.join("; ") : "", notRun };
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
