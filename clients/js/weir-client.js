// @ts-check
/**
 * weir-client — resumable, exactly-once streaming of weir sessions over WebSocket.
 *
 * An ES module with no runtime dependencies. Works in browsers (`<script type="module">`,
 * bundlers) and in Node (pass a WebSocket implementation such as the `ws` package).
 *
 * Wire contract: docs/protocol.md §5 (frames, close codes) and §6 (guarantees).
 *
 * ```js
 * import { WeirSession, createSession } from './weir-client.js';
 * const { id, token } = await createSession(location.origin, { agent: 'mock', input: { tokens: 50 } });
 * const s = new WeirSession({ session: id, token, urls: [location.origin] });
 * for await (const ev of s) console.log(ev.seq, ev.kind, ev.data);
 * ```
 *
 * @module weir-client
 */

/**
 * @typedef {Object} WeirEvent
 * @property {number} seq      1, 2, 3, … contiguous per session; the resume cursor
 * @property {string} kind     `token`, `message`, `tool_call`, `tool_result`, `usage`, `status`, `error`, `end`, or any other kind (passed through)
 * @property {number} ts       producer wall clock, Unix milliseconds (fraction allowed)
 * @property {string} [source] agent name
 * @property {any} data        kind-specific object
 */

/**
 * @typedef {'idle'|'connecting'|'open'|'reconnecting'|'ended'|'failed'|'closed'} WeirState
 */

/**
 * The `data` of an operator broadcast (protocol.md §5 `notice` frame, §7 `POST /v1/broadcast`):
 * whatever object the operator sent, e.g. `{text: "Maintenance at 18:00"}`. A notice is not an
 * event: it has no seq, is never stored, and never moves the client's cursor.
 * @typedef {{text?: string, [key: string]: any}} WeirNotice
 */

/**
 * @typedef {Object} StateInfo
 * @property {WeirState} [previous]  the state before this one
 * @property {string} [url]          edge base URL in use (or about to be used)
 * @property {string} [node]         node id from the server's hello
 * @property {number} [attempt]      consecutive unsuccessful attempts so far
 * @property {number} [delay]        ms until the next attempt (state `reconnecting`)
 * @property {number} [closeCode]    close code of the connection that just ended
 * @property {string} [reason]       why the state changed
 * @property {string} [serverStatus] session status from the hello frame
 * @property {WeirEvent} [end]       the `end` event (state `ended`)
 * @property {WeirError} [error]     the error (state `failed`)
 */

/** Close codes of protocol.md §5. */
export const CloseCode = Object.freeze({
  DONE: 1000,
  TOO_LARGE: 1009,
  DRAINING: 1012,
  UNAUTHORIZED: 4001,
  NO_SUCH_SESSION: 4004,
  SLOW_CONSUMER: 4008,
  EXPIRED: 4010,
});

/** Close code this client uses when it drops a connection on purpose (gap, timeout, reconnect()). */
const CLIENT_DROP = 4000;

const noop = () => {};

/** Terminal session statuses (protocol.md §3). */
const TERMINAL_STATUS = new Set(['completed', 'cancelled', 'failed']);

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

/**
 * Full-jitter exponential backoff: a uniformly random delay in
 * `[0, min(max, initial * factor^attempt)]`.
 * @param {number} attempt 0 for the first retry
 * @param {{initial?: number, max?: number, factor?: number}} [opts]
 * @param {() => number} [random] returns [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const initial = opts.initial ?? 250;
  const max = opts.max ?? 10000;
  const factor = opts.factor ?? 2;
  const cap = Math.min(max, initial * Math.pow(factor, Math.max(0, Math.min(attempt, 60))));
  return Math.floor(random() * cap);
}

/**
 * The WebSocket URL of a session on one edge: `<base>/v1/sessions/<id>/ws?after=N&token=T`,
 * with http→ws and https→wss.
 * @param {string} base edge base URL (`http://host:port`, may carry a path prefix; relative in browsers)
 * @param {string} session
 * @param {{after?: number, token?: string}} [q]
 * @returns {string}
 */
export function wsUrl(base, session, q = {}) {
  const u = toUrl(base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new TypeError(`weir: unsupported URL scheme in ${base}`);
  }
  u.pathname = joinPath(u.pathname, `v1/sessions/${encodeURIComponent(session)}/ws`);
  u.search = '';
  u.hash = '';
  u.searchParams.set('after', String(q.after ?? 0));
  if (q.token) u.searchParams.set('token', q.token);
  return u.toString();
}

/** @param {string} base */
function toUrl(base) {
  const loc = /** @type {any} */ (globalThis).location;
  return loc && loc.href ? new URL(base, loc.href) : new URL(base);
}

/** @param {string} prefix @param {string} rest */
function joinPath(prefix, rest) {
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
async function callEdges(req) {
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
function edgeUrls(option) {
  const loc = /** @type {any} */ (globalThis).location;
  let urls = option ?? (loc && loc.origin ? [loc.origin] : []);
  if (typeof urls === 'string') urls = urls.split(',');
  const list = urls.map((u) => u.trim()).filter(Boolean);
  if (list.length === 0) throw new TypeError('weir: options.urls needs at least one edge URL');
  return list;
}

/**
 * @typedef {Object} StorageLike
 * @property {(key: string) => string|null} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/**
 * @typedef {Object} WeirSessionOptions
 * @property {string} session                       session id
 * @property {string} [token]                       session token (JWT); fetched with getToken() when absent
 * @property {string|string[]} [urls]               edge base URLs, tried in rotation; default `[location.origin]`
 * @property {number} [after]                       last seq already held (default 0, or the persisted one if larger)
 * @property {() => (string|null|undefined|Promise<string|null|undefined>)} [getToken]  fresh token after a 4001
 * @property {'sessionStorage'|'localStorage'|StorageLike|false} [persist]  keep lastSeq under `weir:<session>`
 * @property {number} [heartbeatInterval]           server heartbeat interval in ms (default 15000); silence for 2× ⇒ dead
 * @property {number} [connectTimeout]              ms for a socket to open before the attempt is abandoned (default 10000)
 * @property {{initial?: number, max?: number, factor?: number}} [backoff]  default {initial: 250, max: 10000, factor: 2}
 * @property {number} [maxAttempts]                 consecutive failed attempts before `failed` (default Infinity)
 * @property {boolean|number} [autoAck]             ack delivered events: true = at most every 1000 ms, a number = that interval
 * @property {any} [WebSocket]                      WebSocket implementation (default globalThis.WebSocket)
 * @property {(ev: WeirEvent) => void} [onEvent]
 * @property {(state: WeirState, info: StateInfo) => void} [onState]
 * @property {(err: WeirError) => void} [onError]
 * @property {(data: WeirNotice) => void} [onNotice]  operator broadcasts (`notice` frames); no seq, no cursor
 * @property {(req: WeirInputRequest) => void} [onInputRequest]  the agent asks a person: answer with answer(req, data)
 * @property {typeof fetch} [fetch]                  fetch implementation for answers over HTTP and request checks
 * @property {() => number} [random]                randomness for jitter (tests)
 */

/**
 * One subscriber of one session. Delivers every event exactly once, in seq order, across
 * reconnects, edge failures and page reloads (with `persist`).
 *
 * States: `idle` → `connecting` → `open` ⇄ `reconnecting` → `ended` | `failed` | `closed`
 * (`closed` = you called close()).
 */
export class WeirSession {
  /** @param {WeirSessionOptions} opts */
  constructor(opts) {
    if (!opts || typeof opts.session !== 'string' || !opts.session) {
      throw new TypeError('weir: options.session (the session id) is required');
    }
    this.session = opts.session;
    /** @type {string|undefined} */
    this.token = opts.token;
    /** @type {string[]} */
    this.urls = edgeUrls(opts.urls);
    this._WS = opts.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof this._WS !== 'function') {
      throw new TypeError('weir: no WebSocket implementation; pass options.WebSocket (e.g. the "ws" package)');
    }
    this._getToken = opts.getToken;
    this._heartbeat = opts.heartbeatInterval ?? 15000;
    this._connectTimeout = opts.connectTimeout ?? 10000;
    this._backoff = { initial: 250, max: 10000, factor: 2, ...(opts.backoff || {}) };
    this._maxAttempts = opts.maxAttempts ?? Infinity;
    this._autoAck = opts.autoAck === true ? 1000 : typeof opts.autoAck === 'number' ? opts.autoAck : 0;
    this._random = opts.random ?? Math.random;
    this._fetch = opts.fetch;
    this._storage = resolveStorage(opts.persist ?? false);
    this._storageKey = `weir:${this.session}`;

    /** @type {((ev: WeirEvent) => void) | undefined} called for each event, once, in seq order */
    this.onEvent = opts.onEvent;
    /** @type {((state: WeirState, info: StateInfo) => void) | undefined} */
    this.onState = opts.onState;
    /** @type {((err: WeirError) => void) | undefined} */
    this.onError = opts.onError;
    /** @type {((data: WeirNotice) => void) | undefined} called for each operator notice; never touches lastSeq */
    this.onNotice = opts.onNotice;
    /** @type {((req: WeirInputRequest) => void) | undefined} called once per open input request */
    this.onInputRequest = opts.onInputRequest;

    let after = Math.max(0, Math.floor(Number(opts.after ?? 0)) || 0);
    const stored = this._readPersisted();
    if (stored > after) after = stored;
    /** @type {number} last seq delivered (the resume cursor) */
    this.lastSeq = after;
    /** @type {WeirState} */
    this.state = 'idle';
    /** @type {string|undefined} node id of the edge currently serving (from hello) */
    this.node = undefined;
    /** @type {string|undefined} session status from the last hello */
    this.serverStatus = undefined;
    /** @type {WeirEvent|undefined} the `end` event, once delivered */
    this.endEvent = undefined;
    /** @type {WeirError|undefined} the error that made the session `failed` */
    this.error = undefined;
    /** @type {number} connections opened so far (hello received) */
    this.connections = 0;

    this._urlIndex = 0;
    this._attempt = 0; // consecutive unsuccessful attempts
    /** @type {any} */ this._ws = null;
    this._connId = 0;
    /** @type {any} */ this._timer = null; // reconnect delay
    /** @type {any} */ this._hbTimer = null; // heartbeat / connect timeout
    /** @type {any} */ this._ackTimer = null;
    this._ackedSeq = 0; // highest seq acked to the server
    this._ackWanted = 0; // highest seq the app asked to ack
    /** @type {string[]} control frames waiting for an open socket */
    this._pendingControl = [];
    this._refreshedToken = false; // getToken() already tried for the current 4001 streak
    this._lastImmediate = 0; // time of the last zero-delay reconnect
    this._helloSeen = false;
    /** @type {{code: string, message: string}|null} error frame seen on the current connection */
    this._lastServerError = null;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {Set<{push: (ev: WeirEvent) => void, finish: (err?: WeirError) => void}>} */
    this._iterators = new Set();

    /** @type {(v?: any) => void} */ let res = () => {};
    /** @type {(e: any) => void} */ let rej = () => {};
    /**
     * Settles when the session is over: resolves with the `end` event (or undefined after
     * close()), rejects with the WeirError when it `failed`.
     * @type {Promise<WeirEvent|undefined>}
     */
    this.finished = new Promise((a, b) => {
      res = a;
      rej = b;
    });
    this.finished.catch(() => {}); // never an unhandled rejection
    this._resolveFinished = res;
    this._rejectFinished = rej;
    /** @type {Array<{resolve: Function, reject: Function}>} */
    this._openWaiters = [];
    this._inputs = new InputRequests(this);
  }

  /** True once the session can no longer deliver events (`ended`, `failed` or `closed`). */
  get done() {
    return this.state === 'ended' || this.state === 'failed' || this.state === 'closed';
  }

  /** The edge base URL of the current (or next) connection. */
  get url() {
    return this.urls[this._urlIndex % this.urls.length];
  }

  /**
   * Starts streaming. Resolves when the first connection is open (hello received) or the
   * session ended; rejects with a WeirError if it fails first. Calling it again is harmless.
   * @returns {Promise<void>}
   */
  connect() {
    /** @type {Promise<void>} */
    const p = new Promise((resolve, reject) => {
      if (this.state === 'open' || this.state === 'ended' || this.state === 'closed') return resolve();
      if (this.state === 'failed') return reject(this.error);
      this._openWaiters.push({ resolve, reject });
    });
    p.catch(() => {});
    if (this.state === 'idle') {
      this._setState('connecting', { url: this.url, reason: 'connect' });
      this._open();
    }
    return p;
  }

  /** Stops streaming for good (state `closed`); the persisted cursor is kept. */
  close() {
    if (this.done) return;
    this._flushAck();
    this._teardown(1000, 'client closed');
    this._finish('closed', { reason: 'closed by client' });
  }

  /**
   * Drops the current connection and reconnects (to the next URL) with `after = lastSeq`.
   * What a network failure would do; used by the demo's "drop connection" button.
   * @param {{rotate?: boolean, delay?: number}} [opts]
   */
  reconnect(opts = {}) {
    if (this.done || this.state === 'idle') return;
    this._teardown(CLIENT_DROP, 'client reconnect');
    this._scheduleReconnect({
      reason: 'reconnect requested',
      rotate: opts.rotate ?? true,
      delay: opts.delay ?? 0,
    });
  }

  /**
   * Acknowledges events up to `seq` (default: lastSeq); stored server-side as the client
   * cursor. Monotonic; sent when a connection is open.
   * @param {number} [seq]
   */
  ack(seq = this.lastSeq) {
    const s = Math.min(Math.floor(Number(seq)), this.lastSeq);
    if (!(s > this._ackWanted)) return;
    this._ackWanted = s;
    this._sendAck();
  }

  /** Asks the producer to pause generation. Queued until a connection is open. */
  pause() {
    this._control('pause');
  }

  /** Asks the producer to resume generation. Queued until a connection is open. */
  resume() {
    this._control('resume');
  }

  /** Asks the producer to cancel; the session then ends with `end` reason `cancelled`. */
  cancel() {
    this._control('cancel');
  }

  /**
   * The input request the agent waits on, once announced to onInputRequest; undefined when
   * none is open.
   * @returns {WeirInputRequest|undefined}
   */
  get inputRequest() {
    return this._inputs.current();
  }

  /**
   * Answers an input request (protocol.md §9): the WebSocket `input` frame while connected,
   * else `POST /v1/sessions/{id}/input`. Resolves once weir has the answer (202, or over the
   * WebSocket, where acceptance has no reply, when the session's `input` event for it arrives);
   * rejects with a WeirError: `bad_request` (data not an object or not matching the schema),
   * `not_found` (no such open request), `conflict` (already answered, or the session ended).
   * @param {WeirInputRequest|string} request the request (from onInputRequest) or its id
   * @param {Record<string, any>} data
   * @returns {Promise<void>}
   */
  answer(request, data) {
    return this._inputs.answer(request, data);
  }

  /**
   * Subscribes to `event`, `state`, `error`, `notice` or `input_request`. Returns a function
   * that unsubscribes.
   * @param {'event'|'state'|'error'|'notice'|'input_request'} type
   * @param {Function} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * Async iteration over events from now on: `for await (const ev of session)`.
   * Starts the connection if it is idle. Ends after the `end` event (or close()); throws the
   * WeirError if the session fails. Leaving the loop early (break) closes the session.
   * @returns {AsyncIterableIterator<WeirEvent>}
   */
  events() {
    /** @type {WeirEvent[]} */
    const queue = [];
    /** @type {{resolve: Function, reject: Function}|null} */
    let waiter = null;
    let finished = this.done;
    /** @type {WeirError|undefined} */
    let failure = this.state === 'failed' ? this.error : undefined;
    const sub = {
      /** @param {WeirEvent} ev */
      push: (ev) => {
        if (waiter) {
          const w = waiter;
          waiter = null;
          w.resolve({ value: ev, done: false });
        } else queue.push(ev);
      },
      /** @param {WeirError} [err] */
      finish: (err) => {
        finished = true;
        failure = err;
        this._iterators.delete(sub);
        if (waiter && queue.length === 0) {
          const w = waiter;
          waiter = null;
          if (err) w.reject(err);
          else w.resolve({ value: undefined, done: true });
        }
      },
    };
    if (!finished) this._iterators.add(sub);
    if (this.state === 'idle') this.connect();
    /** @type {AsyncIterableIterator<WeirEvent>} */
    const it = {
      next: () => {
        if (queue.length) return Promise.resolve({ value: /** @type {WeirEvent} */ (queue.shift()), done: false });
        if (finished) {
          if (failure) {
            const e = failure;
            failure = undefined; // throw once, then done
            return Promise.reject(e);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiter = { resolve, reject };
        });
      },
      return: () => {
        this._iterators.delete(sub);
        queue.length = 0;
        finished = true;
        failure = undefined;
        if (!this.done) this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  [Symbol.asyncIterator]() {
    return this.events();
  }

  // ---------------------------------------------------------------- internals

  /** @param {'pause'|'resume'|'cancel'} op */
  _control(op) {
    if (this.done) return;
    const frame = JSON.stringify({ type: op });
    if (!this._sendNow(frame)) {
      // pause and resume cancel each other out while offline; cancel stays.
      if (op === 'pause' || op === 'resume') {
        this._pendingControl = this._pendingControl.filter((f) => f.includes('cancel'));
      }
      this._pendingControl.push(frame);
    }
  }

  /** @param {string} text @returns {boolean} sent */
  _sendNow(text) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !this._helloSeen) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  _sendAck() {
    if (this._ackWanted <= this._ackedSeq) return;
    if (this._sendNow(JSON.stringify({ type: 'ack', seq: this._ackWanted }))) {
      this._ackedSeq = this._ackWanted;
    }
  }

  _flushAck() {
    if (this._ackTimer) {
      clearTimeout(this._ackTimer);
      this._ackTimer = null;
    }
    if (this._autoAck) this._ackWanted = Math.max(this._ackWanted, this.lastSeq);
    this._sendAck();
  }

  async _open() {
    if (this.done) return;
    if (!this.token && this._getToken) {
      const ok = await this._refreshToken();
      if (!ok || this.done) return;
    }
    const url = this.url;
    let target;
    try {
      target = wsUrl(url, this.session, { after: this.lastSeq, token: this.token });
    } catch (e) {
      this._fail(new WeirError('bad_url', String(/** @type {any} */ (e)?.message ?? e), { cause: e }));
      return;
    }
    const id = ++this._connId;
    this._helloSeen = false;
    this._lastServerError = null;
    /** @type {any} */
    let ws;
    try {
      ws = new this._WS(target);
    } catch (e) {
      this._scheduleReconnect({ reason: `cannot open socket: ${/** @type {any} */ (e)?.message ?? e}` });
      return;
    }
    this._ws = ws;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      /* not all implementations allow it */
    }
    const mine = () => this._connId === id && this._ws === ws;
    ws.onopen = () => {
      if (!mine()) return;
      this._armTimer(this._heartbeat * 2, 'heartbeat timeout');
    };
    ws.onmessage = (/** @type {any} */ msg) => {
      if (!mine()) return;
      this._armTimer(this._heartbeat * 2, 'heartbeat timeout');
      this._onFrame(msg.data);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (/** @type {any} */ ev) => {
      if (!mine()) return;
      this._ws = null;
      this._clearTimer();
      this._inputs.socketLost();
      this._onClose(Number(ev?.code ?? 1006), String(ev?.reason ?? ''));
    };
    this._armTimer(this._connectTimeout, 'connect timeout');
  }

  /** @param {number} ms @param {string} why */
  _armTimer(ms, why) {
    this._clearTimer();
    if (!(ms > 0) || !isFinite(ms)) return;
    this._hbTimer = setTimeout(() => {
      this._hbTimer = null;
      if (this.done || !this._ws) return;
      this._teardown(CLIENT_DROP, why);
      this._scheduleReconnect({ reason: why });
    }, ms);
  }

  _clearTimer() {
    if (this._hbTimer) {
      clearTimeout(this._hbTimer);
      this._hbTimer = null;
    }
  }

  /** Closes the current socket (if any) without waiting for its close event. */
  /** @param {number} code @param {string} reason */
  _teardown(code, reason) {
    this._clearTimer();
    if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    const ws = this._ws;
    this._ws = null;
    this._connId++;
    if (ws) {
      // No-ops rather than null: the `ws` package emits 'error' when a socket is closed
      // before its handshake ends, and an EventEmitter with no 'error' listener throws.
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = noop;
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
      }
      this._inputs.socketLost();
    }
  }

  /** @param {any} data */
  _onFrame(data) {
    let text = data;
    if (typeof text !== 'string') {
      try {
        text = new TextDecoder().decode(data);
      } catch {
        text = String(data);
      }
    }
    /** @type {any} */
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      this._emitError(new WeirError('protocol', 'frame from server is not JSON', { cause: e }));
      return;
    }
    switch (frame && frame.type) {
      case 'hello':
        this._onHello(frame);
        break;
      case 'events':
        if (!this._helloSeen) this._onHello({});
        this._onEvents(Array.isArray(frame.events) ? frame.events : []);
        this._inputs.frameDone();
        break;
      case 'heartbeat':
        break;
      case 'notice':
        this._onNotice(frame.data);
        break;
      case 'error':
        if (this._inputs.refused(String(frame.code), String(frame.message ?? ''))) break;
        this._lastServerError = { code: String(frame.code ?? 'error'), message: String(frame.message ?? '') };
        this._emitError(new WeirError(this._lastServerError.code, this._lastServerError.message || this._lastServerError.code));
        break;
      case 'reconnect':
        this._teardown(1000, 'server asked to reconnect');
        this._scheduleReconnect({ reason: `server draining${frame.reason ? ': ' + frame.reason : ''}`, delay: 0 });
        break;
      default:
        // Unknown frame types are ignored: the server may add some.
        break;
    }
  }

  /** @param {any} frame */
  _onHello(frame) {
    this._helloSeen = true;
    this._attempt = 0;
    this._refreshedToken = false;
    this.connections++;
    if (typeof frame.node === 'string') this.node = frame.node;
    if (typeof frame.status === 'string') this.serverStatus = frame.status;
    this._setState('open', { url: this.url, node: this.node, serverStatus: this.serverStatus });
    const waiters = this._openWaiters.splice(0);
    for (const w of waiters) w.resolve();
    // Flush what waited for a connection.
    const pending = this._pendingControl.splice(0);
    for (const f of pending) {
      if (!this._sendNow(f)) this._pendingControl.push(f);
    }
    this._sendAck(); // an ack that could not be sent while disconnected
  }

  /** @param {any[]} events */
  _onEvents(events) {
    let delivered = 0;
    for (const ev of events) {
      if (this.done) return;
      const seq = ev && ev.seq;
      if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1) {
        this._emitError(new WeirError('protocol', `event without a valid seq: ${JSON.stringify(ev)?.slice(0, 200)}`));
        continue;
      }
      if (seq <= this.lastSeq) continue; // duplicate: already delivered
      if (seq !== this.lastSeq + 1) {
        // A gap: never deliver out of order. Resume from what we hold.
        if (delivered) this._afterDelivery();
        this._teardown(CLIENT_DROP, 'gap');
        this._scheduleReconnect({ reason: `gap: got seq ${seq} after ${this.lastSeq}`, delay: 0, rotate: false });
        return;
      }
      this.lastSeq = seq;
      delivered++;
      this._deliver(ev);
      if (ev.kind === 'end') {
        this._afterDelivery();
        this._ended(ev);
        return;
      }
    }
    if (delivered) this._afterDelivery();
  }

  _afterDelivery() {
    this._writePersisted();
    if (this._autoAck) {
      this._ackWanted = this.lastSeq;
      if (!this._ackTimer) {
        this._sendAck();
        this._ackTimer = setTimeout(() => {
          this._ackTimer = null;
          if (this._autoAck) this._ackWanted = Math.max(this._ackWanted, this.lastSeq);
          this._sendAck();
        }, this._autoAck);
      }
    }
  }

  /**
   * An operator broadcast. It is outside the session's log: no seq, so lastSeq, the persisted
   * cursor and acks stay as they are.
   * @param {any} data
   */
  _onNotice(data) {
    /** @type {WeirNotice} */
    const notice = data && typeof data === 'object' ? data : data == null ? {} : { text: String(data) };
    this._call(this.onNotice, notice);
    this._callAll('notice', notice);
  }

  /** @param {WeirEvent} ev */
  _deliver(ev) {
    this._inputs.seen(ev);
    this._call(this.onEvent, ev);
    this._callAll('event', ev);
    for (const it of this._iterators) it.push(ev);
  }

  /** @param {WeirEvent} ev */
  _ended(ev) {
    this.endEvent = ev;
    this._flushAck();
    // The server closes with 1000 after `end`; nothing more is wanted from this socket.
    this._teardown(1000, 'session ended');
    this._finish('ended', { end: ev, reason: String(ev?.data?.reason ?? 'ended') });
  }

  /** @param {number} code @param {string} reason */
  _onClose(code, reason) {
    if (this.done) return;
    const se = this._lastServerError;
    const detail = se ? `${se.code}: ${se.message}` : reason || `close ${code}`;
    switch (code) {
      case CloseCode.DONE:
        if (this.serverStatus && TERMINAL_STATUS.has(this.serverStatus)) {
          // The session is over and we already hold its end (e.g. resumed after the end).
          this._finish('ended', { reason: this.serverStatus, closeCode: code });
          return;
        }
        this._scheduleReconnect({ reason: `closed before end (${detail})`, closeCode: code });
        return;
      case CloseCode.DRAINING:
        this._scheduleReconnect({ reason: `server draining (${detail})`, closeCode: code, delay: 0 });
        return;
      case CloseCode.UNAUTHORIZED:
        void this._onUnauthorized(detail);
        return;
      case CloseCode.NO_SUCH_SESSION:
        this._fail(new WeirError('no_such_session', `no such session ${this.session} (${detail})`, { closeCode: code }));
        return;
      case CloseCode.EXPIRED:
        this._fail(new WeirError('history_expired', `history after seq ${this.lastSeq} has expired (${detail})`, { closeCode: code }));
        return;
      case CloseCode.TOO_LARGE:
        this._fail(new WeirError('frame_too_large', `a client frame was too large (${detail})`, { closeCode: code }));
        return;
      case 1008: // policy violation: the edge refused the request itself (e.g. `after` beyond the last seq)
        this._fail(new WeirError(se ? se.code : 'bad_request', `request refused (${detail})`, { closeCode: code }));
        return;
      case CloseCode.SLOW_CONSUMER:
      default:
        this._scheduleReconnect({ reason: `connection lost (${detail})`, closeCode: code });
    }
  }

  /** @param {string} detail */
  async _onUnauthorized(detail) {
    if (this._getToken && !this._refreshedToken) {
      this._refreshedToken = true;
      this._setState('reconnecting', { url: this.url, reason: 'token refresh', closeCode: 4001, attempt: this._attempt, delay: 0 });
      const ok = await this._refreshToken(detail);
      if (ok && !this.done) this._open();
      return;
    }
    this._fail(new WeirError('unauthorized', `session token rejected (${detail})`, { closeCode: 4001 }));
  }

  /** @param {string} [detail] @returns {Promise<boolean>} */
  async _refreshToken(detail) {
    let fresh;
    try {
      fresh = await /** @type {Function} */ (this._getToken)();
    } catch (e) {
      this._fail(new WeirError('token_refresh_failed', `getToken() threw: ${/** @type {any} */ (e)?.message ?? e}`, { closeCode: detail ? 4001 : undefined, cause: e }));
      return false;
    }
    if (this.done) return false;
    if (typeof fresh !== 'string' || !fresh) {
      this._fail(new WeirError('unauthorized', `session token rejected and getToken() gave no new token${detail ? ` (${detail})` : ''}`, { closeCode: detail ? 4001 : undefined }));
      return false;
    }
    this.token = fresh;
    return true;
  }

  /**
   * @param {{reason: string, closeCode?: number, delay?: number, rotate?: boolean}} o
   */
  _scheduleReconnect(o) {
    if (this.done) return;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    if (this._attempt >= this._maxAttempts) {
      this._fail(new WeirError('unreachable', `gave up after ${this._attempt} attempts: ${o.reason}`, { closeCode: o.closeCode }));
      return;
    }
    let delay;
    const now = Date.now();
    if (o.delay === 0 && now - this._lastImmediate > 1000) {
      delay = 0; // immediate, but never twice within a second (no hot loops)
      this._lastImmediate = now;
    } else {
      delay = o.delay && o.delay > 0 ? o.delay : backoffDelay(this._attempt, this._backoff, this._random);
    }
    this._attempt++;
    if (o.rotate !== false && this.urls.length > 1) this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    this._setState('reconnecting', {
      url: this.url,
      attempt: this._attempt,
      delay,
      closeCode: o.closeCode,
      reason: o.reason,
    });
    this._timer = setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
  }

  /** @param {WeirError} err */
  _fail(err) {
    if (this.done) return;
    err.fatal = true;
    this.error = err;
    this._teardown(1000, 'failed');
    this._emitError(err);
    this._finish('failed', { error: err, reason: err.message, closeCode: err.closeCode });
  }

  /** @param {'ended'|'failed'|'closed'} state @param {StateInfo} info */
  _finish(state, info) {
    if (this._ackTimer) clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    this._clearTimer();
    this._writePersisted();
    this._inputs.finish(state);
    this._setState(state, { url: this.url, node: this.node, ...info });
    const waiters = this._openWaiters.splice(0);
    if (state === 'failed') {
      for (const w of waiters) w.reject(this.error);
      this._rejectFinished(this.error);
    } else {
      for (const w of waiters) w.resolve();
      this._resolveFinished(this.endEvent);
    }
    for (const it of [...this._iterators]) it.finish(state === 'failed' ? this.error : undefined);
  }

  /** @param {WeirState} state @param {StateInfo} info */
  _setState(state, info) {
    const previous = this.state;
    if (previous === state && state !== 'reconnecting') return;
    this.state = state;
    const full = { previous, ...info };
    this._call(this.onState, state, full);
    this._callAll('state', state, full);
  }

  /** @param {WeirError} err */
  _emitError(err) {
    const has = this.onError || (this._listeners.get('error')?.size ?? 0) > 0;
    if (!has) {
      if (err.fatal && typeof console !== 'undefined') console.warn(`weir: session ${this.session} failed:`, err.message);
      return;
    }
    this._call(this.onError, err);
    this._callAll('error', err);
  }

  /** @param {Function|undefined} fn @param {...any} args */
  _call(fn, ...args) {
    if (typeof fn !== 'function') return;
    try {
      fn.apply(this, args);
    } catch (e) {
      if (fn === this.onError || args[0] instanceof WeirError) {
        // Never recurse into a throwing error handler.
        if (typeof console !== 'undefined') console.error('weir: error in onError handler', e);
        return;
      }
      this._emitError(new WeirError('handler', `callback threw: ${/** @type {any} */ (e)?.message ?? e}`, { cause: e }));
    }
  }

  /** @param {string} type @param {...any} args */
  _callAll(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) this._call(fn, ...args);
  }

  _readPersisted() {
    if (!this._storage) return 0;
    try {
      const v = Number(this._storage.getItem(this._storageKey));
      return Number.isInteger(v) && v > 0 ? v : 0;
    } catch {
      return 0;
    }
  }

  _writePersisted() {
    if (!this._storage || this.lastSeq <= 0) return;
    try {
      this._storage.setItem(this._storageKey, String(this.lastSeq));
    } catch {
      /* quota or privacy mode: persistence is best effort */
    }
  }
}

// ---------------------------------------------------------------- asking a person (§9)

/**
 * What an agent asks a person: an `input_request` event (protocol.md §9).
 * @typedef {Object} WeirInputRequest
 * @property {string} id       the request id, which an answer names
 * @property {string} prompt   what to ask
 * @property {any} [schema]    JSON Schema that the answer's data must match
 * @property {string} session  the session that asks
 * @property {number} seq      the seq of its `input_request` event
 */

/** Codes with which an edge refuses an answer (protocol.md §5, the `input` frame). */
const REFUSALS = new Set(['bad_request', 'not_found', 'conflict']);

/**
 * @typedef {Object} PendingAnswer
 * @property {string} id
 * @property {Record<string, any>} data
 * @property {() => void} resolve
 * @property {(e: WeirError) => void} reject
 * @property {WeirError} [error] the edge's 409 to a resent answer
 */

/**
 * Answers an input request over HTTP: `POST <edge>/v1/sessions/{id}/input` (protocol.md §9),
 * on the first edge of `urls` that answers. Rejects with the edge's code: `bad_request`,
 * `not_found`, `conflict`, `unauthorized`.
 * @param {{urls: string[], start?: number, session: string, request: string, data: any, token?: string, fetch?: typeof fetch}} a
 */
async function postInput(a) {
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
 * The input requests of one session: which are open, which to announce, the answers in flight.
 * A request is announced (onInputRequest) once the session's log shows it open: replaying a
 * request that was answered, or whose session ended, announces nothing.
 */
class InputRequests {
  /** @param {WeirSession} session */
  constructor(session) {
    this.s = session;
    /** @type {Map<string, WeirInputRequest>} requests with no `input` and no `end` after them */
    this.open = new Map();
    /** @type {Set<string>} requests whose `input` event was delivered */
    this.answered = new Set();
    /** @type {WeirInputRequest[]} delivered in the frame being read, not checked yet */
    this.unchecked = [];
    /** @type {WeirInputRequest|undefined} the open request announced last */
    this.announced = undefined;
    /** @type {PendingAnswer[]} sent as WebSocket frames: settled by their `input` event or a refusal */
    this.sent = [];
    /** @type {PendingAnswer[]} resent after a lost socket and refused as answered: settled by an `input` event */
    this.unsure = [];
  }

  /** @returns {WeirInputRequest|undefined} */
  current() {
    return this.announced;
  }

  /** Every delivered event, before the callbacks see it. @param {WeirEvent} ev */
  seen(ev) {
    const d = ev.data ?? {};
    if (ev.kind === 'input_request' && typeof d.id === 'string') {
      if (this.answered.has(d.id)) return;
      /** @type {WeirInputRequest} */
      const req = { id: d.id, prompt: String(d.prompt ?? ''), session: this.s.session, seq: ev.seq };
      if (d.schema !== undefined) req.schema = d.schema;
      this.open.set(req.id, req);
      this.unchecked.push(req);
    } else if (ev.kind === 'input' && typeof d.request === 'string') {
      this.answered.add(d.request);
      this.close(d.request);
      for (const list of [this.sent, this.unsure]) {
        for (const a of list.filter((x) => x.id === d.request)) {
          list.splice(list.indexOf(a), 1);
          a.resolve();
        }
      }
    } else if (ev.kind === 'end') {
      for (const id of [...this.open.keys()]) this.close(id);
      const ended = new WeirError('conflict', 'the session ended before the agent took the answer');
      for (const a of [...this.sent.splice(0), ...this.unsure.splice(0)]) a.reject(a.error ?? ended);
    }
  }

  /** @param {string} id */
  close(id) {
    this.open.delete(id);
    if (this.announced?.id === id) this.announced = undefined;
  }

  /** After each events frame: check the requests it opened against the log. */
  frameDone() {
    for (const req of this.unchecked.splice(0)) {
      if (this.open.get(req.id) === req) void this.announce(req);
    }
  }

  /** @param {WeirInputRequest} req */
  async announce(req) {
    let open = true;
    try {
      open = await this.stillOpen(req);
    } catch {
      /* the log cannot be read now: the request may be open, so it is announced */
    }
    if (!open || this.open.get(req.id) !== req || this.s.done) return;
    this.announced = req;
    this.s._call(this.s.onInputRequest, req);
    this.s._callAll('input_request', req);
  }

  /**
   * True when the log holds neither an `input` for the request nor the session's `end` after it.
   * Live, the page after the request is empty; in a replay, the answer follows within a page.
   * @param {WeirInputRequest} req
   */
  async stillOpen(req) {
    let after = req.seq;
    for (;;) {
      const { body } = await callEdges({
        urls: this.s.urls,
        start: this.s._urlIndex,
        path: `v1/sessions/${encodeURIComponent(this.s.session)}/history`,
        query: { after: String(after), limit: '1000' },
        token: this.s.token,
        what: 'read history',
        fetch: this.s._fetch,
      });
      /** @type {WeirEvent[]} */
      const events = Array.isArray(body?.events) ? body.events : [];
      if (events.some((e) => e.kind === 'end' || (e.kind === 'input' && e.data?.request === req.id))) return false;
      const next = Number(body?.next_after ?? after);
      if (events.length === 0 || next <= after) return true;
      after = next;
    }
  }

  /** @param {WeirInputRequest|string} request @param {Record<string, any>} data @returns {Promise<void>} */
  answer(request, data) {
    const id = typeof request === 'string' ? request : request?.id;
    if (typeof id !== 'string' || !id) {
      return Promise.reject(new WeirError('bad_request', 'answer: name the request (from onInputRequest, or its id)'));
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      return Promise.reject(new WeirError('bad_request', `answer to ${id}: data must be a JSON object`));
    }
    if (this.answered.has(id)) {
      return Promise.reject(new WeirError('conflict', `input request ${id} is already answered`));
    }
    return new Promise((resolve, reject) => {
      /** @type {PendingAnswer} */
      const a = { id, data, resolve, reject };
      if (this.s._sendNow(JSON.stringify({ type: 'input', request: id, data }))) this.sent.push(a);
      else void this.post(a, false);
    });
  }

  /**
   * An answer over HTTP. A resent one (its frame went out on a socket that was then lost) that
   * the edge calls answered may be this very answer: it waits for the `input` event.
   * @param {PendingAnswer} a @param {boolean} resent
   */
  async post(a, resent) {
    try {
      await postInput({ urls: this.s.urls, start: this.s._urlIndex, session: this.s.session, request: a.id, data: a.data, token: this.s.token, fetch: this.s._fetch });
      a.resolve();
    } catch (e) {
      const err = /** @type {WeirError} */ (e);
      if (resent && err.code === 'conflict' && !this.s.done) {
        if (this.answered.has(a.id)) return a.resolve();
        a.error = err;
        this.unsure.push(a);
        return;
      }
      a.reject(err);
    }
  }

  /** An `error` frame: the refusal of the oldest answer in flight, if one is. @param {string} code @param {string} message */
  refused(code, message) {
    const a = REFUSALS.has(code) ? this.sent.shift() : undefined;
    if (!a) return false;
    a.reject(new WeirError(code, `answer ${a.id}: ${message || code}`));
    return true;
  }

  /** The socket is gone: an answer sent on it may not have arrived, so it goes again over HTTP. */
  socketLost() {
    for (const a of this.sent.splice(0)) void this.post(a, true);
  }

  /** The session is over: answers that only an `input` event could settle never will be. @param {string} state */
  finish(state) {
    const why = new WeirError('conflict', `the session is ${state}`);
    for (const a of this.unsure.splice(0)) a.reject(a.error ?? why);
  }
}

// ---------------------------------------------------------------- threads (§9)

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

/**
 * @typedef {Object} WeirRunInput
 * @property {any[]} messages  the conversation so far: OpenAI chat messages `{role, content, …}`
 * @property {any[]} [tools]   tools the front end runs itself: `{name, description?, parameters?}`
 * @property {Record<string, any>} [input]  this run's input (wins over the thread's, key by key)
 */

/**
 * @typedef {Omit<WeirSessionOptions, 'session'|'token'|'urls'|'getToken'|'onInputRequest'> & {
 *   thread: string,
 *   token?: string,
 *   apiKey?: string,
 *   urls?: string|string[],
 *   getToken?: () => (string|null|undefined|Promise<string|null|undefined>),
 *   onInputRequest?: (req: WeirInputRequest, run: WeirSession) => void,
 * }} WeirThreadOptions
 */

/**
 * One conversation: its runs, each a WeirSession started by startRun(). Options other than the
 * thread's own (`thread`, `token`, `apiKey`, `urls`, `getToken`, `onInputRequest`) are every
 * run's WeirSession options (`WebSocket`, `backoff`, `onEvent`, …).
 */
export class WeirThread {
  /** @param {WeirThreadOptions} opts */
  constructor(opts) {
    if (!opts || typeof opts.thread !== 'string' || !opts.thread) {
      throw new TypeError('weir: options.thread (the thread id) is required');
    }
    const { thread, token, apiKey, urls, getToken, onInputRequest, ...runOptions } = opts;
    this.thread = thread;
    /** @type {string|undefined} the thread token */
    this.token = token;
    this._apiKey = apiKey;
    this.urls = edgeUrls(urls);
    this._getToken = getToken;
    /** @type {((req: WeirInputRequest, run: WeirSession) => void) | undefined} an input request of any run */
    this.onInputRequest = onInputRequest;
    this._runOptions = runOptions;
    this._urlIndex = 0;
    /** @type {WeirSession|undefined} the latest run */
    this.run = undefined;
  }

  /**
   * Starts the thread's next run with the conversation so far: `POST /v1/threads/{t}/runs`, then
   * streams it (a WeirSession, already connecting, that resumes on any edge). Rejects with a
   * WeirError with the edge's code: `run_active` (the previous run has not ended),
   * `bad_request` (naming the malformed field), `not_found`, `unauthorized`, or `unreachable`.
   * @param {WeirRunInput} run
   * @param {Partial<WeirSessionOptions>} [options] this run's WeirSession options
   * @returns {Promise<WeirSession>}
   */
  async startRun(run, options = {}) {
    if (!run || !Array.isArray(run.messages)) throw new TypeError('weir: startRun({messages}) needs the messages');
    /** @type {any} */
    const body = { messages: run.messages };
    if (run.tools !== undefined) body.tools = run.tools;
    if (run.input !== undefined) body.input = run.input;
    const { body: created, index } = await this._call({ path: `v1/threads/${encodeURIComponent(this.thread)}/runs`, method: 'POST', body, what: 'start run' });
    this._urlIndex = index;
    const s = new WeirSession({
      fetch: this._fetch,
      ...this._runOptions,
      ...options,
      session: created.id,
      token: created.token,
      urls: this.urls,
      // The thread token opens every run of the thread (§9).
      getToken: () => this._freshToken(),
    });
    s._urlIndex = index; // stream from the edge that started the run
    s.on('input_request', (/** @type {WeirInputRequest} */ req) => {
      const fn = this.onInputRequest;
      if (typeof fn === 'function') s._call(() => fn.call(this, req, s));
    });
    this.run = s;
    s.connect();
    return s;
  }

  /**
   * Answers an input request of one of the thread's runs (protocol.md §9): through the run's
   * WeirSession when it is the latest run, else over HTTP with the thread token.
   * @param {WeirInputRequest} request
   * @param {Record<string, any>} data
   * @returns {Promise<void>}
   */
  answer(request, data) {
    const run = this.run;
    if (run && request?.session === run.session) return run.answer(request, data);
    if (typeof request?.session !== 'string') {
      return Promise.reject(new WeirError('bad_request', 'answer: the request (from onInputRequest) names no session'));
    }
    return postInput({ urls: this.urls, start: this._urlIndex, session: request.session, request: request.id, data, token: this.token ?? this._apiKey, fetch: this._fetch });
  }

  /**
   * The thread and its runs: `GET /v1/threads/{t}` → `{id, agent, created, runs: [{id, status,
   * created}], active}`.
   * @returns {Promise<{id: string, agent: string, created: number, runs: Array<{id: string, status: string, created: number}>, active: string|null}>}
   */
  async get() {
    const { body } = await this._call({ path: `v1/threads/${encodeURIComponent(this.thread)}`, what: 'get thread' });
    return body;
  }

  get _fetch() {
    return this._runOptions.fetch;
  }

  /**
   * One call with the thread token (or the API key); after a 401, getToken() once and again.
   * @param {{path: string, method?: string, body?: any, what: string}} req
   */
  async _call(req) {
    const call = () => callEdges({ ...req, urls: this.urls, start: this._urlIndex, token: this.token ?? this._apiKey, codes: {}, fetch: this._fetch });
    try {
      return await call();
    } catch (e) {
      if (/** @type {any} */ (e)?.code !== 'unauthorized' || !this._getToken) throw e;
      const fresh = await this._getToken();
      if (typeof fresh !== 'string' || !fresh) throw e;
      this.token = fresh;
      return call();
    }
  }

  /** The thread token, fresh from getToken() when there is one. */
  async _freshToken() {
    if (this._getToken) {
      const fresh = await this._getToken();
      if (typeof fresh === 'string' && fresh) this.token = fresh;
    }
    return this.token;
  }
}

/** @param {any} persist @returns {StorageLike|null} */
function resolveStorage(persist) {
  if (!persist) return null;
  if (typeof persist === 'object' && typeof persist.getItem === 'function') return persist;
  if (persist === 'sessionStorage' || persist === 'localStorage' || persist === true) {
    const name = persist === true ? 'sessionStorage' : persist;
    try {
      const s = /** @type {any} */ (globalThis)[name];
      return s && typeof s.getItem === 'function' ? s : null;
    } catch {
      return null; // access can throw in sandboxed frames
    }
  }
  return null;
}

export default WeirSession;
