// AG-UI's agent endpoint for a thread (protocol.md §9) with the real `@ag-ui/client` HttpAgent,
// whose own verifier checks every event sequence: runs started by runAgent, a front-end tool, an
// interrupt answered with `resume` through the other edge, and one cancelled.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HttpAgent } from '@ag-ui/client';

import { missingPrerequisite, skipUnless, startCluster } from '../../js/test/harness.mjs';
import { createThread, threadState } from './threads.mjs';

const why = skipUnless(missingPrerequisite());

/** An HttpAgent wired as §9 says: the thread's endpoint and its token. */
function agentOn(base, thread) {
  return new HttpAgent({ url: `${base}/v1/threads/${thread.id}/ag-ui`, headers: { Authorization: `Bearer ${thread.token}` }, threadId: thread.id });
}

/** Moves an agent (its messages, pending interrupts and all) to another edge, as a load balancer would. */
const moveTo = (agent, base, thread) => {
  agent.url = `${base}/v1/threads/${thread.id}/ag-ui`;
};

const shape = (ms) => ms.map(({ role, content, toolCalls, toolCallId }) => JSON.parse(JSON.stringify({ role, content, toolCalls: toolCalls?.map((t) => [t.function.name, t.function.arguments]), toolCallId })));

describe('AG-UI HttpAgent on a thread (its verifier runs on every run)', { skip: why }, () => {
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

  test('two runs by runAgent: each starts the thread\'s next run with the conversation so far', async () => {
    const thread = await createThread(c);
    const agent = agentOn(a, thread);
    agent.addMessage({ id: 'u1', role: 'user', content: 'first' });
    const started = [];
    await agent.runAgent({}, { onRunStartedEvent: ({ event }) => started.push([event.threadId, event.runId]) });
    agent.addMessage({ id: 'u2', role: 'user', content: 'second' });
    moveTo(agent, b, thread);
    await agent.runAgent({}, { onRunStartedEvent: ({ event }) => started.push([event.threadId, event.runId]) });
    assert.deepEqual(shape(agent.messages), [
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'echo: first' },
      { role: 'user', content: 'second' },
      { role: 'assistant', content: 'echo: second' },
    ]);
    const { runs, active } = await threadState(thread, a);
    assert.equal(runs.length, 2);
    assert.equal(active, null);
    assert.equal(started.length, 2);
    assert.ok(started.every(([t, r]) => t === thread.id && r.length > 0) && started[0][1] !== started[1][1], 'RUN_STARTED carries the ids sent');
  });

  test('a known runId rejoins its run: the same bytes from either edge, a snapshot of the conversation then the end', async () => {
    const thread = await createThread(c);
    const headers = { Authorization: `Bearer ${thread.token}`, 'content-type': 'application/json' };
    const input = { threadId: thread.id, runId: 'run-1', messages: [{ id: 'u1', role: 'user', content: 'again' }] };
    const post = async (base) => {
      const r = await fetch(`${base}/v1/threads/${thread.id}/ag-ui`, { method: 'POST', headers, body: JSON.stringify(input) });
      const text = await r.text();
      assert.equal(r.status, 200, text);
      return text;
    };
    const first = await post(a);
    assert.ok(first.includes('"type":"TEXT_MESSAGE_START"') && !first.includes('MESSAGES_SNAPSHOT'), 'the first call starts the run and streams it live');
    const [fromA, fromB] = [await post(a), await post(b)];
    assert.equal(fromA, fromB);
    const events = fromA.split('\n\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    assert.deepEqual(events.map((e) => e.type), ['RUN_STARTED', 'MESSAGES_SNAPSHOT', 'RUN_FINISHED']);
    assert.deepEqual(events[1].messages.map((m) => [m.id.startsWith(thread.id) ? 'run' : m.id, m.role, m.content]).map(([id, role, content]) => [id === 'u1' ? id : 'run', role, content]), [['u1', 'user', 'again'], ['run', 'assistant', 'echo: again']]);
    assert.equal((await threadState(thread, a)).runs.length, 1, 'no second run');
  });

  test('a front-end tool: the call, then RUN_FINISHED; its result in the next run gives `tool said`', async () => {
    const thread = await createThread(c);
    const agent = agentOn(a, thread);
    const tools = [{ name: 'pick', description: 'picks a number', parameters: { type: 'object', properties: { n: { type: 'number' } } } }];
    agent.addMessage({ id: 'u1', role: 'user', content: '/tool pick {"n":3}' });
    const calls = [];
    await agent.runAgent({ tools }, { onToolCallEndEvent: ({ toolCallName, toolCallArgs }) => calls.push([toolCallName, toolCallArgs]) });
    assert.deepEqual(calls, [['pick', { n: 3 }]]);
    const call = agent.messages.at(-1).toolCalls[0];
    agent.addMessage({ id: 't1', role: 'tool', toolCallId: call.id, content: '3' });
    await agent.runAgent({ tools });
    assert.deepEqual(shape(agent.messages), [
      { role: 'user', content: '/tool pick {"n":3}' },
      { role: 'assistant', toolCalls: [['pick', '{"n":3}']] },
      { role: 'tool', content: '3', toolCallId: call.id },
      { role: 'assistant', content: 'tool said: 3' },
    ]);
  });

  test('an interrupt answered with resume through the other edge continues the same run and keeps every earlier message', async () => {
    const thread = await createThread(c);
    const agent = agentOn(a, thread);
    agent.addMessage({ id: 'u1', role: 'user', content: 'hello' });
    await agent.runAgent();
    agent.addMessage({ id: 'u2', role: 'user', content: '/ask Your name?' });
    const { result } = await agent.runAgent();
    assert.equal(result, undefined);
    assert.equal(agent.pendingInterrupts.length, 1);
    const [interrupt] = agent.pendingInterrupts;
    assert.match(interrupt.id, /^ask_\d+$/);
    assert.deepEqual([interrupt.reason, interrupt.message, interrupt.responseSchema.required], ['input_required', 'Your name?', ['text']]);
    const before = await threadState(thread, a);
    assert.equal(before.runs.length, 2);
    assert.equal(before.active, before.runs[1].id);

    moveTo(agent, b, thread);
    await agent.runAgent({ resume: [{ interruptId: interrupt.id, status: 'resolved', payload: { text: 'Ada' } }] });
    assert.deepEqual(agent.pendingInterrupts, []);
    assert.deepEqual(shape(agent.messages), [
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: 'echo: hello' },
      { role: 'user', content: '/ask Your name?' },
      { role: 'assistant', content: 'you answered: Ada' },
    ]);
    assert.deepEqual(agent.messages.slice(0, 3).map((m) => m.id).filter((id) => id.startsWith('u')), ['u1', 'u2'], 'the ids the client sent');
    const after = await threadState(thread, a);
    assert.deepEqual(after.runs.map((r) => r.id), before.runs.map((r) => r.id), 'no new run');
    assert.equal(after.active, null);
  });

  test('an interrupt cancelled by resume ends that run cancelled, and the next runAgent works', async () => {
    const thread = await createThread(c);
    const agent = agentOn(a, thread);
    agent.addMessage({ id: 'u1', role: 'user', content: '/ask Sure?' });
    await agent.runAgent();
    const [interrupt] = agent.pendingInterrupts;
    assert.ok(interrupt, 'the run is interrupted');
    const outcomes = [];
    await agent.runAgent({ resume: [{ interruptId: interrupt.id, status: 'cancelled' }] }, { onRunFinishedEvent: ({ event }) => outcomes.push(event.outcome) });
    assert.deepEqual(outcomes, [{ type: 'cancelled' }]);
    assert.deepEqual(agent.pendingInterrupts, []);
    const { runs } = await threadState(thread, b);
    assert.deepEqual(runs.map((r) => r.status), ['cancelled']);
    agent.addMessage({ id: 'u2', role: 'user', content: 'never mind' });
    await agent.runAgent();
    assert.equal(agent.messages.at(-1).content, 'echo: never mind');
    assert.equal((await threadState(thread, b)).runs.length, 2);
  });
});
