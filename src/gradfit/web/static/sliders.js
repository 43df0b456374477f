// One slider per parameter (a range that widens when a value leaves it), named for screen
// readers; the page's numbers stay in the state, the sliders only show and set them.
import { fmt } from "./state.js";

const $ = (id) => document.getElementById(id);
// a name as an id: each character outside [A-Za-z0-9_] by its code point (α and β had both
// been "_", one slider for two parameters); "-" cannot be in a parameter's name
const cssId = (n) => n.replace(/[^A-Za-z0-9_]/gu, (c) => `-u${c.codePointAt(0).toString(16)}-`);

// +-5 (the lesson's), or, where the server gave the parameter a scale (data far from size
// 1: timestamps, nanovolts), 2.5 scales: a slope of 1e-9 is not stuck at the slider's 0
function range(input, v) {
  const scale = Number(input.dataset.scale);
  const floor = scale > 0 && Number.isFinite(scale) ? 2.5 * scale : 5;
  const half = Math.max(floor, 2 * Math.abs(v || 0));
  input.min = String(-half); input.max = String(half); input.step = String(half / 1000);
}

// box: the container; onInput(name, value) when one moves, onRelease(name) when a drag
// ends (the range's change event); constants: name -> value (e, pi); scales: name -> the
// parameter's size on the data, or null (the server's /api/model)
export function makeSliders(box, names, values, max, onInput, constants = {}, onRelease = () => {},
                            scales = {}) {
  box.innerHTML = "";
  const consts = Object.entries(constants);
  if (consts.length) {          // e and pi are constants, never sliders: say so
    const hint = document.createElement("div");
    hint.className = "hint";
    hint.id = "constants";
    hint.textContent = "constants, not parameters: " +
      consts.map(([k, v]) => `${k} = ${fmt(v)} (to fit one, name it ${k}0)`).join(", ");
    box.appendChild(hint);
  }
  if (names.length > max) {
    box.insertAdjacentHTML("beforeend",
      `<div class="hint">${names.length} parameters: too many for sliders; press play.</div>`);
    return;
  }
  for (const name of names) {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label><span class="name" title="${name}">${name}</span>
      <input type="range" id="slider-${cssId(name)}" data-name="${name}" aria-label="parameter ${name}">
      <output id="out-${cssId(name)}"></output></label>`;
    box.appendChild(row);
    const input = row.querySelector("input");
    if (scales[name] > 0) input.dataset.scale = String(scales[name]);
    range(input, values[name]);
    typeable(row.querySelector("output"), input, name, (v) => { onInput(name, v); onRelease(name); });
    input.addEventListener("input", () => {
      $(`out-${cssId(name)}`).textContent = fmt(Number(input.value));
      onInput(name, Number(input.value));
    });
    input.addEventListener("change", () => onRelease(name));
  }
  setSliders(names, values);
}

// The slider's number, typed: a click (or Enter) makes it a text box; Enter applies the
// value (the range widens to it), Escape or leaving the box keeps the old one. A slider
// steps by 1/1000 of its range, so a value given to more digits (2.51372) could not be set.
function typeable(out, input, name, apply) {
  out.tabIndex = 0;
  out.title = "click to type a value";
  out.setAttribute("role", "button");
  out.setAttribute("aria-label", `type a value for ${name}`);
  const open = (ev) => {
    ev.preventDefault();               // a click inside the label would move focus to the slider
    if (out.querySelector("input")) return;
    const box = document.createElement("input");
    box.type = "text"; box.inputMode = "decimal"; box.className = "typed";
    box.value = out.textContent; box.setAttribute("aria-label", `value of ${name}`);
    out.textContent = "";
    out.appendChild(box);
    box.focus(); box.select();
    let closed = false;
    const close = (use) => {
      if (closed) return;
      closed = true;
      const text = box.value.trim(), v = Number(text);
      box.remove();
      if (use && text !== "" && Number.isFinite(v)) {
        if (v < Number(input.min) || v > Number(input.max)) range(input, v);
        input.value = String(v);
        out.textContent = fmt(v);
        apply(v);
      } else out.textContent = fmt(Number(input.value));
      out.focus();
    };
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); close(true); }
      else if (e.key === "Escape") close(false);
      e.stopPropagation();
    });
    box.addEventListener("blur", () => close(false));
  };
  out.addEventListener("click", open);
  out.addEventListener("keydown", (e) => { if (e.target === out && (e.key === "Enter" || e.key === " ")) open(e); });
}

export function setSliders(names, values) {
  for (const name of names) {
    const input = $(`slider-${cssId(name)}`);
    if (!input) continue;
    const v = values[name];
    if (v < Number(input.min) || v > Number(input.max)) range(input, v);
    input.value = String(v);
    $(`out-${cssId(name)}`).textContent = fmt(v);
  }
}
