// The front-end protocol endpoints (protocol.md §8) against a real cluster, read by the real
// client packages from npm: the Vercel AI SDK (`ai` latest, and `ai7` = ai@7.0.31, whose chunk
// schemas are strict and reject unknown fields) and AG-UI's `@ag-ui/client` HttpAgent (which runs
// its own event verifier on every run).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HttpAgent } from '@ag-ui/client';
import * as aiLatest from 'ai';
import * as ai7 from 'ai7';
import { connect, headers as natsHeaders } from 'nats';

import { missingPrerequisite, skipUnless, randomId, signToken, startCluster, tokenText } from '../../js/test/harness.mjs';

const why = skipUnless(missingPrerequisite());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An AutoGen-shaped run, as the Python adapter publishes it: task, text, a tool call, its result, text. */
function autogenEvents() {
  const ev = (seq, kind, data, source) => ({ seq, kind, ts: Date.now() + seq, ...(source ? { source } : {}), data });
  return [
    ev(1, 'message', { type: 'TextMessage', content: 'Weather in Paris?' }, 'user'),
    ev(2, 'token', { text: 'Let me ' }, 'assistant'),
    ev(3, 'token', { text: 'check.' }, 'assistant'),
    ev(4, 'tool_call', { type: 'ToolCallRequestEvent', content: [{ id: 'call_w1', name: 'get_weather', arguments: '{"city":"Paris"}' }] }, 'assistant'),
    ev(5, 'usage', { prompt_tokens: 12, completion_tokens: 5 }, 'assistant'),
    ev(6, 'tool_result', { type: 'ToolCallExecutionEvent', content: [{ call_id: 'call_w1', name: 'get_weather', content: 'Sunny, 21 C', is_error: false }] }, 'assistant'),
    ev(7, 'token', { text: 'It is sunny ' }, 'assistant'),
    ev(8, 'token', { text: 'in Paris.' }, 'assistant'),
    ev(9, 'message', { type: 'TextMessage', content: 'It is sunny in Paris.' }, 'assistant'),
    ev(10, 'usage', { prompt_tokens: 30, completion_tokens: 7 }, 'assistant'),
    ev(11, 'end', { reason: 'completed' }),
  ];
}

/** Publishes events as an outside producer does (protocol.md §2): JetStream, Nats-Msg-Id, Weir-Seq. */
async function publish(natsUrl, session, events) {
  const nc = await connect({ servers: natsUrl });
  try {
    const js = nc.jetstream();
    for (const e of events) {
      const h = natsHeaders();
      h.set('Weir-Seq', String(e.seq));
      await js.publish(`weir.ev.${session}`, new TextEncoder().encode(JSON.stringify(e)), { msgID: `${session}:${e.seq}`, headers: h });
    }
  } finally {
    await nc.close();
  }
}

async function waitEnded(c, s) {
  for (let i = 0; i < 400; i++) {
    const st = await c.state(s.id, s.token);
    if (['completed', 'cancelled', 'failed'].includes(st.status)) return st;
    await sleep(25);
  }
  throw new Error(`session ${s.id} did not end`);
}

/** A DefaultChatTransport of the given `ai` module whose requests go to an edge's ui-stream. */
function transport(ai, base, s) {
  const api = `${base}/v1/sessions/${s.id}/ui-stream`;
  const headers = { Authorization: `Bearer ${s.token}` };
  return new ai.DefaultChatTransport({
    api,
    prepareSendMessagesRequest: ({ messages }) => ({ api, headers, body: { messages } }),
    prepareReconnectToStreamRequest: () => ({ api, headers }),
  });
}

/** The final message readUIMessageStream assembles from a chunk stream. */
async function finalMessage(ai, stream) {
  let last;
  for await (const m of ai.readUIMessageStream({ stream, terminateOnError: true })) last = m;
  return last;
}

/** What the AI SDK message must hold, derived from the session's history. */
function expectedFromHistory(history) {
  const calls = history.filter((e) => e.kind === 'tool_call').flatMap((e) => e.data.content);
  const results = new Map(history.filter((e) => e.kind === 'tool_result').flatMap((e) => e.data.content).map((r) => [r.call_id, r]));
  const sum = (f) => history.filter((e) => e.kind === 'usage').reduce((n, e) => n + (e.data[f] ?? 0), 0);
  const usage = history.some((e) => e.kind === 'usage') ? { prompt_tokens: sum('prompt_tokens'), completion_tokens: sum('completion_tokens') } : undefined;
  return {
    text: tokenText(history),
    tools: calls.map((c) => ({
      type: 'dynamic-tool',
      toolCallId: c.id,
      toolName: c.name,
      state: 'output-available',
      input: JSON.parse(c.arguments),
      output: results.get(c.id).content,
    })),
    usage,
  };
}

function assertMessageIsHistory(m, s, history) {
  const want = expectedFromHistory(history);
  assert.equal(m.id, s.id);
  assert.equal(m.role, 'assistant');
  assert.equal(m.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), want.text);
  assert.ok(m.parts.filter((p) => p.type === 'text').every((p) => p.state === 'done'));
  const tools = m.parts.filter((p) => p.type === 'dynamic-tool').map(({ type, toolCallId, toolName, state, input, output }) => ({ type, toolCallId, toolName, state, input, output }));
  assert.deepEqual(tools, want.tools);
  assert.deepEqual(m.metadata?.usage, want.usage);
}

describe('front-end protocols on a real cluster', { skip: why }, () => {
  let c;
  let mock;
  let outside;
  let history = {};

  before(async () => {
    c = await startCluster({ edges: 2, producers: 1 });
    mock = await c.createMock({ tokens: 120, rate: 0, seed: 7 });
    outside = await c.create({ agent: 'external' });
    await publish(c.natsUrl, outside.id, autogenEvents());
    await waitEnded(c, mock);
    await waitEnded(c, outside);
    history = { mock: await c.history(mock.id, mock.token), outside: await c.history(outside.id, outside.token) };
  });

  after(async () => {
    await c?.stop();
  });

  for (const [name, ai] of [['ai latest', aiLatest], ['ai 7.0.31 (strict schemas)', ai7]]) {
    test(`${name}: DefaultChatTransport + readUIMessageStream assemble the mock session; reconnectToStream on the other edge gives the same message`, async () => {
      const user = { id: 'u1', role: 'user', parts: [{ type: 'text', text: 'go' }] };
      const sent = await transport(ai, c.edges[0].url, mock).sendMessages({ chatId: mock.id, messages: [user], trigger: 'submit-message', messageId: undefined, abortSignal: undefined });
      const m = await finalMessage(ai, sent);
      assertMessageIsHistory(m, mock, history.mock);
      const again = await transport(ai, c.edges[1].url, mock).reconnectToStream({ chatId: mock.id });
      assert.deepEqual(await finalMessage(ai, again), m);
    });

    test(`${name}: an outside AutoGen-shaped session with a tool call and its result`, async () => {
      const sent = await transport(ai, c.edges[1].url, outside).sendMessages({ chatId: outside.id, messages: [], trigger: 'submit-message', messageId: undefined, abortSignal: undefined });
      const m = await finalMessage(ai, sent);
      assertMessageIsHistory(m, outside, history.outside);
      assert.equal(m.parts.filter((p) => p.type === 'dynamic-tool').length, 1);
      // The user's task (source "user") is not part of the assistant's message, and the closing
      // TextMessage repeats streamed text, so it adds none.
      assert.equal(m.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), 'Let me check.It is sunny in Paris.');
      const again = await transport(ai, c.edges[0].url, outside).reconnectToStream({ chatId: outside.id });
      assert.deepEqual(await finalMessage(ai, again), m);
    });
  }

  test('ai 7.0.31: a live session read while it streams equals its history', async () => {
    const live = await c.createMock({ tokens: 150, rate: 300, seed: 3 });
    const m = await finalMessage(ai7, await transport(ai7, c.edges[0].url, live).reconnectToStream({ chatId: live.id }));
    assertMessageIsHistory(m, live, await c.history(live.id, live.token));
  });

  test('ui-stream: the wire format, and errors as JSON before any chunk', async () => {
    const url = `${c.edges[0].url}/v1/sessions/${outside.id}/ui-stream`;
    const r = await fetch(`${url}?token=${outside.token}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const body = await r.text();
    assert.ok(body.endsWith('data: [DONE]\n\n'), body.slice(-80));
    const other = await fetch(`${c.edges[1].url}/v1/sessions/${outside.id}/ui-stream`, { method: 'POST', headers: { Authorization: `Bearer ${outside.token}` }, body: '{}' });
    assert.equal(await other.text(), body, 'two edges, GET and POST: the same bytes');
    const bad = await fetch(`${url}?token=${mock.token}`);
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).error.code, 'unauthorized');
  });

  describe('AG-UI HttpAgent (its verifier runs on every run)', () => {
    const agentFor = (base, s, initialMessages = []) =>
      new HttpAgent({ url: `${base}/v1/sessions/${s.id}/ag-ui`, headers: { Authorization: `Bearer ${s.token}` }, threadId: s.id, initialMessages });

    test('a finished mock session ends as one assistant message with its text', async () => {
      const agent = agentFor(c.edges[0].url, mock);
      await agent.runAgent();
      assert.deepEqual(agent.messages.map((m) => [m.id, m.role, m.content]), [[`${mock.id}-m1`, 'assistant', tokenText(history.mock)]]);
    });

    test('a finished outside session: text, the tool call, its result, text; a second run adds no duplicate', async () => {
      const agent = agentFor(c.edges[1].url, outside);
      const { result } = await agent.runAgent();
      assert.deepEqual(result, { usage: { prompt_tokens: 42, completion_tokens: 12 } }, 'RUN_FINISHED carries the summed usage');
      const want = [
        { id: `${outside.id}-m2`, role: 'assistant', content: 'Let me check.' },
        { id: `${outside.id}-m4`, role: 'assistant', toolCalls: [{ id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { id: `${outside.id}-r6-0`, role: 'tool', toolCallId: 'call_w1', content: 'Sunny, 21 C' },
        { id: `${outside.id}-m7`, role: 'assistant', content: 'It is sunny in Paris.' },
      ];
      const shape = (ms) => ms.map(({ id, role, content, toolCalls, toolCallId }) => JSON.parse(JSON.stringify({ id, role, content, toolCalls, toolCallId })));
      assert.deepEqual(shape(agent.messages), want);
      // Calling again (as a reconnect would) on the other edge: a snapshot, nothing doubled.
      agent.url = `${c.edges[0].url}/v1/sessions/${outside.id}/ag-ui`;
      await agent.runAgent();
      assert.deepEqual(shape(agent.messages), want);
    });

    test('a live session: a reconnect on the other edge mid-message leaves the same messages, none doubled', async () => {
      const live = await c.createMock({ tokens: 300, rate: 150, seed: 11 });
      const first = agentFor(c.edges[0].url, live, [{ id: 'user-1', role: 'user', content: 'go' }]);
      let deltas = 0;
      await first
        .runAgent({}, {
          onTextMessageContentEvent: () => {
            if (++deltas === 20) first.abortRun();
          },
        })
        .catch(() => {});
      const partial = first.messages.find((m) => m.role === 'assistant')?.content ?? '';
      assert.ok(partial.length > 0, 'the first run got part of the message');
      assert.equal((await c.state(live.id, live.token)).status, 'streaming', 'the reconnect happens while the session is live');
      // A new agent on edge B holding what the first one had, as a reloaded page would.
      const second = agentFor(c.edges[1].url, live, structuredClone(first.messages));
      await second.runAgent();
      const full = tokenText(await c.history(live.id, live.token));
      assert.ok(full.startsWith(partial) && full.length > partial.length);
      assert.deepEqual(second.messages.map((m) => [m.id, m.role, m.content]), [
        ['user-1', 'user', 'go'],
        [`${live.id}-m1`, 'assistant', full],
      ]);
    });

    test('bad requests: a wrong token is 401, an unknown session 404, a foreign threadId 400', async () => {
      const post = (id, token, body = {}) =>
        fetch(`${c.edges[0].url}/v1/sessions/${id}/ag-ui`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal((await post(mock.id, outside.token)).status, 401);
      const nx = randomId();
      const missing = await post(nx, signToken(nx));
      assert.equal(missing.status, 404);
      assert.equal((await missing.json()).error.code, 'not_found');
      const bad = await post(outside.id, outside.token, { threadId: 'another', messages: [] });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).error.code, 'bad_request');
    });
  });
});
