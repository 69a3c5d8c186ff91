// A scriptable stand-in for the browser WebSocket API, for unit tests that need no server.
// Each call to makeFakeWebSocket() gives a class with its own list of sockets, so tests
// running side by side never see each other's sockets.

import { WeirSession } from '../weir-client.js';

/** @returns {any} */
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    /** @type {FakeWebSocket[]} every socket the client created, in order */
    static sockets = [];

    constructor(url) {
      this.url = url;
      this.parsed = new URL(url);
      this.readyState = 0;
      /** @type {string[]} frames the client sent */
      this.sent = [];
      /** @type {{code?: number, reason?: string}|null} set when the client closed it */
      this.closedByClient = null;
      this.onopen = null;
      this.onmessage = null;
      this.onerror = null;
      this.onclose = null;
      FakeWebSocket.sockets.push(this);
    }

    /** The seq the client resumes after (its `after` query parameter). */
    get after() {
      return Number(this.parsed.searchParams.get('after'));
    }
    get token() {
      return this.parsed.searchParams.get('token');
    }
    /** Parsed frames the client sent. */
    get sentFrames() {
      return this.sent.map((s) => JSON.parse(s));
    }

    // --- the client side of the API
    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.sent.push(String(data));
    }
    close(code, reason) {
      if (this.readyState >= 2) return;
      this.closedByClient = { code, reason };
      this.readyState = 2;
      setTimeout(() => {
        this.readyState = 3;
        this.onclose?.({ code: code ?? 1005, reason: reason ?? '', wasClean: true });
      }, 0);
    }

    // --- the server side, driven by tests
    open() {
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
      return this;
    }
    /** Sends one frame (object → JSON, string as is). */
    frame(obj) {
      if (this.readyState !== 1) throw new Error('fake socket is not open');
      this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
      return this;
    }
    hello(extra = {}) {
      return this.frame({ type: 'hello', session: 's1', node: 'node-1', after: this.after, status: 'streaming', ...extra });
    }
    /** Opens and says hello. */
    accept(extra) {
      return this.open().hello(extra);
    }
    /** Sends an events frame; numbers become token events. */
    events(...evs) {
      return this.frame({ type: 'events', events: evs.map((e) => (typeof e === 'number' ? tok(e) : e)) });
    }
    heartbeat() {
      return this.frame({ type: 'heartbeat', ts: Date.now() });
    }
    /** An operator broadcast (protocol.md §5): no seq. */
    notice(data) {
      return this.frame({ type: 'notice', data });
    }
    /** The server closes the connection. */
    serverClose(code = 1006, reason = '') {
      this.readyState = 3;
      this.onerror?.({ type: 'error' });
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
      return this;
    }
  }
  return FakeWebSocket;
}

/** A token event with deterministic text. */
export function tok(seq, text = `t${seq} `) {
  return { seq, kind: 'token', ts: Date.now(), source: 'assistant', data: { text } };
}

/** The end event. */
export function end(seq, reason = 'completed') {
  return { seq, kind: 'end', ts: Date.now(), data: { reason } };
}

/** Polls `pred` until true (or throws after `timeout` ms). */
export async function waitFor(pred, { timeout = 2000, interval = 2, what = 'condition' } = {}) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const A = 'http://edge-a:8080';
export const B = 'http://edge-b:8080';

/** A session on a fresh fake socket class, with fast backoff; records states, events, errors. */
export function setup(opts = {}) {
  const WS = makeFakeWebSocket();
  const log = { states: [], infos: [], events: [], errors: [] };
  const s = new WeirSession({
    session: 's1',
    token: 'tok',
    urls: [A, B],
    WebSocket: WS,
    backoff: { initial: 4, max: 20 },
    onEvent: (ev) => log.events.push(ev),
    onState: (st, info) => {
      log.states.push(st);
      log.infos.push(info);
    },
    onError: (e) => log.errors.push(e),
    ...opts,
  });
  const sock = (i) => WS.sockets[i];
  const nth = (i) => waitFor(() => WS.sockets[i], { what: `socket #${i}` });
  return { s, WS, log, sock, nth, seqs: () => log.events.map((e) => e.seq) };
}
