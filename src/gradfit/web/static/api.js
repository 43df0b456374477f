// The server's JSON API: POST a body, get the answer or an Error with the server's one line.
// A server that does not answer at all (stopped, the network gone) is said in words (the
// browser's own "Failed to fetch" had been the whole message).
export const UNREACHABLE = "cannot reach the gradfit server (is `gradfit serve` still running?)";

async function answer(path, init) {
  let r;
  try { r = await fetch(path, init); } catch (e) { throw new Error(UNREACHABLE); }
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(typeof out.detail === "string" ? out.detail : JSON.stringify(out.detail));
  return out;
}

export async function api(path, body) {
  return answer(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

export async function get(path) {
  return answer(path);
}

export async function upload(file, fields) {
  const form = new FormData();
  form.append("file", file);
  for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) form.append(k, v);
  return answer("/api/csv", { method: "POST", body: form });
}
