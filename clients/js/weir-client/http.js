// @ts-check
/**
 * Talking to edges over HTTP: errors, URLs, and the calls that create sessions and threads, read
 * history and answer input requests (protocol.md §4, §9). An edge's error answer,
 * `{"error": {"code", "message"}}`, becomes a WeirError.
 * @module weir-client/http
 */

/** @typedef {import('./session.js').WeirEvent} WeirEvent */

/**
 * An error reported by weir. `code` is a stable string:
 * `unauthorized` (4001, after any token refresh), `no_such_session` (4004),
 * `history_expired` (4010), `frame_too_large` (1009), `unreachable` (maxAttempts used up),
 * `token_refresh_failed`, `bad_request` (1008: the edge refused the request, e.g. `after`
 * beyond the session's last seq), `http_error` or the edge's error code (createSession /
 * fetchHistory), `protocol` (a frame
 * the client cannot read), `handler` (an exception thrown by your callback), or the `code`
 * of a server `error` frame (e.g. `bad_request`).
 */
export class WeirError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{closeCode?: number, status?: number, fatal?: boolean, cause?: unknown, body?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'WeirError';
    /** @type {string} */
    this.code = code;
    /** @type {number|undefined} WebSocket close code, when the error came from a close */
    this.closeCode = extra.closeCode;
    /** @type {number|undefined} HTTP status, for HTTP helpers */
    this.status = extra.status;
    /** @type {boolean} true when the session is `failed` because of this error */
    this.fatal = !!extra.fatal;
    if (extra.cause !== undefined) /** @type {any} */ (this).cause = extra.cause;
    if (extra.body !== undefined) /** @type {any} */ (this).body = extra.body;
  }
}

/** @param {string} base */
export function toUrl(base) {
  const loc = /** @type {any} */ (globalThis).location;
  return loc && loc.href ? new URL(base, loc.href) : new URL(base);
}

/** @param {string} prefix @param {string} rest */
export function joinPath(prefix, rest) {
  return (prefix.endsWith('/') ? prefix : prefix + '/') + rest;
}

/** @param {string} base @param {string} path */
function httpUrl(base, path) {
  const u = toUrl(base);
  u.pathname = joinPath(u.pathname, path);
  u.search = '';
  u.hash = '';
  return u;
}

/**
 * Creates a session: `POST <baseUrl>/v1/sessions` with `{agent, input}`.
 * @param {string} baseUrl edge base URL
 * `id` (optional) asks for a caller-chosen session id, which makes creation idempotent.
 * @param {{agent?: string, input?: any, id?: string, apiKey?: string, fetch?: typeof fetch, signal?: AbortSignal}} [opts]
 * @returns {Promise<{id: string, token: string, ws_url: string, events_url: string}>}
 */
export async function createSession(baseUrl, opts = {}) {
  const f = opts.fetch ?? globalThis.fetch;
  /** @type {Record<string, string>} */
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  /** @type {any} */
  const body = { agent: opts.agent ?? 'mock' };
  if (opts.input !== undefined) body.input = opts.input;
  if (opts.id !== undefined) body.id = opts.id;
  const res = await f(httpUrl(baseUrl, 'v1/sessions').toString(), {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    signal: opts.signal,
  });
  return readJson(res, 'create session');
}

/**
 * Reads stored events: `GET <baseUrl>/v1/sessions/<id>/history?after=N&limit=M`.
 * With `all: true` it follows `next_after` until no more events come.
 * @param {string} baseUrl
 * @param {string} session
 * @param {{token?: string, after?: number, limit?: number, all?: boolean, fetch?: typeof fetch, signal?: AbortSignal}} [opts]
 * @returns {Promise<{events: WeirEvent[], next_after: number}>}
 */
export async function fetchHistory(baseUrl, session, opts = {}) {
  const f = opts.fetch ?? globalThis.fetch;
  let after = opts.after ?? 0;
  /** @type {WeirEvent[]} */
  const events = [];
  for (;;) {
    const u = httpUrl(baseUrl, `v1/sessions/${encodeURIComponent(session)}/history`);
    u.searchParams.set('after', String(after));
    u.searchParams.set('limit', String(opts.limit ?? 1000));
    /** @type {Record<string, string>} */
    const headers = { accept: 'application/json' };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const page = await readJson(
      await f(u.toString(), { headers, signal: opts.signal }),
      'fetch history',
    );
    const got = Array.isArray(page.events) ? page.events : [];
    events.push(...got);
    const next = Number(page.next_after ?? after);
    if (!opts.all || got.length === 0 || next <= after) return { events, next_after: next };
    after = next;
  }
}

/**
 * The error code a session endpoint's HTTP status stands for (createSession, fetchHistory);
 * any other status takes the edge's own code.
 * @type {Record<number, string>}
 */
const SESSION_CODES = { 401: 'unauthorized', 404: 'no_such_session', 410: 'history_expired' };

/**
 * The body of a 2xx answer, or a WeirError: its code is `codes[status]` when given, else the
 * edge's own code (`{"error": {"code", "message"}}`), else `http_error`.
 * @param {Response} res @param {string} what @param {Record<number, string>} [codes]
 */
async function readJson(res, what, codes = SESSION_CODES) {
  const text = await res.text();
  /** @type {any} */
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* keep the text */
  }
  if (!res.ok) {
    // Edges answer errors as {"error": {"code", "message"}}.
    const e = body && typeof body === 'object' ? (typeof body.error === 'object' && body.error ? body.error : body) : null;
    const msg = (e && (e.message || (typeof e.error === 'string' && e.error))) || text || res.statusText;
    const code = codes[res.status] ?? ((e && typeof e.code === 'string' && e.code) || 'http_error');
    throw new WeirError(code, `${what}: HTTP ${res.status}: ${msg}`, { status: res.status, body });
  }
  return body;
}

/**
 * One HTTP call to the first edge of `urls` (from `start` on, in rotation) that answers: an edge
 * that cannot be reached is skipped, an edge's answer stands (an error status throws its
 * WeirError). Every edge unreachable ⇒ WeirError `unreachable`.
 * @param {{urls: string[], start?: number, path: string, query?: Record<string, string>, method?: string,
 *   body?: any, token?: string, what: string, codes?: Record<number, string>, fetch?: typeof fetch,
 *   signal?: AbortSignal}} req
 * @returns {Promise<{body: any, index: number}>} the answer and the index of the edge that gave it
 */
export async function callEdges(req) {
  const f = req.fetch ?? globalThis.fetch;
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  if (req.body !== undefined) headers['content-type'] = 'application/json';
  if (req.token) headers.authorization = `Bearer ${req.token}`;
  const start = req.start ?? 0;
  /** @type {unknown} */
  let lastError;
  for (let i = 0; i < req.urls.length; i++) {
    const index = (start + i) % req.urls.length;
    /** @type {Response} */
    let res;
    const url = httpUrl(req.urls[index], req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, v);
    try {
      res = await f(url.toString(), {
        method: req.method ?? 'GET',
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        signal: req.signal,
      });
    } catch (e) {
      if (/** @type {any} */ (e)?.name === 'AbortError') throw e;
      lastError = e; // no answer from this edge: try the next one
      continue;
    }
    return { body: await readJson(res, req.what, req.codes), index };
  }
  const why = /** @type {any} */ (lastError)?.message ?? String(lastError);
  throw new WeirError('unreachable', `${req.what}: no edge answered (${why})`, { cause: lastError });
}

/**
 * Edge base URLs from an option: an array or a comma-separated string; default `[location.origin]`.
 * @param {string|string[]|undefined} option
 * @returns {string[]}
 */
export function edgeUrls(option) {
  const loc = /** @type {any} */ (globalThis).location;
  let urls = option ?? (loc && loc.origin ? [loc.origin] : []);
  if (typeof urls === 'string') urls = urls.split(',');
  const list = urls.map((u) => u.trim()).filter(Boolean);
  if (list.length === 0) throw new TypeError('weir: options.urls needs at least one edge URL');
  return list;
}

/**
 * Answers an input request over HTTP: `POST <edge>/v1/sessions/{id}/input` (protocol.md §9),
 * on the first edge of `urls` that answers. Rejects with the edge's code: `bad_request`,
 * `not_found`, `conflict`, `unauthorized`.
 * @param {{urls: string[], start?: number, session: string, request: string, data: any, token?: string, fetch?: typeof fetch}} a
 */
export async function postInput(a) {
  await callEdges({
    urls: a.urls,
    start: a.start,
    path: `v1/sessions/${encodeURIComponent(a.session)}/input`,
    method: 'POST',
    body: { request: a.request, data: a.data },
    token: a.token,
    what: `answer ${a.request}`,
    codes: {},
    fetch: a.fetch,
  });
}

/**
 * Creates a thread, one conversation with one agent: `POST <baseUrl>/v1/threads` with
 * `{agent, input, id}` (the API key when the cluster has one). Usually your back end's step: it
 * hands the page `{id, token}`. `input` holds the defaults of every run.
 * @param {string} baseUrl
 * @param {{agent?: string, input?: any, id?: string, apiKey?: string, fetch?: typeof fetch, signal?: AbortSignal}} [opts]
 * @returns {Promise<{id: string, token: string}>}
 */
export async function createThread(baseUrl, opts = {}) {
  /** @type {any} */
  const body = { agent: opts.agent ?? 'mock' };
  if (opts.input !== undefined) body.input = opts.input;
  if (opts.id !== undefined) body.id = opts.id;
  const { body: created } = await callEdges({
    urls: [baseUrl],
    path: 'v1/threads',
    method: 'POST',
    body,
    token: opts.apiKey,
    what: 'create thread',
    codes: {},
    fetch: opts.fetch,
    signal: opts.signal,
  });
  return created;
}
