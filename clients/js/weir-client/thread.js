// @ts-check
/**
 * Threads (protocol.md §9): one conversation with one agent, whose runs are sessions started with
 * the conversation so far.
 * @module weir-client/thread
 */

import { WeirError, callEdges, edgeUrls, postInput } from './http.js';
import { WeirSession } from './session.js';

/** @typedef {import('./session.js').WeirSessionOptions} WeirSessionOptions */
/** @typedef {import('./inputs.js').WeirInputRequest} WeirInputRequest */

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
