// @ts-check
/**
 * What a session's WebSocket speaks (protocol.md §5, §6): the event and state types, the close
 * codes, the URL of a session on an edge, the backoff between attempts, and where the resume
 * cursor is kept across page loads.
 * @module weir-client/wire
 */

import { joinPath, toUrl } from './http.js';

/** @typedef {import('./http.js').WeirError} WeirError */
/** @typedef {import('./inputs.js').WeirInputRequest} WeirInputRequest */

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
export const CLIENT_DROP = 4000;

/** Terminal session statuses (protocol.md §3). */
export const TERMINAL_STATUS = new Set(['completed', 'cancelled', 'failed']);

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

/** @param {any} persist @returns {StorageLike|null} */
export function resolveStorage(persist) {
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

/**
 * The cursor kept for a session across page loads (0 when none).
 * @param {StorageLike|null} storage @param {string} key @returns {number}
 */
export function readCursor(storage, key) {
  if (!storage) return 0;
  try {
    const v = Number(storage.getItem(key));
    return Number.isInteger(v) && v > 0 ? v : 0;
  } catch {
    return 0;
  }
}

/**
 * Keeps the cursor (best effort: quota or privacy mode may refuse it).
 * @param {StorageLike|null} storage @param {string} key @param {number} seq
 */
export function writeCursor(storage, key, seq) {
  if (!storage || seq <= 0) return;
  try {
    storage.setItem(key, String(seq));
  } catch {
    /* persistence is best effort */
  }
}
