// What the page shows beside the plots, built from what the server sent: the uncertainty
// table, menus, downloads, and the question behind "Show code". No math, no page state.
import { fmt, freeStart, runSettings } from "./state.js";

// The exact fit's uncertainty (value ± standard error, CI, χ²), or why it has none.
export function uncertaintyHTML(exact) {
  const u = exact && exact.uncertainty;
  if (!u) return exact ? `<div class="hint">${exact.uncertainty_note || ""}</div>` : "";
  const rows = Object.entries(u.params).slice(0, 12).map(([n, p]) =>
    `<tr><td>${n}</td><td>${fmt(p.value)} ± ${fmt(p.stderr)}</td><td>[${fmt(p.ci[0])}, ${fmt(p.ci[1])}]</td></tr>`).join("");
  return `<table aria-label="uncertainty of the exact fit"><tr><th>param</th><th>value ± std error</th>
    <th>${Math.round(u.level * 100)}% CI</th></tr>${rows}</table>
    <div class="hint" id="chi2">χ² = ${fmt(u.chi2)} on ${u.dof} dof, reduced χ² = ${fmt(u.redchi)}${u.weighted ? " (σ from the data)" : ""}</div>`;
}

// A <select>'s options: values, shown as labels[v] when given.
export function fill(sel, values, labels) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v; o.textContent = labels ? labels[v] : v;
    sel.appendChild(o);
  }
}

// The CSV's column menus, set to the columns the server chose (x, 2nd x, y, σ), and back.
const $ = (id) => document.getElementById(id);
export function csvMenus(out) {
  const optional = { "": "(none)", ...Object.fromEntries(out.columns.map((c) => [c, c])) };
  fill($("csv-x"), out.columns); fill($("csv-x2"), ["", ...out.columns], optional);
  fill($("csv-y"), out.columns); fill($("csv-sigma"), ["", ...out.columns], optional);
  $("csv-x").value = out.x_names[0]; $("csv-x2").value = out.x_names[1] || "";
  $("csv-y").value = out.y_name; $("csv-sigma").value = out.sigma_name || "";
}
export function csvFields() {
  const x = [$("csv-x").value, $("csv-x2").value].filter(Boolean).join(",");
  return { x, y: $("csv-y").value || null, sigma: $("csv-sigma").value };
}

export function download(name, href) {
  const a = document.createElement("a");
  a.href = href; a.download = name; a.click();
}

// The body of /api/code for the page's run: a built-in dataset by its generator; uploaded
// or edited data as points (the chosen columns' names, σ, both inputs; only the training
// points when some are held out: test[i] true), with the CSV's file and column names.
// s: the state; datasets: meta.datasets; base: the data as uploaded; data: the points sent.
export function codeBody(s, datasets, base, data, test) {
  const builtin = s.data in datasets;
  const edited = !builtin || s.added.length || s.drop.length || Object.keys(s.move).length;
  const held = test && test.some(Boolean) ? test : null;
  const keep = (a) => a && (held ? a.filter((_, i) => !held[i]) : a);
  const points = { x: keep(data.x), y: keep(data.y), inputs: data.inputs };
  if (data.x2) points.x2 = keep(data.x2);
  if (data.sigma) points.sigma = keep(data.sigma);
  // the file's x columns by their names (a column "x-1" is the model's input x)
  const csv = s.data === "csv" ? { source: "csv", file: base.name || null, x: (base.xNames || base.inputs).join(","),
                                   y: base.yName || null, sigma: base.sigmaName || null } : {};
  return {
    data: builtin ? { name: s.data, n: s.n, mult: s.mult, add: s.add, seed: s.dseed } : csv,
    model: s.model, loss: s.loss, delta: s.delta, optimizer: s.optimizer, lr: s.lr, steps: s.steps,
    p0: freeStart(s.p0, s.fixed), seed: s.seed, ...runSettings(s), device: s.device,    // every FitConfig field
    points: edited ? points : null,
  };
}
