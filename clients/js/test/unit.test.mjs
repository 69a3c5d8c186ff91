// Unit tests of the client against a fake WebSocket: no server needed.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { WeirSession, WeirError, backoffDelay, wsUrl, createSession, fetchHistory } from '../weir-client.js';
import { makeFakeWebSocket, tok, end, waitFor, sleep, setup, A, B } from './fake-ws.mjs';

describe('helpers', () => {
  test('wsUrl maps http→ws, https→wss, keeps a path prefix and encodes the id', () => {
    assert.equal(wsUrl('http://h:1', 's1', { after: 7, token: 'a.b.c' }), 'ws://h:1/v1/sessions/s1/ws?after=7&token=a.b.c');
    assert.equal(wsUrl('https://h/', 's1'), 'wss://h/v1/sessions/s1/ws?after=0');
    assert.equal(wsUrl('https://h/weir/', 'x_y-z', { after: 1 }), 'wss://h/weir/v1/sessions/x_y-z/ws?after=1');
    assert.equal(wsUrl('ws://h:9', 's'), 'ws://h:9/v1/sessions/s/ws?after=0');
    assert.throws(() => wsUrl('ftp://h', 's'), TypeError);
  });

  test('backoffDelay is full jitter within [0, min(max, initial·2^n)]', () => {
    const o = { initial: 250, max: 10000 };
    assert.equal(backoffDelay(0, o, () => 0), 0);
    assert.equal(backoffDelay(0, o, () => 0.5), 125);
    assert.equal(backoffDelay(3, o, () => 0.5), 1000);
    assert.equal(backoffDelay(10, o, () => 0.5), 5000); // capped at max
    assert.equal(backoffDelay(1000, o, () => 0.5), 5000); // no overflow
    for (let n = 0; n < 12; n++) {
      const cap = Math.min(10000, 250 * 2 ** n);
      for (let i = 0; i < 300; i++) {
        const d = backoffDelay(n, o);
        assert.ok(d >= 0 && d <= cap, `attempt ${n}: ${d} not in [0, ${cap}]`);
      }
      assert.ok(backoffDelay(n, o, () => 0.999999) < cap + 1);
    }
    // full jitter really spreads: 200 draws at attempt 5 are not all alike
    const draws = new Set(Array.from({ length: 200 }, () => backoffDelay(5, o)));
    assert.ok(draws.size > 50);
  });

  test('constructor checks its options', () => {
    const WS = makeFakeWebSocket();
    assert.throws(() => new WeirSession({ urls: [A], WebSocket: WS }), TypeError);
    assert.throws(() => new WeirSession({ session: 's', urls: [], WebSocket: WS }), TypeError);
    assert.throws(() => new WeirSession({ session: 's', urls: [A], WebSocket: 'nope' }), TypeError);
    const s = new WeirSession({ session: 's', urls: `${A}, ${B}`, WebSocket: WS });
    assert.deepEqual(s.urls, [A, B]);
    assert.equal(s.state, 'idle');
    assert.equal(s.lastSeq, 0);
  });

  test('createSession posts the body with the API key; errors are WeirErrors', async () => {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, init });
      if (init.headers.authorization !== 'Bearer k1') return new Response('{"error":{"code":"unauthorized","message":"bad key"}}', { status: 401 });
      if (JSON.parse(init.body).agent === 'nope') return new Response('{"error":{"code":"bad_request","message":"unknown agent"}}', { status: 400 });
      return new Response(JSON.stringify({ id: 'abc', token: 't', ws_url: '/v1/sessions/abc/ws', events_url: '/v1/sessions/abc/events' }), { status: 201 });
    };
    const r = await createSession('http://h:1/', { agent: 'mock', input: { tokens: 3 }, apiKey: 'k1', fetch });
    assert.equal(r.id, 'abc');
    assert.equal(calls[0].url, 'http://h:1/v1/sessions');
    assert.equal(calls[0].init.method, 'POST');
    assert.deepEqual(JSON.parse(calls[0].init.body), { agent: 'mock', input: { tokens: 3 } });
    await assert.rejects(createSession('http://h:1', { agent: 'nope', apiKey: 'k1', fetch }), (e) => e.code === 'bad_request' && e.status === 400 && /unknown agent/.test(e.message));
    await assert.rejects(createSession('http://h:1', { apiKey: 'wrong', fetch }), (e) => e instanceof WeirError && e.code === 'unauthorized' && e.status === 401 && /bad key/.test(e.message));
  });

  test('fetchHistory follows next_after with all:true', async () => {
    const fetch = async (url) => {
      const after = Number(new URL(url).searchParams.get('after'));
      const evs = after >= 5 ? [] : [tok(after + 1), tok(after + 2)].filter((e) => e.seq <= 5);
      return new Response(JSON.stringify({ events: evs, next_after: evs.length ? evs.at(-1).seq : after }), { status: 200 });
    };
    const h = await fetchHistory('http://h', 's', { token: 't', all: true, limit: 2, fetch });
    assert.deepEqual(h.events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    assert.equal(h.next_after, 5);
  });
});

describe('delivery', () => {
  test('connect opens <url>/v1/sessions/<id>/ws with after and token; open on hello', async () => {
    const { s, sock, log } = setup({ after: 3 });
    const p = s.connect();
    assert.equal(s.state, 'connecting');
    const ws = sock(0);
    assert.equal(ws.url, 'ws://edge-a:8080/v1/sessions/s1/ws?after=3&token=tok');
    ws.open();
    assert.equal(s.state, 'connecting'); // open means the server said hello
    ws.hello({ node: 'edge-a' });
    await p;
    assert.equal(s.state, 'open');
    assert.equal(s.node, 'edge-a');
    assert.deepEqual(log.states, ['connecting', 'open']);
    s.close();
  });

  test('duplicates are dropped, order kept, lastSeq advances', async () => {
    const { s, sock, seqs } = setup();
    s.connect();
    sock(0).accept().events(1, 2, 3).events(2, 3, 4).events(1).events(5, 6);
    assert.deepEqual(seqs(), [1, 2, 3, 4, 5, 6]);
    assert.equal(s.lastSeq, 6);
    s.close();
  });

  test('events starting at or below `after` are not delivered again', async () => {
    const { s, sock, seqs } = setup({ after: 10 });
    s.connect();
    sock(0).accept().events(9, 10, 11, 12);
    assert.deepEqual(seqs(), [11, 12]);
    s.close();
  });

  test('a gap between frames: nothing out of order, reconnect to the same URL with after=lastSeq', async () => {
    const { s, sock, nth, seqs, log } = setup();
    s.connect();
    sock(0).accept().events(1, 2).events(5, 6);
    assert.deepEqual(seqs(), [1, 2]);
    assert.equal(sock(0).closedByClient.code, 4000);
    assert.equal(s.state, 'reconnecting');
    assert.match(log.infos.at(-1).reason, /gap/);
    const ws1 = await nth(1);
    assert.equal(ws1.after, 2);
    assert.equal(ws1.parsed.host, 'edge-a:8080');
    ws1.accept().events(3, 4, 5, 6, end(7));
    assert.deepEqual(seqs(), [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(s.state, 'ended');
  });

  test('a gap inside one frame delivers the contiguous prefix only', async () => {
    const { s, sock, nth, seqs } = setup();
    s.connect();
    sock(0).accept().events(1, 2, 4, 5);
    assert.deepEqual(seqs(), [1, 2]);
    const ws1 = await nth(1);
    assert.equal(ws1.after, 2);
    s.close();
  });

  test('invalid events are reported and skipped; unknown kinds pass through', async () => {
    const { s, sock, seqs, log } = setup();
    s.connect();
    sock(0).accept().events({ kind: 'token' }, 1, { seq: 2, kind: 'weird_new_kind', ts: 1, data: { x: 1 } });
    assert.deepEqual(seqs(), [1, 2]);
    assert.equal(log.events[1].kind, 'weird_new_kind');
    assert.equal(log.errors[0].code, 'protocol');
    sock(0).frame('not json').frame({ type: 'future_frame' });
    assert.equal(log.errors.length, 2);
    assert.equal(s.state, 'open');
    s.close();
  });

  test('end: state ended, finished resolves with the end event, no reconnect', async () => {
    const { s, sock, log, WS } = setup();
    s.connect();
    sock(0).accept().events(1, end(2, 'cancelled'));
    assert.equal(s.state, 'ended');
    const ev = await s.finished;
    assert.equal(ev.data.reason, 'cancelled');
    assert.equal(log.infos.at(-1).reason, 'cancelled');
    sock(0).serverClose(1000);
    await sleep(30);
    assert.equal(WS.sockets.length, 1);
    assert.deepEqual(log.states, ['connecting', 'open', 'ended']);
  });

  test('1000 without end while streaming resumes; after a terminal hello it means ended', async () => {
    const { s, sock, nth } = setup();
    s.connect();
    sock(0).accept().events(1).serverClose(1000);
    assert.equal(s.state, 'reconnecting');
    const ws1 = await nth(1);
    assert.equal(ws1.after, 1);
    ws1.accept({ status: 'completed' }).serverClose(1000);
    assert.equal(s.state, 'ended');
  });

  test('onEvent throwing is reported as a handler error and the stream goes on', async () => {
    const { s, sock, log } = setup({
      onEvent: (ev) => {
        if (ev.seq === 2) throw new Error('boom');
        log.events.push(ev);
      },
    });
    s.connect();
    sock(0).accept().events(1, 2, 3);
    assert.deepEqual(log.events.map((e) => e.seq), [1, 3]);
    assert.equal(log.errors[0].code, 'handler');
    assert.equal(s.lastSeq, 3);
    s.close();
  });

  test('server error frames reach onError without ending the stream', async () => {
    const { s, sock, log } = setup();
    s.connect();
    sock(0).accept().frame({ type: 'error', code: 'bad_request', message: 'unknown frame' }).events(1);
    assert.equal(log.errors[0].code, 'bad_request');
    assert.equal(log.errors[0].fatal, false);
    assert.equal(s.state, 'open');
    assert.equal(s.lastSeq, 1);
    s.close();
  });
});

describe('notices', () => {
  test('a notice between events is surfaced and leaves the cursor, persistence and acks alone; a resume uses the last event seq', async () => {
    const stored = new Map();
    const persist = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, String(v)), removeItem: (k) => stored.delete(k) };
    const notices = [];
    const { s, sock, nth, seqs, log } = setup({ persist, autoAck: 5, onNotice: (d) => notices.push(d) });
    const heard = [];
    s.on('notice', (d) => heard.push(d.text));
    const iterated = [];
    const loop = (async () => {
      for await (const ev of s) iterated.push(ev.seq);
    })();
    sock(0).accept().events(1, 2);
    await sleep(15); // let the first autoAck interval pass
    const acksBefore = sock(0).sentFrames.filter((f) => f.type === 'ack').length;
    sock(0).notice({ text: 'Maintenance at 18:00', level: 'warn' });
    assert.deepEqual(notices, [{ text: 'Maintenance at 18:00', level: 'warn' }]);
    assert.deepEqual(heard, ['Maintenance at 18:00']);
    assert.equal(s.lastSeq, 2, 'a notice has no seq and does not move the cursor');
    assert.equal(stored.get('weir:s1'), '2');
    await sleep(15);
    assert.equal(sock(0).sentFrames.filter((f) => f.type === 'ack').length, acksBefore, 'no ack for a notice');

    sock(0).events(3).notice({ text: 'second' }).notice('plain string');
    assert.deepEqual(seqs(), [1, 2, 3], 'events on both sides of a notice, nothing else');
    assert.deepEqual(notices.map((n) => n.text), ['Maintenance at 18:00', 'second', 'plain string']);
    assert.equal(s.lastSeq, 3);
    assert.equal(stored.get('weir:s1'), '3');

    sock(0).serverClose(1006);
    const ws1 = await nth(1);
    assert.equal(ws1.after, 3, 'the resume asks for events after the last event, not after a notice');
    ws1.accept().notice({ text: 'after resume' }).events(3, 4, end(5));
    await loop;
    assert.deepEqual(seqs(), [1, 2, 3, 4, 5]);
    assert.deepEqual(iterated, [1, 2, 3, 4, 5], 'the async iterator yields events only');
    assert.equal(notices.at(-1).text, 'after resume');
    assert.equal(s.state, 'ended');
    assert.deepEqual(log.errors, []);
  });

  test('onNotice throwing is reported as a handler error and the stream goes on', async () => {
    const { s, sock, seqs, log } = setup({
      onNotice: () => {
        throw new Error('boom');
      },
    });
    s.connect();
    sock(0).accept().events(1).notice({ text: 'x' }).events(2);
    assert.deepEqual(seqs(), [1, 2]);
    assert.equal(log.errors[0].code, 'handler');
    assert.equal(s.state, 'open');
    s.close();
  });
});

describe('control and acks', () => {
  test('pause/resume/cancel are sent when open, queued (collapsed) before', async () => {
    const { s, sock, nth } = setup();
    s.pause();
    s.resume();
    s.pause();
    s.connect();
    sock(0).open();
    assert.deepEqual(sock(0).sent, []); // nothing before hello
    sock(0).hello();
    assert.deepEqual(sock(0).sentFrames, [{ type: 'pause' }]);
    s.resume();
    assert.deepEqual(sock(0).sentFrames.at(-1), { type: 'resume' });
    sock(0).serverClose(1006);
    s.cancel();
    const ws1 = await nth(1);
    ws1.accept();
    assert.deepEqual(ws1.sentFrames, [{ type: 'cancel' }]);
    ws1.events(end(1, 'cancelled'));
    assert.equal(s.state, 'ended');
  });

  test('ack is monotonic and clamped to lastSeq', async () => {
    const { s, sock } = setup();
    s.connect();
    sock(0).accept().events(1, 2, 3);
    s.ack(2);
    s.ack(1);
    s.ack(99);
    s.ack();
    assert.deepEqual(sock(0).sentFrames, [{ type: 'ack', seq: 2 }, { type: 'ack', seq: 3 }]);
    s.close();
  });

  test('autoAck acks delivered events, throttled', async () => {
    const { s, sock } = setup({ autoAck: 20 });
    s.connect();
    sock(0).accept().events(1).events(2).events(3);
    assert.deepEqual(sock(0).sentFrames, [{ type: 'ack', seq: 1 }]);
    await waitFor(() => sock(0).sent.length === 2);
    assert.deepEqual(sock(0).sentFrames[1], { type: 'ack', seq: 3 });
    s.close();
  });
});

describe('async iteration', () => {
  test('for await yields every event once and ends after end', async () => {
    const { s, sock, nth } = setup();
    const got = [];
    const loop = (async () => {
      for await (const ev of s) got.push(ev.seq);
    })();
    const ws0 = await nth(0); // iteration connects by itself
    ws0.accept().events(1, 2).serverClose(1006);
    (await nth(1)).accept().events(2, 3, end(4));
    await loop;
    assert.deepEqual(got, [1, 2, 3, 4]);
    assert.equal(sock(1).parsed.host, 'edge-b:8080');
  });

  test('the loop throws the WeirError when the session fails', async () => {
    const { s, sock } = setup();
    const got = [];
    const loop = (async () => {
      for await (const ev of s) got.push(ev.seq);
    })();
    await waitFor(() => sock(0));
    sock(0).accept().events(1).serverClose(4010);
    await assert.rejects(loop, (e) => e.code === 'history_expired');
    assert.deepEqual(got, [1]);
  });

  test('break closes the session', async () => {
    const { s, nth } = setup();
    s.connect();
    (await nth(0)).accept();
    const loop = (async () => {
      for await (const ev of s) if (ev.seq === 2) break;
    })();
    await sleep(0);
    (await nth(0)).events(1, 2, 3);
    await loop;
    assert.equal(s.state, 'closed');
  });

  test('on() listeners and unsubscribe', async () => {
    const { s, sock } = setup();
    const a = [];
    const off = s.on('event', (ev) => a.push(ev.seq));
    s.connect();
    sock(0).accept().events(1);
    off();
    sock(0).events(2);
    assert.deepEqual(a, [1]);
    s.close();
  });
});

describe('persistence', () => {
  function memoryStorage() {
    const m = new Map();
    return { m, getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
  }

  test('lastSeq is kept under weir:<session> and a new session resumes from it', async () => {
    const store = memoryStorage();
    const one = setup({ persist: store });
    one.s.connect();
    one.sock(0).accept().events(1, 2, 3);
    assert.equal(store.m.get('weir:s1'), '3');
    one.s.close();
    // "page reload"
    const two = setup({ persist: store });
    assert.equal(two.s.lastSeq, 3);
    two.s.connect();
    assert.equal(two.sock(0).after, 3);
    two.sock(0).accept().events(3, 4);
    assert.deepEqual(two.seqs(), [4]);
    assert.equal(store.m.get('weir:s1'), '4');
    two.s.close();
  });

  test("persist: 'sessionStorage' uses globalThis.sessionStorage when there is one", async () => {
    const store = memoryStorage();
    globalThis.sessionStorage = store;
    try {
      store.setItem('weir:s1', '41');
      const { s } = setup({ persist: 'sessionStorage', after: 5 });
      assert.equal(s.lastSeq, 41);
    } finally {
      delete globalThis.sessionStorage;
    }
    const { s } = setup({ persist: 'sessionStorage' }); // none in Node: silently off
    assert.equal(s.lastSeq, 0);
  });
});
