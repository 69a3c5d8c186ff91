// The client against a real cluster: nats-server + redis-server + 2 edges + 1 producer
// started by harness.mjs from the built binary (target/debug/weir or $WEIR_BIN).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';

import { WeirSession, createSession, fetchHistory } from '../weir-client.js';
import { startCluster, startProvider, missingPrerequisite, skipUnless, signToken, randomId, tokenText, REPO } from './harness.mjs';
import { waitFor, sleep } from './fake-ws.mjs';

const why = skipUnless(missingPrerequisite());

describe('against a real cluster', { skip: why, timeout: 180000 }, () => {
  /** @type {any} */
  let c;
  /** An identity provider whose RS256 tokens the edges also take (--jwks-url). */
  let provider;
  const open = [];

  before(async () => {
    provider = await startProvider();
    // A short heartbeat, so a quiet (paused) stream shows that heartbeats keep it alive.
    c = await startCluster({
      edges: 2, producers: 1, edgeArgs: ['--heartbeat', '500ms', '--jwks-url', provider.url],
    });
  });

  after(async () => {
    for (const s of open) s.close();
    if (c) await c.stop();
    if (provider) await provider.close();
  });

  /** A client session with the `ws` package and both edges. */
  function session(created, opts = {}) {
    const s = new WeirSession({
      session: created.id,
      token: created.token,
      urls: c.edges.map((e) => e.url),
      WebSocket,
      backoff: { initial: 50, max: 500 },
      heartbeatInterval: 500,
      onError: () => {}, // failures are asserted through connect()/finished
      ...opts,
    });
    open.push(s);
    return s;
  }

  /** Asserts the client got the stored history exactly: same events, same order, once. */
  async function assertMatchesHistory(got, created) {
    const history = await c.history(created.id, created.token);
    assert.deepEqual(got.map((e) => e.seq), history.map((e) => e.seq), 'same seqs as history');
    assert.deepEqual(got, history, 'same events as history');
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: got.length }, (_, i) => i + 1), 'seqs 1..N');
    assert.equal(got.at(-1).kind, 'end');
    return history;
  }

  test('the edges serve this demo page and this client module', async () => {
    const modules = fs.readdirSync(path.join(REPO, 'clients/js/weir-client')).map((f) => [`/weir-client/${f}`, `clients/js/weir-client/${f}`]);
    assert.ok(modules.length >= 4);
    for (const [route, file] of [
      ['/', 'services/edge/static/index.html'],
      ['/weir-client.js', 'clients/js/weir-client.js'],
      ...modules,
    ]) {
      const r = await fetch(c.edges[0].url + route);
      assert.equal(r.status, 200);
      const served = await r.text();
      const source = fs.readFileSync(path.join(REPO, file), 'utf8');
      assert.ok(served === source, `GET ${route} differs from ${file}: the binary embeds an older copy (rebuild it)`);
    }
  });

  test('a whole session arrives exactly once, in order, equal to history', async () => {
    const created = await createSession(c.edges[0].url, { agent: 'mock', input: { tokens: 200, rate: 0, seed: 1 } });
    assert.ok(created.id && created.token && created.ws_url && created.events_url);
    const s = session(created);
    const got = [];
    const states = [];
    s.on('state', (st) => states.push(st));
    for await (const ev of s) got.push(ev);
    assert.equal(s.state, 'ended');
    assert.equal(got.filter((e) => e.kind === 'token').length, 200);
    assert.equal(got.at(-1).data.reason, 'completed');
    await assertMatchesHistory(got, created);
    assert.deepEqual(states, ['connecting', 'open', 'ended']);
    const h = await fetchHistory(c.edges[1].url, created.id, { token: created.token, all: true, limit: 64 });
    assert.deepEqual(h.events, got, 'fetchHistory (paged, other edge) agrees');
  });

  test('resume from after=N gets exactly N+1..end', async () => {
    const created = await c.createMock({ tokens: 120, rate: 0, seed: 2 });
    // `after` must not be beyond what the session has published (the edge refuses that: 1008).
    await waitFor(async () => (await c.history(created.id, created.token)).length >= 77, { timeout: 10000, what: '77 events stored' });
    const s = session(created, { after: 77 });
    const got = [];
    for await (const ev of s) got.push(ev);
    const history = await c.history(created.id, created.token);
    assert.deepEqual(got, history.slice(77));
  });

  test('reconnecting to a session that already ended: hello, 1000, state ended', async () => {
    const created = await c.createMock({ tokens: 10, rate: 0, seed: 3 });
    const history = await waitFor(async () => {
      const h = await c.history(created.id, created.token);
      return h.at(-1)?.kind === 'end' && h;
    }, { timeout: 10000, what: 'session end' });
    const s = session(created, { after: history.length });
    const got = [];
    s.onEvent = (ev) => got.push(ev);
    await s.connect();
    await s.finished;
    assert.equal(s.state, 'ended');
    assert.deepEqual(got, []);
  });

  test('SIGKILL of the serving edge: the client resumes on the other, nothing lost or doubled', async () => {
    const created = await c.createMock({ tokens: 400, rate: 100, seed: 4 });
    const s = session(created);
    const got = [];
    const nodes = [];
    s.onEvent = (ev) => got.push(ev);
    s.on('state', (st) => st === 'open' && nodes.push(s.node));
    await s.connect();
    await waitFor(() => s.lastSeq >= 60, { timeout: 15000, what: '60 events' });
    const victim = c.edges.find((e) => e.name === s.node);
    assert.ok(victim, `serving node ${s.node} is one of ours`);
    await c.kill(victim);
    await s.finished;
    assert.equal(s.state, 'ended');
    assert.ok(nodes.length >= 2, `reconnected (nodes: ${nodes})`);
    assert.notEqual(nodes.at(-1), victim.name, 'finished on the surviving edge');
    await assertMatchesHistory(got, created);
    assert.equal(tokenText(got).length > 0, true);
    await c.restart(victim);
  });

  test('SIGTERM (drain) of the serving edge: `reconnect` frame, immediate move to the other edge', async () => {
    const created = await c.createMock({ tokens: 300, rate: 100, seed: 8 });
    const s = session(created, { backoff: { initial: 5000, max: 5000 } }); // only an immediate reconnect is fast
    const got = [];
    const infos = [];
    s.onEvent = (ev) => got.push(ev);
    s.on('state', (st, info) => infos.push({ st, ...info, node: s.node }));
    await s.connect();
    await waitFor(() => s.lastSeq >= 30, { timeout: 15000, what: '30 events' });
    const victim = c.edges.find((e) => e.name === s.node);
    const drained = c.signal(victim, 'SIGTERM');
    await waitFor(() => infos.some((i) => i.st === 'reconnecting'), { timeout: 10000, what: 'reconnecting' });
    const r = infos.find((i) => i.st === 'reconnecting');
    assert.equal(r.delay, 0, `reconnected at once (${r.reason})`);
    assert.match(r.reason, /draining/);
    await s.finished;
    await drained;
    assert.notEqual(infos.filter((i) => i.st === 'open').at(-1).node, victim.name);
    await assertMatchesHistory(got, created);
    await c.restart(victim);
  });

  test('4001 then getToken(): the fresh token is used and the stream completes', async () => {
    const created = await c.createMock({ tokens: 50, rate: 0, seed: 5 });
    let calls = 0;
    const s = session(created, { token: 'garbage.not.ajwt', getToken: async () => (calls++, created.token) });
    const got = [];
    for await (const ev of s) got.push(ev);
    assert.equal(calls, 1);
    await assertMatchesHistory(got, created);
  });

  test("an identity provider's tokens: an expired one gets 4001, getToken()'s fresh one completes the stream", async () => {
    const created = await c.createMock({ tokens: 50, rate: 0, seed: 7 });
    let calls = 0;
    const s = session(created, {
      token: provider.sign(created.id, { ttl: -60 }),
      getToken: async () => (calls++, provider.sign(created.id)),
    });
    const got = [];
    for await (const ev of s) got.push(ev);
    assert.equal(calls, 1);
    await assertMatchesHistory(got, created);
  });

  test("another session's token: 4001, and no getToken ⇒ failed(unauthorized)", async () => {
    const a = await c.createMock({ tokens: 5 });
    const b = await c.createMock({ tokens: 5 });
    const s = session({ id: b.id, token: a.token });
    await assert.rejects(s.connect(), (e) => e.code === 'unauthorized' && e.closeCode === 4001);
    assert.equal(s.state, 'failed');
    assert.equal(s.lastSeq, 0);
  });

  test('getToken() returning the same bad token again ⇒ failed(unauthorized) after one retry', async () => {
    const b = await c.createMock({ tokens: 5 });
    let calls = 0;
    const s = session({ id: b.id, token: 'bad' }, { getToken: () => (calls++, 'still-bad') });
    await assert.rejects(s.connect(), (e) => e.code === 'unauthorized');
    await assert.rejects(s.finished, (e) => e.code === 'unauthorized' && e.closeCode === 4001);
    assert.equal(calls, 1);
  });

  test('a valid token for a session that does not exist ⇒ 4004, failed(no_such_session)', async () => {
    const id = randomId();
    const s = session({ id, token: signToken(id) });
    await assert.rejects(s.connect(), (e) => e.code === 'no_such_session' && e.closeCode === 4004);
    assert.equal(s.state, 'failed');
  });

  test('pause stops generation, resume continues, cancel ends it `cancelled`; acks are stored', async () => {
    const created = await c.createMock({ tokens: 3000, rate: 40, seed: 6 });
    const s = session(created, { autoAck: 100 });
    const got = [];
    s.onEvent = (ev) => got.push(ev);
    const connections = () => s.connections;
    await s.connect();
    await waitFor(() => got.filter((e) => e.kind === 'token').length >= 5, { timeout: 10000, what: '5 tokens' });

    s.pause();
    await waitFor(() => got.find((e) => e.kind === 'status' && e.data.state === 'paused'), { timeout: 5000, what: 'status paused' });
    await sleep(300); // anything already generated arrives
    const held = s.lastSeq;
    await sleep(1500); // > 2 heartbeats of 500 ms: quiet, but alive
    assert.equal(s.lastSeq, held, 'no new events while paused');
    assert.equal(s.state, 'open');
    assert.equal(connections(), 1, 'heartbeats kept the quiet connection open');
    const st = await c.state(created.id, created.token);
    assert.equal(st.status, 'paused');

    s.resume();
    await waitFor(() => got.find((e) => e.kind === 'status' && e.data.state === 'resumed'), { timeout: 5000, what: 'status resumed' });
    await waitFor(() => s.lastSeq >= held + 5, { timeout: 5000, what: 'tokens after resume' });

    s.cancel();
    const endEv = await s.finished;
    assert.equal(endEv.kind, 'end');
    assert.equal(endEv.data.reason, 'cancelled');
    assert.equal(s.state, 'ended');
    assert.ok(got.filter((e) => e.kind === 'token').length < 3000);
    await assertMatchesHistory(got, created);
    const fin = await c.state(created.id, created.token);
    assert.equal(fin.status, 'cancelled');
    assert.equal(fin.end_reason, 'cancelled');
    assert.ok(fin.acked >= held, `acked ${fin.acked} ≥ ${held}`);
  });

  test('persisted cursor: a "reloaded" client resumes where the last one stopped', async () => {
    const created = await c.createMock({ tokens: 300, rate: 200, seed: 7 });
    const store = new Map();
    const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
    const first = session(created, { persist: storage });
    const got = [];
    first.onEvent = (ev) => got.push(ev);
    await first.connect();
    await waitFor(() => first.lastSeq >= 40, { timeout: 10000, what: '40 events' });
    first.close();
    assert.equal(store.get(`weir:${created.id}`), String(first.lastSeq));
    const second = session(created, { persist: storage });
    assert.equal(second.lastSeq, first.lastSeq);
    for await (const ev of second) got.push(ev);
    await assertMatchesHistory(got, created);
  });
});
