// Threads, input requests and answers (protocol.md §9) against a real cluster: nats-server +
// redis-server + 2 edges + 1 producer started by harness.mjs from the built binary. The mock
// agent answers a thread's last message (protocol.md §4): `echo: X`, and `/ask PROMPT` asks first.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { WeirSession, WeirThread, createThread } from '../weir-client.js';
import { startCluster, missingPrerequisite, skipUnless, tokenText } from './harness.mjs';
import { waitFor } from './fake-ws.mjs';

const why = skipUnless(missingPrerequisite());

describe('threads against a real cluster', { skip: why, timeout: 180000 }, () => {
  /** @type {any} */
  let c;
  const open = [];

  before(async () => {
    c = await startCluster({ edges: 2, producers: 1, edgeArgs: ['--heartbeat', '500ms'] });
  });

  after(async () => {
    for (const s of open) s.close();
    if (c) await c.stop();
  });

  const user = (content) => ({ role: 'user', content });
  const assistant = (content) => ({ role: 'assistant', content });

  /** A new thread of the mock agent and its client on both edges (the `ws` package). */
  async function chat(input = { rate: 0 }, opts = {}) {
    const created = await createThread(c.edges[0].url, { agent: 'mock', input });
    assert.ok(created.id && created.token);
    const thread = new WeirThread({
      thread: created.id,
      token: created.token,
      urls: c.edges.map((e) => e.url),
      WebSocket,
      backoff: { initial: 50, max: 500 },
      heartbeatInterval: 500,
      onError: () => {}, // failures are asserted through finished
      ...opts,
    });
    return { thread, created };
  }

  /** Starts a run and collects its events. */
  async function start(thread, messages, opts = {}) {
    const events = [];
    const run = await thread.startRun({ messages }, { onEvent: (ev) => events.push(ev), ...opts });
    open.push(run);
    return { run, events };
  }

  /** The run's events equal its history: every event once, in order, ending with `end`. */
  async function assertIsHistory(run, events) {
    const history = await c.history(run.session, run.token);
    assert.deepEqual(events, history);
    assert.equal(history.at(-1).kind, 'end');
    return history;
  }

  test('a thread of two turns: each run streams its reply, and the thread lists both runs', async () => {
    const { thread } = await chat();
    const one = await start(thread, [user('hello')]);
    await one.run.finished;
    assert.equal(tokenText(one.events), 'echo: hello');
    await assertIsHistory(one.run, one.events);

    const two = await start(thread, [user('hello'), assistant('echo: hello'), user('and a second turn, longer than eight characters')]);
    assert.equal(thread.run, two.run);
    await two.run.finished;
    assert.equal(tokenText(two.events), 'echo: and a second turn, longer than eight characters');
    assert.ok(two.events.filter((e) => e.kind === 'token').every((e) => e.data.text.length <= 8), 'tokens of at most 8 characters');
    await assertIsHistory(two.run, two.events);

    const info = await thread.get();
    assert.deepEqual(info.runs.map((r) => [r.id, r.status]), [[one.run.session, 'completed'], [two.run.session, 'completed']]);
    assert.equal(info.active, null);
  });

  test('a run while the previous one waits for an answer is refused with run_active', async () => {
    const { thread } = await chat();
    const asked = [];
    const one = await start(thread, [user('/ask Ready?')], { onInputRequest: (req) => asked.push(req) });
    await waitFor(() => asked.length === 1, { timeout: 15000, what: 'the input request' });
    await assert.rejects(thread.startRun({ messages: [user('too early')] }), (e) => e.code === 'run_active' && e.status === 409);
    assert.equal(thread.run, one.run, 'a refused run replaces nothing');
    await one.run.answer(asked[0], { text: 'yes' });
    await one.run.finished;
    const two = await start(thread, [user('/ask Ready?'), assistant('you answered: yes'), user('now')]);
    await two.run.finished;
    assert.equal(tokenText(two.events), 'echo: now');
  });

  test('/ask answered through answer() over the WebSocket finishes the reply; a replay announces nothing', async () => {
    const { thread } = await chat({ rate: 0 });
    const asked = [];
    const { run, events } = await start(thread, [user('/ask What is your name?')], { onInputRequest: (req) => asked.push(req) });
    await waitFor(() => asked.length === 1, { timeout: 15000, what: 'the input request' });
    const req = asked[0];
    assert.equal(req.prompt, 'What is your name?');
    assert.equal(req.session, run.session);
    assert.match(req.id, /^ask_\d+$/);
    assert.deepEqual(req.schema.required, ['text']);
    assert.equal(run.state, 'open', 'answered over the open socket');
    await run.answer(req, { text: 'Ada' });
    assert.ok(events.some((e) => e.kind === 'input' && e.data.request === req.id), 'answer() resolved with the input event in the stream');
    await run.finished;
    assert.equal(tokenText(events), 'you answered: Ada');
    const history = await assertIsHistory(run, events);
    assert.deepEqual(history.filter((e) => e.kind === 'input').map((e) => e.data), [{ request: req.id, data: { text: 'Ada' } }]);

    // Another viewer, from the start: the answered request is not announced again.
    const again = [];
    const replay = new WeirSession({ session: run.session, token: thread.token, urls: [c.edges[1].url], WebSocket, onInputRequest: (r) => again.push(r), onError: () => {} });
    open.push(replay);
    const seen = [];
    for await (const ev of replay) seen.push(ev);
    assert.deepEqual(seen, history, 'the thread token opens its run');
    assert.deepEqual(again, []);
  });

  test('/ask answered over HTTP on the other edge while no socket is open: the reply goes on', async () => {
    const { thread, created } = await chat();
    const asked = [];
    const first = await start(thread, [user('/ask Which river?')], { onInputRequest: (req) => asked.push(req) });
    await waitFor(() => asked.length === 1, { timeout: 15000, what: 'the input request' });
    first.run.close();
    const onB = new WeirThread({ thread: created.id, token: created.token, urls: [c.edges[1].url], WebSocket });
    await onB.answer(asked[0], { text: 'the Thames' });
    const rest = [];
    const later = new WeirSession({ session: first.run.session, token: first.run.token, urls: [c.edges[1].url], WebSocket, after: first.run.lastSeq, onEvent: (ev) => rest.push(ev), onError: () => {} });
    open.push(later);
    later.connect();
    await later.finished;
    assert.equal(tokenText([...first.events, ...rest]), 'you answered: the Thames');
    await assertIsHistory(first.run, [...first.events, ...rest]);
  });

  test("answers the edge refuses reject with its code: off the schema, unknown request, answered twice", async () => {
    const { thread } = await chat();
    const asked = [];
    const { run } = await start(thread, [user('/ask Name?')], { onInputRequest: (req) => asked.push(req) });
    await waitFor(() => asked.length === 1, { timeout: 15000, what: 'the input request' });
    const req = asked[0];
    // Over the WebSocket (the run is connected) …
    await assert.rejects(run.answer(req, { text: 42 }), (e) => e.code === 'bad_request');
    await assert.rejects(run.answer('ask_999999', { text: 'x' }), (e) => e.code === 'not_found');
    assert.equal(run.state, 'open', 'refusals leave the stream open');
    // … and over HTTP.
    const http = new WeirThread({ thread: thread.thread, token: thread.token, urls: [c.edges[1].url], WebSocket });
    await assert.rejects(http.answer(req, { wrong: true }), (e) => e.code === 'bad_request' && e.status === 400);
    await assert.rejects(http.answer({ ...req, id: 'ask_999999' }, { text: 'x' }), (e) => e.code === 'not_found' && e.status === 404);
    await http.answer(req, { text: 'Ada' });
    await assert.rejects(http.answer(req, { text: 'again' }), (e) => e.code === 'conflict' && e.status === 409);
    await run.finished;
    await assert.rejects(run.answer(req, { text: 'late' }), (e) => e.code === 'conflict');
  });

  test('a thread run resumes across a restart of its edge: nothing lost or doubled', async () => {
    const { thread } = await chat({ rate: 40 });
    const long = 'A weir is a low dam across a river that raises the level upstream and lets water flow over its top. '.repeat(3);
    const { run, events } = await start(thread, [user(long)]);
    await waitFor(() => events.length >= 5, { timeout: 15000, what: 'five events' });
    const served = run.node;
    const edge = c.edges.find((e) => e.name === served);
    await c.restart(edge);
    await run.finished;
    assert.ok(run.connections >= 2, 'the run reconnected');
    assert.equal(tokenText(events), `echo: ${long}`);
    await assertIsHistory(run, events);
  });

  test('a session token does not start runs of its thread', async () => {
    const { thread } = await chat();
    const one = await start(thread, [user('hi')]);
    await one.run.finished;
    const wrong = new WeirThread({ thread: thread.thread, token: one.run.token, urls: [c.edges[0].url], WebSocket });
    await assert.rejects(wrong.startRun({ messages: [user('hi')] }), (e) => e.code === 'unauthorized' && e.status === 401);
  });
});
