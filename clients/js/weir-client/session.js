// @ts-check
/**
 * One subscriber of one session over WebSocket: every event once, in seq order, across
 * reconnects, edge failures and page reloads (protocol.md §5, §6).
 * @module weir-client/session
 */

import { WeirError, edgeUrls, joinPath, toUrl } from './http.js';
import { InputRequests } from './inputs.js';

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
const CLIENT_DROP = 4000;

const noop = () => {};

/** Terminal session statuses (protocol.md §3). */
const TERMINAL_STATUS = new Set(['completed', 'cancelled', 'failed']);

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
    this._inputs.restore();
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
    this._inputs.frameDone(); // a request restored from `persist`
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
