// Editing points on the data plot: click adds, drag moves, shift-click removes. The edits
// live in the state (added, drop, move) so that a link carries them.
export function rebuild(base, s) {
  const x = [], y = [], origin = [];
  const drop = new Set(s.drop);
  for (let i = 0; i < base.x.length; i++) {
    if (drop.has(i)) continue;
    const m = s.move[i];
    x.push(m ? m[0] : base.x[i]); y.push(m ? m[1] : base.y[i]); origin.push(["b", i]);
  }
  s.added.forEach((p, j) => { x.push(p[0]); y.push(p[1]); origin.push(["a", j]); });
  return { x, y, origin };
}

export function edit(s, pts, k, xy) {        // move point k to xy, or remove it (xy null)
  const [kind, i] = pts.origin[k];
  if (kind === "a") {
    if (xy) s.added[i] = xy; else s.added.splice(i, 1);
  } else if (xy) s.move[i] = xy;
  else { s.drop.push(i); delete s.move[i]; }
}

function coords(gd, ev) {
  const fl = gd._fullLayout;
  if (!fl) return null;
  const xa = fl.xaxis, ya = fl.yaxis, box = gd.getBoundingClientRect();
  const px = ev.clientX - box.left - xa._offset, py = ev.clientY - box.top - ya._offset;
  if (px < 0 || py < 0 || px > xa._length || py > ya._length) return null;
  return { px, py, x: xa.p2l(px), y: ya.p2l(py), xa, ya };
}

function nearest(pts, c) {
  let best = -1, bestD = 10;                      // pixels
  for (let i = 0; i < pts.x.length; i++) {
    const d = Math.hypot(c.xa.l2p(pts.x[i]) - c.px, c.ya.l2p(pts.y[i]) - c.py);
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}

// hooks: {editable(), points(), state(), changed(final)}
export function wireEditing(gd, hooks) {
  let dragging = -1;
  gd.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0 || !hooks.editable()) return;
    const c = coords(gd, ev);
    if (!c) return;
    ev.preventDefault(); ev.stopPropagation();
    const pts = hooks.points(), s = hooks.state();
    const k = nearest(pts, c);
    if (ev.shiftKey) {
      if (k >= 0 && pts.x.length > 1) { edit(s, pts, k, null); hooks.changed(true); }
      return;
    }
    if (k >= 0) { dragging = k; return; }
    s.added.push([c.x, c.y]);
    hooks.changed(true);
  }, true);
  window.addEventListener("mousemove", (ev) => {
    if (dragging < 0) return;
    const c = coords(gd, ev);
    if (!c) return;
    edit(hooks.state(), hooks.points(), dragging, [c.x, c.y]);
    hooks.changed(false);
  });
  window.addEventListener("mouseup", () => {
    if (dragging < 0) return;
    dragging = -1;
    hooks.changed(true);
  });
}
