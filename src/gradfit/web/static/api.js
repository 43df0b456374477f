// The server's JSON API: POST a body, get the answer or an Error with the server's one line.
export async function api(path, body) {
  const r = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(typeof out.detail === "string" ? out.detail : JSON.stringify(out.detail));
  return out;
}

export async function get(path) {
  const r = await fetch(path);
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(typeof out.detail === "string" ? out.detail : r.statusText);
  return out;
}

export async function upload(file, fields) {
  const form = new FormData();
  form.append("file", file);
  for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) form.append(k, v);
  const r = await fetch("/api/csv", { method: "POST", body: form });
  const out = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(out.detail);
  return out;
}
