// @ts-check
/**
 * One subscriber of one session over WebSocket: every event once, in seq order, across
 * reconnects, edge failures and page reloads (protocol.md §5, §6).
 * @module weir-client/session
 */

import { WeirError, edgeUrls } from './http.js';
import { InputRequests } from './inputs.js';
import { onClose, onFrame } from './frames.js';
import { eventIterator } from './iterate.js';
import { CLIENT_DROP, backoffDelay, readCursor, resolveStorage, writeCursor, wsUrl } from './wire.js';

export { CloseCode, backoffDelay, wsUrl } from './wire.js';

/** @typedef {import('./inputs.js').WeirInputRequest} WeirInputRequest */
/** @typedef {import('./wire.js').WeirEvent} WeirEvent */
/** @typedef {import('./wire.js').WeirState} WeirState */
/** @typedef {import('./wire.js').WeirNotice} WeirNotice */
/** @typedef {import('./wire.js').StateInfo} StateInfo */
/** @typedef {import('./wire.js').StorageLike} StorageLike */
/** @typedef {import('./wire.js').WeirSessionOptions} WeirSessionOptions */

const noop = () => {};


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
    const stored = readCursor(this._storage, this._storageKey);
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
    return eventIterator(this);
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
      onFrame(this, msg.data);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (/** @type {any} */ ev) => {
      if (!mine()) return;
      this._ws = null;
      this._clearTimer();
      this._inputs.socketLost();
      onClose(this, Number(ev?.code ?? 1006), String(ev?.reason ?? ''));
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

  _afterDelivery() {
    writeCursor(this._storage, this._storageKey, this.lastSeq);
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
    writeCursor(this._storage, this._storageKey, this.lastSeq);
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

}
