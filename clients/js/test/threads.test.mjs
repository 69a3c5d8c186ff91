// Unit tests of threads, input requests and answers (protocol.md §9) against a fake WebSocket
// and a fake fetch: no server needed.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { WeirSession, WeirThread, createThread } from '../weir-client.js';
import { makeFakeWebSocket, tok, end, waitFor, sleep } from './fake-ws.mjs';

const A = 'http://edge-a:8080';
const B = 'http://edge-b:8080';
const SCHEMA = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };

/** An `input_request` event. */
function ask(seq, id = `ask_${seq}`, prompt = 'your name?') {
  return { seq, kind: 'input_request', ts: Date.now(), data: { id, prompt, schema: SCHEMA } };
}

/** The producer's `input` event: the answer as it took it. */
function input(seq, request, data = { text: 'Ada' }) {
  return { seq, kind: 'input', ts: Date.now(), data: { request, data } };
}

/**
 * A fake edge behind fetch: `handler(call)` answers `[status, body]` or an Error (no answer:
 * the edge is unreachable). `fetch.calls` records every call.
 */
function fakeFetch(handler) {
  const calls = [];
  const f = async (url, init = {}) => {
    const u = new URL(url);
    const call = {
      url: u,
      route: `${init.method ?? 'GET'} ${u.origin}${u.pathname}`,
      auth: init.headers?.authorization,
      body: init.body ? JSON.parse(init.body) : undefined,
    };
    calls.push(call);
    const r = await handler(call);
    if (r instanceof Error) throw r;
    const [status, body] = r;
    return new Response(body === undefined ? null : JSON.stringify(body), { status });
  };
  f.calls = calls;
  return f;
}

/** History pages of `log` (after/limit like the edge), for the request checks. */
function historyOf(log) {
  return (call) => {
    const after = Number(call.url.searchParams.get('after'));
    const limit = Number(call.url.searchParams.get('limit'));
    const events = log.filter((e) => e.seq > after).slice(0, limit);
    return [200, { events, next_after: events.length ? events.at(-1).seq : after }];
  };
}

const edgeError = (code, message) => ({ error: { code, message } });

/** A session on a fake socket class and a fake fetch; records events, errors and announced requests. */
function setup(handler = historyOf([]), opts = {}) {
  const WS = makeFakeWebSocket();
  const fetch = fakeFetch(handler);
  const log = { events: [], errors: [], asked: [] };
  const s = new WeirSession({
    session: 's1',
    token: 'tok',
    urls: [A, B],
    WebSocket: WS,
    fetch,
    backoff: { initial: 4, max: 20 },
    onEvent: (ev) => log.events.push(ev),
    onError: (e) => log.errors.push(e),
    onInputRequest: (req) => log.asked.push(req),
    ...opts,
  });
  return { s, WS, fetch, log, sock: (i) => WS.sockets[i], nth: (i) => waitFor(() => WS.sockets[i], { what: `socket #${i}` }) };
}

/** Lets pending fetches and their continuations run. */
const settle = () => sleep(5);

describe('threads', { timeout: 10000 }, () => {
  test('createThread posts the agent, input and id with the API key and returns the id and token', async () => {
    const fetch = fakeFetch(() => [201, { id: 't1', token: 'tt' }]);
    const t = await createThread(`${A}/`, { agent: 'mock', input: { rate: 5 }, id: 't1', apiKey: 'k1', fetch });
    assert.deepEqual(t, { id: 't1', token: 'tt' });
    assert.equal(fetch.calls[0].route, `POST ${A}/v1/threads`);
    assert.equal(fetch.calls[0].auth, 'Bearer k1');
    assert.deepEqual(fetch.calls[0].body, { agent: 'mock', input: { rate: 5 }, id: 't1' });
  });

  test('createThread surfaces the edge code of a refusal', async () => {
    const fetch = fakeFetch(() => [401, edgeError('unauthorized', 'an API key is required')]);
    await assert.rejects(createThread(A, { fetch }), (e) => e.code === 'unauthorized' && e.status === 401 && /API key/.test(e.message));
  });

  test('startRun posts the messages, tools and input with the thread token and streams the run it started', async () => {
    const WS = makeFakeWebSocket();
    const fetch = fakeFetch(() => [201, { id: 'run1', token: 'rt', ws_url: '', events_url: '' }]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A, B], WebSocket: WS, fetch });
    const messages = [{ role: 'user', content: 'hello' }];
    const tools = [{ name: 'weather', parameters: { type: 'object' } }];
    const run = await t.startRun({ messages, tools, input: { rate: 0 } });
    assert.equal(fetch.calls[0].route, `POST ${A}/v1/threads/t1/runs`);
    assert.equal(fetch.calls[0].auth, 'Bearer tt');
    assert.deepEqual(fetch.calls[0].body, { messages, tools, input: { rate: 0 } });
    assert.equal(t.run, run);
    assert.equal(run.session, 'run1');
    assert.equal(run.state, 'connecting', 'the run is already connecting');
    assert.equal(WS.sockets[0].url, 'ws://edge-a:8080/v1/sessions/run1/ws?after=0&token=rt');
    WS.sockets[0].accept().events(tok(1, 'echo: '), tok(2, 'hello'), end(3));
    assert.equal((await run.finished).data.reason, 'completed');
  });

  test('startRun sends only the messages when there are no tools and no input', async () => {
    const fetch = fakeFetch(() => [201, { id: 'run1', token: 'rt' }]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: makeFakeWebSocket(), fetch });
    (await t.startRun({ messages: [] })).close();
    assert.deepEqual(fetch.calls[0].body, { messages: [] });
    await assert.rejects(t.startRun({}), TypeError);
  });

  test('startRun surfaces run_active when the previous run has not ended', async () => {
    const fetch = fakeFetch(() => [409, edgeError('run_active', 'run r0 of thread t1 has not ended')]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A, B], WebSocket: makeFakeWebSocket(), fetch });
    await assert.rejects(t.startRun({ messages: [{ role: 'user', content: 'x' }] }), (e) => e.code === 'run_active' && e.status === 409 && /r0/.test(e.message));
    assert.equal(fetch.calls.length, 1, 'an edge that answers is not asked again elsewhere');
    assert.equal(t.run, undefined);
  });

  test('startRun surfaces bad_request naming the malformed field', async () => {
    const fetch = fakeFetch(() => [400, edgeError('bad_request', 'messages[0].role must be one of system, user, assistant, tool')]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: makeFakeWebSocket(), fetch });
    await assert.rejects(t.startRun({ messages: [{ role: 'robot', content: 'x' }] }), (e) => e.code === 'bad_request' && /messages\[0\]\.role/.test(e.message));
  });

  test('startRun skips an unreachable edge, and the run streams from the edge that started it', async () => {
    const WS = makeFakeWebSocket();
    const fetch = fakeFetch((call) => (call.url.origin === A ? new TypeError('fetch failed') : [201, { id: 'run2', token: 'rt' }]));
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A, B], WebSocket: WS, fetch });
    const run = await t.startRun({ messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual(fetch.calls.map((c) => c.url.origin), [A, B]);
    assert.equal(WS.sockets[0].parsed.host, 'edge-b:8080');
    run.close();
    (await t.startRun({ messages: [] })).close();
    assert.equal(fetch.calls.at(-1).url.origin, B, 'the next run starts where the last one did');
  });

  test('startRun fails with unreachable when no edge answers', async () => {
    const fetch = fakeFetch(() => new TypeError('fetch failed'));
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A, B], WebSocket: makeFakeWebSocket(), fetch });
    await assert.rejects(t.startRun({ messages: [] }), (e) => e.code === 'unreachable');
    assert.equal(fetch.calls.length, 2);
  });

  test('a run refused with 401 gets a fresh thread token from getToken once and is started with it', async () => {
    const fetch = fakeFetch((call) => (call.auth === 'Bearer fresh' ? [201, { id: 'run1', token: 'rt' }] : [401, edgeError('unauthorized', 'expired')]));
    let asked = 0;
    const t = new WeirThread({ thread: 't1', token: 'old', urls: [A], WebSocket: makeFakeWebSocket(), fetch, getToken: () => (++asked, 'fresh') });
    (await t.startRun({ messages: [] })).close();
    assert.equal(asked, 1);
    assert.equal(t.token, 'fresh');
    assert.deepEqual(fetch.calls.map((c) => c.auth), ['Bearer old', 'Bearer fresh']);
  });

  test('a run whose session token is refused (4001) resumes with the thread token', async () => {
    const WS = makeFakeWebSocket();
    const fetch = fakeFetch(() => [201, { id: 'run1', token: 'rt' }]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: WS, fetch, backoff: { initial: 4, max: 20 } });
    const run = await t.startRun({ messages: [] });
    WS.sockets[0].accept().events(1).serverClose(4001);
    const ws1 = await waitFor(() => WS.sockets[1], { what: 'second socket' });
    assert.equal(ws1.token, 'tt');
    assert.equal(ws1.after, 1);
    ws1.accept().events(end(2));
    await run.finished;
  });

  test('the API key starts runs when the thread has no token', async () => {
    const fetch = fakeFetch(() => [201, { id: 'run1', token: 'rt' }]);
    const t = new WeirThread({ thread: 't1', apiKey: 'k1', urls: [A], WebSocket: makeFakeWebSocket(), fetch });
    (await t.startRun({ messages: [] })).close();
    assert.equal(fetch.calls[0].auth, 'Bearer k1');
  });

  test('get reads the thread and its runs', async () => {
    const info = { id: 't1', agent: 'mock', created: 1, runs: [{ id: 'r1', status: 'completed', created: 2 }], active: null };
    const fetch = fakeFetch(() => [200, info]);
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: makeFakeWebSocket(), fetch });
    assert.deepEqual(await t.get(), info);
    assert.equal(fetch.calls[0].route, `GET ${A}/v1/threads/t1`);
    const missing = new WeirThread({ thread: 'nx', token: 'tt', urls: [A], WebSocket: makeFakeWebSocket(), fetch: fakeFetch(() => [404, edgeError('not_found', 'no thread nx')]) });
    await assert.rejects(missing.get(), (e) => e.code === 'not_found' && e.status === 404);
  });

  test('the thread constructor checks its options', () => {
    assert.throws(() => new WeirThread({ urls: [A] }), TypeError);
    assert.throws(() => new WeirThread({ thread: 't', urls: [] }), TypeError);
    assert.deepEqual(new WeirThread({ thread: 't', urls: `${A}, ${B}` }).urls, [A, B]);
  });
});

describe('onInputRequest', { timeout: 10000 }, () => {
  test('an input_request that the log shows open is announced once, with its prompt, schema, session and seq', async () => {
    const { s, sock, log, fetch } = setup(historyOf([tok(1), ask(2)]));
    s.connect();
    sock(0).accept().events(1, ask(2, 'ask_2', 'your name?'));
    await waitFor(() => log.asked.length === 1, { what: 'the request announced' });
    assert.deepEqual(log.asked[0], { id: 'ask_2', prompt: 'your name?', schema: SCHEMA, session: 's1', seq: 2 });
    assert.deepEqual(s.inputRequest, log.asked[0]);
    assert.equal(fetch.calls[0].route, `GET ${A}/v1/sessions/s1/history`);
    assert.equal(fetch.calls[0].url.searchParams.get('after'), '2');
    assert.equal(fetch.calls[0].auth, 'Bearer tok');
    sock(0).heartbeat();
    await settle();
    assert.equal(log.asked.length, 1);
    s.close();
  });

  test('listeners added with on("input_request") get the request too', async () => {
    const { s, sock } = setup(historyOf([ask(1)]), { onInputRequest: undefined });
    const got = [];
    s.on('input_request', (req) => got.push(req.id));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => got.length === 1, { what: 'the listener called' });
    assert.deepEqual(got, ['ask_1']);
    s.close();
  });

  test('a replayed request whose input follows in the same frame is not announced, and the log is not read', async () => {
    const { s, sock, log, fetch } = setup();
    s.connect();
    sock(0).accept().events(ask(1), input(2, 'ask_1'), tok(3));
    await settle();
    assert.deepEqual(log.asked, []);
    assert.equal(fetch.calls.length, 0);
    assert.equal(s.inputRequest, undefined);
    s.close();
  });

  test('a replayed request whose answer comes in a later frame is not announced', async () => {
    const logged = [ask(1), input(2, 'ask_1'), tok(3)];
    const { s, sock, log, fetch } = setup(historyOf(logged));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => fetch.calls.length === 1, { what: 'the log read' });
    sock(0).events(input(2, 'ask_1'), 3);
    await settle();
    assert.deepEqual(log.asked, []);
    s.close();
  });

  test('a request whose answer is in the log is not announced even before the answer is delivered', async () => {
    const { s, sock, log } = setup(historyOf([ask(1), tok(2), input(3, 'ask_1')]));
    s.connect();
    sock(0).accept().events(ask(1));
    await settle();
    assert.deepEqual(log.asked, []);
    s.close();
  });

  test('a request whose session ended in the log (cancelled while waiting) is not announced', async () => {
    const { s, sock, log } = setup(historyOf([ask(1), end(2, 'cancelled')]));
    s.connect();
    sock(0).accept().events(ask(1));
    await settle();
    assert.deepEqual(log.asked, []);
    s.close();
  });

  test('the log is read page by page until the answer shows', async () => {
    const logged = [ask(1), ...Array.from({ length: 1500 }, (_, i) => tok(i + 2)), input(1502, 'ask_1')];
    const { s, sock, log, fetch } = setup(historyOf(logged));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => fetch.calls.length === 2, { what: 'two pages read' });
    await settle();
    assert.deepEqual(fetch.calls.map((c) => c.url.searchParams.get('after')), ['1', '1001']);
    assert.deepEqual(log.asked, []);
    s.close();
  });

  test('a request is announced when the log cannot be read from any edge', async () => {
    const { s, sock, log } = setup(() => new TypeError('fetch failed'));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => log.asked.length === 1, { what: 'the request announced' });
    s.close();
  });

  test('a reconnect does not announce a request again', async () => {
    const { s, sock, nth, log } = setup(historyOf([ask(1)]));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => log.asked.length === 1, { what: 'the request announced' });
    sock(0).serverClose(1006);
    const ws1 = await nth(1);
    assert.equal(ws1.after, 1);
    ws1.accept().events(ask(1));
    await settle();
    assert.equal(log.asked.length, 1);
    s.close();
  });

  /** A Storage stand-in shared by a page and its reload. */
  function memoryStorage() {
    const m = new Map();
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), m };
  }

  test('with persist, a reload that resumes after an open request announces it again', async () => {
    const storage = memoryStorage();
    const first = setup(historyOf([tok(1), ask(2)]), { persist: storage });
    first.s.connect();
    first.sock(0).accept().events(1, ask(2));
    await waitFor(() => first.log.asked.length === 1, { what: 'the request announced' });
    first.s.close();

    const reload = setup(historyOf([tok(1), ask(2)]), { persist: storage });
    assert.equal(reload.s.lastSeq, 2);
    reload.s.connect();
    const ws = await reload.nth(0);
    assert.equal(ws.after, 2, 'the reload resumes after the request');
    ws.accept();
    await waitFor(() => reload.log.asked.length === 1, { what: 'the request announced after the reload' });
    assert.deepEqual(reload.log.asked[0], first.log.asked[0]);
    reload.s.close();
  });

  test('with persist, a reload after the request was answered announces nothing', async () => {
    const storage = memoryStorage();
    const first = setup(historyOf([ask(1)]), { persist: storage });
    first.s.connect();
    first.sock(0).accept().events(ask(1));
    await waitFor(() => first.log.asked.length === 1, { what: 'the request announced' });
    first.s.close();

    const reload = setup(historyOf([ask(1), input(2, 'ask_1')]), { persist: storage });
    reload.s.connect();
    (await reload.nth(0)).accept().events(input(2, 'ask_1'));
    await settle();
    assert.deepEqual(reload.log.asked, []);
    assert.equal(storage.m.has('weir:s1:input'), false, 'the answered request is forgotten');
    reload.s.close();
  });

  test('the input event closes the announced request', async () => {
    const { s, sock, log } = setup(historyOf([ask(1)]));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => log.asked.length === 1, { what: 'the request announced' });
    sock(0).events(input(2, 'ask_1'));
    assert.equal(s.inputRequest, undefined);
    s.close();
  });

  test('a thread announces the input requests of its runs with the run', async () => {
    const WS = makeFakeWebSocket();
    const fetch = fakeFetch((call) => (call.route.endsWith('/runs') ? [201, { id: 'run1', token: 'rt' }] : [200, { events: [], next_after: 1 }]));
    const asked = [];
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: WS, fetch, onInputRequest: (req, run) => asked.push([req.id, run]) });
    const run = await t.startRun({ messages: [{ role: 'user', content: '/ask name?' }] });
    WS.sockets[0].accept().events(ask(1));
    await waitFor(() => asked.length === 1, { what: 'the request announced' });
    assert.deepEqual(asked, [['ask_1', run]]);
    run.close();
  });
});

describe('answer', { timeout: 10000 }, () => {
  test('while connected it sends the input frame and resolves when the input event arrives', async () => {
    const { s, sock, fetch } = setup(historyOf([ask(1)]));
    s.connect();
    sock(0).accept().events(ask(1));
    await waitFor(() => s.inputRequest, { what: 'the request announced' });
    let done = false;
    const p = s.answer(s.inputRequest, { text: 'Ada' }).then(() => (done = true));
    assert.deepEqual(sock(0).sentFrames.at(-1), { type: 'input', request: 'ask_1', data: { text: 'Ada' } });
    await settle();
    assert.equal(done, false, 'not before weir has the answer');
    sock(0).events(input(2, 'ask_1'));
    await p;
    assert.equal(fetch.calls.filter((c) => c.route.endsWith('/input')).length, 0, 'no HTTP answer');
    s.close();
  });

  test('a refusal of the input frame rejects the answer with the edge code and is no stream error', async () => {
    const { s, sock, log } = setup(historyOf([ask(1)]));
    s.connect();
    sock(0).accept().events(ask(1));
    const p = s.answer('ask_1', { text: 7 });
    sock(0).frame({ type: 'error', code: 'bad_request', message: 'data does not match the schema: /text is not a string' });
    await assert.rejects(p, (e) => e.code === 'bad_request' && /schema/.test(e.message));
    const q = s.answer('ask_9', { text: 'x' });
    sock(0).frame({ type: 'error', code: 'not_found', message: 'no open request ask_9' });
    await assert.rejects(q, (e) => e.code === 'not_found');
    assert.deepEqual(log.errors, []);
    assert.equal(s.state, 'open', 'the stream goes on');
    sock(0).frame({ type: 'error', code: 'bad_request', message: 'unknown frame' });
    assert.equal(log.errors.length, 1, 'an error frame with no answer in flight is a stream error');
    s.close();
  });

  test('while disconnected it posts to /v1/sessions/{id}/input with the session token', async () => {
    const { s, fetch } = setup(() => [202, { accepted: true }]);
    await s.answer({ id: 'ask_1', session: 's1' }, { text: 'Ada' });
    assert.equal(fetch.calls[0].route, `POST ${A}/v1/sessions/s1/input`);
    assert.equal(fetch.calls[0].auth, 'Bearer tok');
    assert.deepEqual(fetch.calls[0].body, { request: 'ask_1', data: { text: 'Ada' } });
  });

  test('over HTTP an unreachable edge is skipped', async () => {
    const { s, fetch } = setup((call) => (call.url.origin === A ? new TypeError('fetch failed') : [202, {}]));
    await s.answer('ask_1', { text: 'Ada' });
    assert.deepEqual(fetch.calls.map((c) => c.url.origin), [A, B]);
  });

  test('over HTTP the edge codes reach the caller: bad_request, not_found, conflict', async () => {
    for (const [status, code] of [[400, 'bad_request'], [404, 'not_found'], [409, 'conflict']]) {
      const { s } = setup(() => [status, edgeError(code, `refused with ${code}`)]);
      await assert.rejects(s.answer('ask_1', { text: 'x' }), (e) => e.code === code && e.status === status);
    }
  });

  test('data that is not an object, or no request, is refused before anything is sent', async () => {
    const { s, fetch } = setup(() => [202, {}]);
    for (const data of [null, 'text', 3, ['a']]) {
      await assert.rejects(s.answer('ask_1', data), (e) => e.code === 'bad_request' && /object/.test(e.message));
    }
    await assert.rejects(s.answer(undefined, {}), (e) => e.code === 'bad_request');
    await assert.rejects(s.answer('', {}), (e) => e.code === 'bad_request');
    assert.equal(fetch.calls.length, 0);
  });

  test('a request whose input event was delivered is a conflict without asking the edge', async () => {
    const { s, sock, fetch } = setup();
    s.connect();
    sock(0).accept().events(ask(1), input(2, 'ask_1'));
    await assert.rejects(s.answer('ask_1', { text: 'again' }), (e) => e.code === 'conflict');
    assert.equal(sock(0).sentFrames.filter((f) => f.type === 'input').length, 0);
    assert.equal(fetch.calls.length, 0);
    s.close();
  });

  test('an answer whose socket is lost before its input event is resent over HTTP', async () => {
    const { s, sock, fetch } = setup((call) => (call.route.endsWith('/input') ? [202, {}] : historyOf([ask(1)])(call)));
    s.connect();
    sock(0).accept().events(ask(1));
    const p = s.answer('ask_1', { text: 'Ada' });
    sock(0).serverClose(1006);
    await p;
    const posts = fetch.calls.filter((c) => c.route.endsWith('/input'));
    assert.equal(posts.length, 1);
    assert.deepEqual(posts[0].body, { request: 'ask_1', data: { text: 'Ada' } });
    s.close();
  });

  test('a resent answer that the edge calls answered resolves when the input event arrives', async () => {
    const { s, sock, nth } = setup((call) => (call.route.endsWith('/input') ? [409, edgeError('conflict', 'ask_1 is already answered')] : historyOf([ask(1)])(call)));
    s.connect();
    sock(0).accept().events(ask(1));
    let done = false;
    const p = s.answer('ask_1', { text: 'Ada' }).then(() => (done = true));
    sock(0).serverClose(1006);
    await settle();
    assert.equal(done, false, 'the 409 may be this very answer: wait for the log');
    (await nth(1)).accept().events(input(2, 'ask_1'));
    await p;
    s.close();
  });

  test('a resent answer that the edge calls answered is a conflict when the session ends without its input', async () => {
    const { s, sock, nth } = setup((call) => (call.route.endsWith('/input') ? [409, edgeError('conflict', 'the session has ended')] : historyOf([ask(1)])(call)));
    s.connect();
    sock(0).accept().events(ask(1));
    const p = s.answer('ask_1', { text: 'Ada' });
    sock(0).serverClose(1006);
    await settle();
    (await nth(1)).accept().events(end(2, 'cancelled'));
    await assert.rejects(p, (e) => e.code === 'conflict' && /ended/.test(e.message));
  });

  test('an answer in flight when the session ends is a conflict', async () => {
    const { s, sock } = setup(historyOf([ask(1)]));
    s.connect();
    sock(0).accept().events(ask(1));
    const p = s.answer('ask_1', { text: 'Ada' });
    sock(0).events(end(2, 'cancelled'));
    await assert.rejects(p, (e) => e.code === 'conflict');
  });

  test('a thread answers a request of an earlier run over HTTP with the thread token', async () => {
    const fetch = fakeFetch((call) => (call.route.endsWith('/runs') ? [201, { id: 'run2', token: 'rt' }] : [202, {}]));
    const t = new WeirThread({ thread: 't1', token: 'tt', urls: [A], WebSocket: makeFakeWebSocket(), fetch });
    (await t.startRun({ messages: [] })).close();
    await t.answer({ id: 'ask_3', session: 'run1', prompt: '', seq: 3 }, { text: 'late' });
    const post = fetch.calls.at(-1);
    assert.equal(post.route, `POST ${A}/v1/sessions/run1/input`);
    assert.equal(post.auth, 'Bearer tt');
    await assert.rejects(t.answer({ id: 'ask_3' }, { text: 'x' }), (e) => e.code === 'bad_request');
  });
});
