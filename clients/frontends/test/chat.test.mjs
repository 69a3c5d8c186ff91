// The AI SDK's chat endpoints for a thread (protocol.md §9) with the real `ai` package: AbstractChat
// (useChat's core, the same class @ai-sdk/react's Chat extends) over a plain
// DefaultChatTransport({api: '<edge>/v1/chat', headers}) — no prepare callbacks — against a real
// cluster of two edges. The mock agent answers a thread's last message (protocol.md §4): `echo: X`,
// `/tool NAME ARGS` calls a front-end tool, a tool message gives `tool said: C`, `/ask P` asks.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { AbstractChat, DefaultChatTransport } from 'ai';

import { missingPrerequisite, skipUnless, startCluster } from '../../js/test/harness.mjs';
import { answer, control, createThread, textOf, threadState, until } from './threads.mjs';

const why = skipUnless(missingPrerequisite());

/** useChat's state, without React: plain arrays replaced on every change, as React's is. */
class State {
  status = 'ready';
  error = undefined;
  constructor(messages = []) {
    this.messages = messages;
  }
  pushMessage(m) {
    this.messages = [...this.messages, m];
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(i, m) {
    this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)];
  }
  snapshot(x) {
    return structuredClone(x);
  }
}

class Chat extends AbstractChat {
  constructor({ messages, ...options }) {
    super({ ...options, state: new State(messages) });
  }
}

/** A chat of `thread` through edge `base`, wired exactly as §9 says: api and headers. */
function chatOn(base, thread, { body, messages, ...options } = {}) {
  const headers = { Authorization: `Bearer ${thread.token}` };
  const transport = new DefaultChatTransport({ api: `${base}/v1/chat`, headers, ...(body ? { body } : {}) });
  return new Chat({ id: thread.id, transport, messages, ...options });
}

const assistants = (chat) => chat.messages.filter((m) => m.role === 'assistant');

describe('AI SDK chat on a thread (ai AbstractChat + DefaultChatTransport)', { skip: why }, () => {
  let c;
  let a;
  let b;

  before(async () => {
    c = await startCluster({ edges: 2, producers: 1 });
    [a, b] = c.edges.map((e) => e.url);
  });

  after(async () => {
    await c?.stop();
  });

  test('two turns: each sendMessage starts the next run and streams its reply as one assistant message', async () => {
    const thread = await createThread(c);
    const chat = chatOn(a, thread);
    await chat.sendMessage({ text: 'hello there' });
    await chat.sendMessage({ text: 'and again' });
    assert.equal(chat.status, 'ready', chat.error?.message);
    const state = await threadState(thread, b);
    const { runs } = state;
    assert.equal(runs.length, 2, JSON.stringify(state));
    assert.deepEqual(
      chat.messages.map((m) => [m.role, m.role === 'assistant' ? m.id : null, textOf(m)]),
      [
        ['user', null, 'hello there'],
        ['assistant', runs[0].id, 'echo: hello there'],
        ['user', null, 'and again'],
        ['assistant', runs[1].id, 'echo: and again'],
      ],
    );
  });

  test('a send answers exactly the run\'s UI message stream, byte for byte, as its ui-stream does on the other edge', async () => {
    const thread = await createThread(c);
    const headers = { Authorization: `Bearer ${thread.token}`, 'content-type': 'application/json' };
    const body = { id: thread.id, trigger: 'submit-message', messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'same bytes' }] }] };
    const sent = await fetch(`${a}/v1/chat`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await sent.text();
    assert.equal(sent.status, 200, text);
    assert.equal(sent.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
    const { runs } = await threadState(thread, b);
    assert.ok(text.startsWith(`data: {"type":"start","messageId":"${runs[0].id}"}`), text.slice(0, 80));
    const deltas = text.split('\n\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6))).filter((ch) => ch.type === 'text-delta');
    assert.equal(deltas.map((ch) => ch.delta).join(''), 'echo: same bytes');
    assert.ok(text.endsWith('data: [DONE]\n\n'));
    const replay = await fetch(`${b}/v1/sessions/${runs[0].id}/ui-stream`, { headers });
    assert.equal(await replay.text(), text);
  });

  test('resume with no active run is null (204) and leaves the chat as it was', async () => {
    const thread = await createThread(c);
    const headers = { Authorization: `Bearer ${thread.token}` };
    const transport = new DefaultChatTransport({ api: `${a}/v1/chat`, headers });
    assert.equal(await transport.reconnectToStream({ chatId: thread.id }), null);
    const chat = chatOn(b, thread);
    await chat.resumeStream();
    assert.equal(chat.status, 'ready');
    assert.deepEqual(chat.messages, []);
  });

  test('a reply stopped part way and resumed from the other edge ends with the whole reply once, under the same id', async () => {
    const thread = await createThread(c, { input: { rate: 40 } });
    const said = 'a long enough message to take a while to echo back, token by token. '.repeat(3);
    const chat = chatOn(a, thread);
    const sending = chat.sendMessage({ text: said });
    await until('part of the reply', () => assistants(chat).some((m) => textOf(m).length > 16));
    await chat.stop();
    await sending;
    const partial = assistants(chat)[0];
    const { active } = await threadState(thread, b);
    assert.equal(active, partial.id, 'the run is still going when the page resumes');
    // Held (paused) while the page reloads on the other edge, holding what it had.
    assert.equal(await control(thread, active, 'pause', b), 202);
    const again = chatOn(b, thread, { messages: structuredClone(chat.messages) });
    const resuming = again.resumeStream();
    await until('the resumed stream', () => again.status === 'streaming');
    assert.equal(await control(thread, active, 'resume', b), 202);
    await resuming;
    assert.equal(again.status, 'ready', again.error?.message);
    assert.equal(again.messages.length, 2);
    const [m] = assistants(again);
    assert.equal(m.id, partial.id);
    assert.equal(textOf(m), `echo: ${said}`);
    assert.ok(textOf(m).startsWith(textOf(partial)) && textOf(partial).length < textOf(m).length);
  });

  test('a front-end tool: the stream ends at the call; addToolOutput and sendMessage() continue the same message from a second run', async () => {
    const thread = await createThread(c, { input: { rate: 20 } });
    const tools = [{ name: 'pick', description: 'picks a number', parameters: { type: 'object' } }];
    const calls = [];
    const chat = chatOn(a, thread, { body: { tools }, onToolCall: ({ toolCall }) => calls.push(toolCall) });
    await chat.sendMessage({ text: '/tool pick {"n": 3}' });
    assert.equal(chat.status, 'ready', chat.error?.message);
    assert.equal(calls.length, 1);
    assert.deepEqual([calls[0].toolName, calls[0].input], ['pick', { n: 3 }]);
    const [m1] = assistants(chat);
    assert.deepEqual(m1.parts.filter((p) => p.type === 'dynamic-tool').map((p) => [p.toolCallId, p.state]), [[calls[0].toolCallId, 'input-available']]);
    assert.match(calls[0].toolCallId, /^call_\d+$/);

    const output = 'three, as asked. '.repeat(16);
    await chat.addToolOutput({ tool: 'pick', toolCallId: calls[0].toolCallId, output });
    const continuing = chat.sendMessage();
    // Meanwhile a second page, holding the chat as it was, resumes the second run on the other edge:
    // its replay restates the call and its output before the new text, so it ends with the same message.
    const runs = await until('the second run', async () => {
      const s = await threadState(thread, b);
      return s.runs.length === 2 && s;
    });
    // Held (paused) while the second page resumes it.
    const second = runs.runs[1].id;
    assert.equal(await control(thread, second, 'pause', b), 202);
    const other = chatOn(b, thread, { messages: structuredClone(chat.messages) });
    const resuming = other.resumeStream();
    await until('the resumed stream', () => other.status === 'streaming');
    assert.equal(await control(thread, second, 'resume', b), 202);
    await Promise.all([continuing, resuming]);
    assert.equal(chat.status, 'ready', chat.error?.message);
    assert.equal(chat.messages.length, 2, 'one assistant message for the turn');
    const [m] = assistants(chat);
    assert.equal(m.id, runs.runs[0].id, 'the message keeps the first run\'s id');
    assert.equal(textOf(m), `tool said: ${output}`);
    const tool = m.parts.find((p) => p.type === 'dynamic-tool');
    assert.deepEqual([tool.state, tool.output], ['output-available', output]);
    const shape = (msg) => ({ id: msg.id, text: textOf(msg), tools: msg.parts.filter((p) => p.type === 'dynamic-tool').map((p) => [p.toolCallId, p.state, p.output]) });
    assert.equal(other.status, 'ready', other.error?.message);
    assert.deepEqual(other.messages.map(shape), chat.messages.map(shape));
    // The next run's input holds the call once: a third turn still works.
    await chat.sendMessage({ text: 'thanks' });
    assert.equal(textOf(chat.messages.at(-1)), 'echo: thanks');
    assert.equal((await threadState(thread, a)).runs.length, 3);
  });

  test('an /ask shows a data-input-request part; the answer posted on the other edge finishes the reply', async () => {
    const thread = await createThread(c);
    const seen = [];
    const chat = chatOn(a, thread, { onData: (part) => seen.push(part) });
    const sending = chat.sendMessage({ text: '/ask What is your name?' });
    const part = await until('the input request', () => assistants(chat).flatMap((m) => m.parts).find((p) => p.type === 'data-input-request'));
    assert.match(part.id, /^ask_\d+$/);
    assert.equal(part.data.prompt, 'What is your name?');
    assert.deepEqual(part.data.schema.required, ['text']);
    const [m] = assistants(chat);
    assert.equal((await threadState(thread, b)).active, m.id);
    await answer(thread, m.id, part.id, { text: 'Ada' }, b);
    await sending;
    assert.equal(chat.status, 'ready', chat.error?.message);
    assert.equal(textOf(assistants(chat)[0]), 'you answered: Ada');
    assert.deepEqual(seen.map((p) => [p.type, p.id]), [['data-input-request', part.id]]);
  });
});
