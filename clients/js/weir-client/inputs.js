// @ts-check
/**
 * Asking a person (protocol.md §9): which input requests of a session are open, when to announce
 * one, and the answers in flight.
 * @module weir-client/inputs
 */

import { WeirError, callEdges, postInput } from './http.js';

/** @typedef {import('./session.js').WeirSession} WeirSession */
/** @typedef {import('./session.js').WeirEvent} WeirEvent */

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
 * The input requests of one session: which are open, which to announce, the answers in flight.
 * A request is announced (onInputRequest) once the session's log shows it open: replaying a
 * request that was answered, or whose session ended, announces nothing.
 */
export class InputRequests {
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
    /** @type {string|undefined} the id of the request kept in storage (`persist`) */
    this.kept = undefined;
  }

  /**
   * With `persist`, the announced request is kept under `weir:<session>:input`: a reload resumes
   * after it, so it is checked against the log again at the first hello and announced if open.
   */
  restore() {
    const stored = this.persisted('get');
    if (!stored) return;
    try {
      const req = JSON.parse(stored);
      if (req && typeof req.id === 'string' && req.session === this.s.session && Number.isInteger(req.seq) && req.seq <= this.s.lastSeq) {
        this.open.set(req.id, req);
        this.unchecked.push(req);
        this.kept = req.id;
      }
    } catch {
      /* not ours: ignored */
    }
  }

  /**
   * The persisted request: read, written or removed (best effort, like the cursor).
   * @param {'get'|'set'|'remove'} op @param {WeirInputRequest} [req]
   * @returns {string|null|undefined}
   */
  persisted(op, req) {
    const storage = this.s._storage;
    if (!storage) return undefined;
    const key = `${this.s._storageKey}:input`;
    this.kept = op === 'set' ? req?.id : op === 'remove' ? undefined : this.kept;
    try {
      if (op === 'get') return storage.getItem(key);
      if (op === 'set') storage.setItem(key, JSON.stringify(req));
      else storage.removeItem(key);
    } catch {
      /* quota or privacy mode */
    }
    return undefined;
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
      this.persisted('remove');
      const ended = new WeirError('conflict', 'the session ended before the agent took the answer');
      for (const a of [...this.sent.splice(0), ...this.unsure.splice(0)]) a.reject(a.error ?? ended);
    }
  }

  /** @param {string} id */
  close(id) {
    this.open.delete(id);
    if (this.announced?.id === id) this.announced = undefined;
    if (this.kept === id) this.persisted('remove');
  }

  /** After each events frame, and a hello: check the requests not checked yet against the log. */
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
    this.persisted('set', req);
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
