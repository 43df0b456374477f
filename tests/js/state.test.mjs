// node --test tests/js/ : the page's pure state module.
import { test } from "node:test";
import assert from "node:assert/strict";
import { addChange, decode, encode, fmt, initial, labelText, settingsAt, spansDecades } from "../../src/gradfit/web/static/state.js";

const meta = {
  config_defaults: { model: "a*x^2 + b*x + c", loss: "mse", delta: 1, optimizer: "auto", lr: null,
                     steps: 1000, p0: {}, seed: 0, options: {} },
  page_defaults: { model: "a*x^2 + b*x + c", loss: "mae", optimizer: "gd", lr: 0.01, steps: 2000,
                   p0: { a: 1.1, b: 1.1, c: 1.1 }, seed: 0 },
  // rows of the settings table (the server's /api/meta serves them all): the page's limits
  settings: {
    seed: { type: "int", low: 0, high: 4294967295, low_open: false, high_open: false, optional: false },
    steps: { type: "int", low: 0, high: 10000000, low_open: false, high_open: false, optional: false },
    lr: { type: "float", low: 0, high: null, low_open: true, high_open: false, optional: true },
    test_fraction: { type: "float", low: 0, high: 0.9, low_open: false, high_open: false, optional: false },
  },
};

test("an empty hash opens the page's defaults", () => {
  const s = decode("", meta);
  assert.equal(s.loss, "mae"); assert.equal(s.steps, 2000); assert.deepEqual(s.p0, { a: 1.1, b: 1.1, c: 1.1 });
});

test("encode then decode is the same state", () => {
  const s = initial(meta);
  Object.assign(s, { lr: 1e-5, step: 812, changes: [{ step: 300, lr: 0.1 }], test: 0.3, data: "csv",
                     csv: { x: [1, 2], y: [3, 4], inputs: ["t"] }, options: { weight_decay: 0.1 } });
  assert.deepEqual(decode("#" + encode(s, meta), meta), s);
});

test("config keys are FitConfig's query: defaults left out, in field order", () => {
  const s = { ...decode("", meta), loss: "mse", optimizer: "auto", lr: null, steps: 1000, p0: {} };
  // FitConfig()'s query is empty, and an empty hash is the lesson's run: its link says so
  assert.equal(encode(s, meta), "step=0");
  assert.equal(decode("#" + encode(s, meta), meta).loss, "mse");
  const t = { ...s, model: "relu:3", lr: 0.5 };
  assert.equal(encode(t, meta), "model=relu%3A3&lr=0.5");
});

test("a missing config key is FitConfig's default once the hash says anything", () => {
  const s = decode("#step=3", meta);
  assert.equal(s.loss, "mse"); assert.equal(s.optimizer, "auto"); assert.equal(s.step, 3);
});

test("a bad field keeps its default", () => {
  assert.deepEqual(decode("#p0={oops&loss=mae", meta).p0, {});
});

test("settings at a step follow the changes", () => {
  const s = { optimizer: "gd", lr: 0.01, loss: "mae", changes: [{ step: 5, lr: 0.1 }, { step: 9, optimizer: "adam", lr: 0.05 }] };
  assert.deepEqual(settingsAt(s, 4), { optimizer: "gd", lr: 0.01, loss: "mae" });
  assert.deepEqual(settingsAt(s, 5), { optimizer: "gd", lr: 0.1, loss: "mae" });
  assert.deepEqual(settingsAt(s, 100), { optimizer: "adam", lr: 0.05, loss: "mae" });
});

test("changes made at rest merge at one step and drop what lies ahead", () => {
  let c = addChange([], 10, { lr: 0.1 });
  c = addChange(c, 10, { optimizer: "adam" });
  assert.deepEqual(c, [{ step: 10, lr: 0.1, optimizer: "adam" }]);
  assert.deepEqual(addChange(c, 4, { lr: 1 }), [{ step: 4, lr: 1 }]);
  assert.deepEqual(addChange(c, 0, { lr: 1 }), []);
});

test("log colours when the loss spans more than two decades", () => {
  assert.equal(spansDecades([[1, 50], [null, 2]]), false);
  assert.equal(spansDecades([[0.01, 50], [0, -1]]), true);
});

test("labels and numbers", () => {
  assert.equal(labelText(null, 50, 200), "judging… 50/200 steps");
  assert.equal(labelText("good", 200, 200), "good");
  assert.equal(fmt(2.421852345), "2.42185"); assert.equal(fmt(null), "–"); assert.equal(fmt(1e-7), "1e-7");
  assert.equal(fmt(1.17785096035195e-8), "1.17785e-8");  // 6 digits as above 1e-4 (had 4)
});

test("a hand-edited field that breaks its form keeps its default, the others are read", () => {
  // before: seed=-1 left a blank page, csv={"x":null} a page error, n alone a bad request
  const s = decode('#seed=-1&dseed=1.5&steps=-1&lr=-2&test=2&n=200&csv={"x":null,"y":null}&spf=3', meta);
  assert.equal(s.seed, 0); assert.equal(s.dseed, 42); assert.equal(s.steps, 1000);
  assert.equal(decode("#steps=0", meta).steps, 0);        // the table's: a run of no steps
  assert.equal(s.lr, null); assert.equal(s.test, 0); assert.equal(s.csv, null);
  assert.equal(s.n, 200); assert.equal(s.spf, 3);
  assert.deepEqual(decode('#p0={"a":"x"}&changes=[{"lr":1}]&constructor=1', meta).p0, {});
  const ok = decode('#data=csv&csv={"x":[1,2],"y":[3,4],"inputs":["t"]}', meta);
  assert.deepEqual(ok.csv, { x: [1, 2], y: [3, 4], inputs: ["t"] });
  assert.equal(decode('#csv={"x":"notarray","y":[1]}', meta).csv, null);
});
