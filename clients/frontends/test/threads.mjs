// What the thread tests share (protocol.md §9): threads created as a back end does, their state,
// answers to input requests, and small waits on observable conditions.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** POST /v1/threads: a thread of `agent` with default run input `input` → {id, token}. */
export async function createThread(c, { agent = 'mock', input = {} } = {}, base = c.edges[0].url) {
  const r = await fetch(`${base}/v1/threads`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ agent, input }),
  });
  const text = await r.text();
  if (r.status !== 201) throw new Error(`POST /v1/threads → ${r.status} ${text}`);
  return JSON.parse(text);
}

/** GET /v1/threads/{t}: {id, agent, runs: [{id, status}], active}. */
export async function threadState(thread, base) {
  const r = await fetch(`${base}/v1/threads/${thread.id}`, { headers: { Authorization: `Bearer ${thread.token}` } });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`GET /v1/threads/${thread.id} → ${r.status} ${text}`);
  return JSON.parse(text);
}

/** POST /v1/sessions/{id}/input with the thread's token. */
export async function answer(thread, session, request, data, base) {
  const r = await fetch(`${base}/v1/sessions/${session}/input`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', Authorization: `Bearer ${thread.token}` },
    body: JSON.stringify({ request, data }),
  });
  if (r.status !== 202) throw new Error(`POST /v1/sessions/${session}/input → ${r.status} ${await r.text()}`);
}

/** POST /v1/sessions/{id}/{op} (pause, resume, cancel) with the thread's token: the status. */
export async function control(thread, session, op, base) {
  const r = await fetch(`${base}/v1/sessions/${session}/${op}`, { method: 'POST', headers: { Authorization: `Bearer ${thread.token}` } });
  return r.status;
}

/** Polls `check` until it returns a truthy value (then that value), failing after `ms`. */
export async function until(what, check, ms = 20000) {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The text of a UI message's text parts. */
export const textOf = (m) => m.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
