// The client's connection over time, against a fake WebSocket (and one TCP
// server that never answers the upgrade): reconnecting to the next edge with
// its place, the heartbeat, and the close codes that end a session for good.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { WeirSession, WeirError } from '../weir-client.js';
import { tok, end, waitFor, sleep, setup, A, B } from './fake-ws.mjs';
import net from 'node:net';
import WebSocket from 'ws';

describe('reconnect', () => {
  test('a lost connection rotates to the next URL and resumes after lastSeq', async () => {
    const { s, sock, nth, seqs, log } = setup();
    s.connect();
    sock(0).accept().events(1, 2, 3).serverClose(1006);
    assert.equal(s.state, 'reconnecting');
    const info = log.infos.at(-1);
    assert.equal(info.closeCode, 1006);
    assert.equal(info.url, B);
    const ws1 = await nth(1);
    assert.equal(ws1.parsed.host, 'edge-b:8080');
    assert.equal(ws1.after, 3);
    assert.equal(ws1.token, 'tok');
    ws1.accept().events(3, 4).serverClose(1006);
    const ws2 = await nth(2);
    assert.equal(ws2.parsed.host, 'edge-a:8080');
    assert.equal(ws2.after, 4);
    ws2.accept().events(5, end(6));
    assert.deepEqual(seqs(), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(log.states, ['connecting', 'open', 'reconnecting', 'open', 'reconnecting', 'open', 'ended']);
    assert.equal(s.connections, 3);
  });

  test('failed attempts back off exponentially with full jitter; hello resets the count', async () => {
    const { s, sock, nth, log } = setup({ backoff: { initial: 10, max: 40 }, random: () => 0.5 });
    s.connect();
    sock(0).serverClose(1006);
    for (let i = 1; i <= 4; i++) (await nth(i)).serverClose(1006);
    const delays = log.infos.filter((x) => x.delay !== undefined).map((x) => x.delay);
    assert.deepEqual(delays, [5, 10, 20, 20, 20]); // 0.5 · min(40, 10·2^n)
    (await nth(5)).accept();
    sock(5).serverClose(1006);
    assert.equal(log.infos.at(-1).delay, 5);
    assert.equal(log.infos.at(-1).attempt, 1);
    s.close();
  });

  test('real jitter stays within bounds', async () => {
    const { s, sock, nth, log } = setup({ backoff: { initial: 8, max: 32 } });
    s.connect();
    sock(0).serverClose(1006);
    for (let i = 1; i <= 6; i++) (await nth(i)).serverClose(1006);
    const infos = log.infos.filter((x) => x.delay !== undefined);
    infos.forEach((x, n) => assert.ok(x.delay >= 0 && x.delay <= Math.min(32, 8 * 2 ** n), `delay ${x.delay} at ${n}`));
    s.close();
  });

  test('1012 and a reconnect frame switch URL immediately', async () => {
    const { s, sock, nth, log } = setup({ backoff: { initial: 5000, max: 5000 } });
    s.connect();
    sock(0).accept().events(1).serverClose(1012, 'draining');
    assert.equal(log.infos.at(-1).delay, 0);
    const ws1 = await nth(1);
    assert.equal(ws1.parsed.host, 'edge-b:8080');
    ws1.accept().events(2);
    await sleep(1100); // immediate reconnects are limited to one a second
    ws1.frame({ type: 'reconnect', reason: 'draining' });
    assert.ok(ws1.closedByClient, 'client closes the draining socket itself');
    assert.equal(log.infos.at(-1).delay, 0);
    const ws2 = await nth(2);
    assert.equal(ws2.parsed.host, 'edge-a:8080');
    assert.equal(ws2.after, 2);
    s.close();
  });

  test('4008 (slow consumer) resumes', async () => {
    const { s, sock, nth } = setup();
    s.connect();
    sock(0).accept().events(1, 2).serverClose(4008, 'slow');
    const ws1 = await nth(1);
    assert.equal(ws1.after, 2);
    s.close();
  });

  test('reconnect() drops the socket and resumes elsewhere', async () => {
    const { s, sock, nth } = setup();
    s.connect();
    sock(0).accept().events(1);
    s.reconnect();
    assert.equal(sock(0).closedByClient.code, 4000);
    const ws1 = await nth(1);
    assert.equal(ws1.parsed.host, 'edge-b:8080');
    assert.equal(ws1.after, 1);
    s.close();
  });

  test('maxAttempts exhausted ⇒ failed(unreachable)', async () => {
    const { s, sock, nth } = setup({ maxAttempts: 2 });
    const p = s.connect();
    sock(0).serverClose(1006);
    (await nth(1)).serverClose(1006);
    (await nth(2)).serverClose(1006);
    await assert.rejects(p, (e) => e instanceof WeirError && e.code === 'unreachable');
    assert.equal(s.state, 'failed');
  });

  test('a socket that never opens is abandoned after connectTimeout', async () => {
    const { s, sock, nth, log } = setup({ connectTimeout: 30 });
    try {
      s.connect();
      const t0 = Date.now();
      await nth(1);
      assert.ok(Date.now() - t0 >= 25);
      assert.equal(sock(0).closedByClient.code, 4000);
      assert.ok(log.infos.some((x) => x.reason === 'connect timeout'));
    } finally {
      s.close();
    }
  });

  test('with the ws package: a handshake that hangs is abandoned without an uncaught error', async () => {
    // A TCP server that accepts and never answers the HTTP upgrade.
    const conns = [];
    const srv = net.createServer((sock) => conns.push(sock));
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${srv.address().port}`;
    const states = [];
    const s = new WeirSession({ session: 's1', token: 't', urls: [url], WebSocket, connectTimeout: 50, backoff: { initial: 1, max: 5 }, onState: (st, i) => states.push([st, i.reason]) });
    try {
      s.connect();
      await waitFor(() => conns.length >= 3, { what: 'three attempts' });
      await sleep(20); // the aborted handshakes emit their errors now
      assert.ok(states.filter(([st, why]) => st === 'reconnecting' && why === 'connect timeout').length >= 2);
    } finally {
      s.close();
      conns.forEach((c) => c.destroy());
      srv.close();
    }
  });

  test('close() stops everything: state closed, socket closed, no reconnect', async () => {
    const { s, sock, WS, log } = setup();
    s.connect();
    sock(0).accept().events(1);
    s.close();
    assert.equal(s.state, 'closed');
    assert.equal(sock(0).closedByClient.code, 1000);
    await sleep(50);
    assert.equal(WS.sockets.length, 1);
    assert.equal(await s.finished, undefined);
    assert.deepEqual(log.states, ['connecting', 'open', 'closed']);
  });
});

describe('heartbeat', () => {
  test('silence for 2× the interval means dead: reconnect', async () => {
    const { s, sock, nth, log } = setup({ heartbeatInterval: 25 });
    s.connect();
    sock(0).accept().events(1);
    const t0 = Date.now();
    const ws1 = await nth(1, { timeout: 1000 });
    const waited = Date.now() - t0;
    assert.ok(waited >= 45, `reconnected after ${waited} ms, before 2× interval`);
    assert.equal(sock(0).closedByClient.code, 4000);
    assert.ok(log.infos.some((x) => x.reason === 'heartbeat timeout'));
    assert.equal(ws1.after, 1);
    s.close();
  });

  test('heartbeat frames keep a quiet connection alive', async () => {
    const { s, sock, WS } = setup({ heartbeatInterval: 100 });
    s.connect();
    sock(0).accept();
    for (let i = 0; i < 12; i++) {
      await sleep(25);
      sock(0).heartbeat();
    }
    assert.equal(WS.sockets.length, 1);
    assert.equal(s.state, 'open');
    s.close();
  });
});

describe('fatal close codes', () => {
  for (const [code, want] of [
    [4004, 'no_such_session'],
    [4010, 'history_expired'],
    [1009, 'frame_too_large'],
    [4001, 'unauthorized'],
    [1008, 'x'], // refused request: the code of the server's error frame
  ]) {
    test(`${code} ⇒ failed with ${want}`, async () => {
      const { s, sock, log, WS } = setup();
      const p = s.connect();
      sock(0).open().frame({ type: 'error', code: 'x', message: 'server says why' }).serverClose(code);
      await assert.rejects(p, (e) => e instanceof WeirError && e.code === want && e.closeCode === code && e.fatal);
      await assert.rejects(s.finished, (e) => e.code === want);
      assert.equal(s.state, 'failed');
      assert.equal(s.error.code, want);
      assert.match(s.error.message, /server says why/);
      assert.equal(log.errors.at(-1).code, want);
      await sleep(30);
      assert.equal(WS.sockets.length, 1, 'no reconnect');
    });
  }

  test('4001: getToken() is called once, the fresh token is used, a second 4001 fails', async () => {
    let calls = 0;
    const { s, sock, nth, seqs } = setup({ token: 'garbage', getToken: async () => (++calls, 'fresh') });
    s.connect();
    assert.equal(sock(0).token, 'garbage');
    sock(0).open().serverClose(4001);
    const ws1 = await nth(1);
    assert.equal(calls, 1);
    assert.equal(ws1.token, 'fresh');
    assert.equal(ws1.parsed.host, 'edge-a:8080');
    ws1.accept().events(1).serverClose(1006);
    // after a good connection the token may be refreshed again
    const ws2 = await nth(2);
    ws2.open().serverClose(4001);
    const ws3 = await nth(3);
    assert.equal(calls, 2);
    ws3.open().serverClose(4001);
    await assert.rejects(s.finished, (e) => e.code === 'unauthorized' && e.closeCode === 4001);
    assert.equal(calls, 2);
    assert.deepEqual(seqs(), [1]);
  });

  test('4001 with getToken() giving nothing ⇒ failed(unauthorized)', async () => {
    const { s, sock } = setup({ getToken: () => null });
    s.connect();
    sock(0).open().serverClose(4001);
    await assert.rejects(s.finished, (e) => e.code === 'unauthorized');
    assert.equal(s.state, 'failed');
  });

  test('getToken() throwing ⇒ failed(token_refresh_failed)', async () => {
    const { s, sock } = setup({ getToken: async () => { throw new Error('no network'); } });
    s.connect();
    sock(0).open().serverClose(4001);
    await assert.rejects(s.finished, (e) => e.code === 'token_refresh_failed' && /no network/.test(e.message));
  });

  test('no token at all: getToken() supplies the first one', async () => {
    const { s, nth } = setup({ token: undefined, getToken: async () => 'first' });
    s.connect();
    assert.equal((await nth(0)).token, 'first');
    s.close();
  });
});
