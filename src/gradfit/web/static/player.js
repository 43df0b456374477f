// A run on the server (WebSocket /api/play), seen from the page. The page draws a frame,
// then acknowledges it; the server never runs more than a frame ahead of what was drawn,
// so pause, step and new settings act at once. A reset drops the socket: nothing from an
// old run reaches the screen.
export class Player {
  constructor(on) {
    this.on = on;           // {frame(m), done(m), error(text), lost(opened), state(name)}
    this.ws = null;
    this.state = "idle";    // idle | playing | pausing | paused
  }
  get live() { return this.ws !== null; }
  _set(state) { this.state = state; this.on.state(state); }

  start(body) {
    this.cancel();
    const sock = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/play`);
    this.ws = sock;
    this._set(body.pause_at !== undefined && body.pause_at !== null ? "pausing" : "playing");
    let opened = false;
    sock.onopen = () => { opened = true; sock.send(JSON.stringify({ type: "start", ...body })); };
    sock.onmessage = (ev) => {
      if (this.ws !== sock) return;                // an old run: never drawn
      const m = JSON.parse(ev.data);
      if (m.type === "frame") {
        let acked = false;
        const ack = () => {
          if (acked) return;
          acked = true;
          if (this.ws === sock && sock.readyState === 1) sock.send(JSON.stringify({ type: "ack", seq: m.seq }));
        };
        if (this.state === "pausing" && !m.paused) { ack(); return; }   // ran ahead of the pause
        if (m.paused) this._set("paused");
        this.on.frame(m);
        requestAnimationFrame(() => requestAnimationFrame(ack));   // drawn: the server may go on
        setTimeout(ack, 1000);      // a hidden tab draws nothing: the run goes on, slowly
      } else if (m.type === "done") {
        this.ws = null;
        this.on.done(m);
        this._set("idle");
      } else if (m.type === "error" || m.type === "busy") {
        this.ws = null;
        this.on.error(m.detail);
        this._set("idle");
      } else if (m.type === "warning") this.on.error(m.detail);
    };
    // closed with no done, error or cancel: the server went away (or was never there); said,
    // rather than "running" for good
    sock.onclose = () => {
      if (this.ws !== sock) return;
      this.ws = null;
      this.on.lost(opened);
      this._set("idle");
    };
  }
  _send(msg) { if (this.ws && this.ws.readyState === 1) this.ws.send(typeof msg === "string" ? msg : JSON.stringify(msg)); }
  pause() { if (this.state === "playing") { this._set("pausing"); this._send("pause"); } }
  play() { if (this.state === "paused" || this.state === "pausing") { this._set("playing"); this._send("play"); } }
  step() { if (this.state === "paused") this._send("step"); }
  set(change) { this._send({ type: "set", ...change }); }
  cancel() {
    const sock = this.ws;
    this.ws = null;
    if (sock) { try { if (sock.readyState === 1) sock.send("cancel"); sock.close(); } catch (e) { /* gone */ } }
    if (this.state !== "idle") this._set("idle");
  }
}
