// Compiled by `npm run typecheck` (tsc --noEmit), never run: the public types in use.
import WeirSessionDefault, { WeirSession, WeirError, WeirThread, createSession, createThread, fetchHistory, backoffDelay, wsUrl, CloseCode } from '@weir/client';
import type { WeirEvent, WeirState, StateInfo, WeirNotice, WeirInputRequest } from '@weir/client';

async function demo(): Promise<string> {
  const created = await createSession('http://127.0.0.1:8080', { agent: 'mock', input: { tokens: 10 }, apiKey: 'k' });
  const s = new WeirSession({
    session: created.id,
    token: created.token,
    urls: ['http://127.0.0.1:8080', 'http://127.0.0.1:8081'],
    getToken: async () => 'fresh',
    persist: 'sessionStorage',
    heartbeatInterval: 15000,
    backoff: { initial: 250, max: 10000 },
    autoAck: true,
    onEvent: (ev: WeirEvent) => void ev.seq,
    onState: (st: WeirState, info: StateInfo) => void [st, info.delay, info.error?.code],
    onError: (e: WeirError) => void e.closeCode,
    onNotice: (n: WeirNotice) => void n.text?.toUpperCase(),
  });
  const offNotice = s.on('notice', (n) => void (n.text satisfies string | undefined));
  offNotice();
  const off = s.on('state', (st) => void st);
  off();
  await s.connect();
  s.pause();
  s.resume();
  s.ack();
  s.ack(3);
  s.reconnect({ rotate: true });
  let text = '';
  for await (const ev of s) if (ev.kind === 'token') text += (ev.data as { text: string }).text;
  const end: WeirEvent | undefined = await s.finished;
  const h = await fetchHistory('http://x', created.id, { token: created.token, all: true });
  const n: number = backoffDelay(2, { initial: 1 }) + h.next_after + s.lastSeq + CloseCode.EXPIRED;
  const u: string = wsUrl('http://x', 's', { after: n });
  const same: typeof WeirSession = WeirSessionDefault;
  s.cancel();
  s.close();
  void same;
  return text + u + String(end?.seq) + (s.state satisfies WeirState) + new WeirError('x', 'y').code;
}
void demo;

async function chat(): Promise<string> {
  const { id, token } = await createThread('http://127.0.0.1:8080', { agent: 'mock', input: { rate: 20 }, apiKey: 'k' });
  const thread = new WeirThread({
    thread: id,
    token,
    urls: ['http://127.0.0.1:8080'],
    backoff: { initial: 50 },
    onInputRequest: (req: WeirInputRequest, run: WeirSession) => void run.answer(req, { text: req.prompt }),
  });
  const run = await thread.startRun({ messages: [{ role: 'user', content: '/ask name?' }], tools: [{ name: 't' }] }, { onEvent: (ev) => void ev.kind });
  run.on('input_request', (req) => void thread.answer(req, { text: String(req.seq) }));
  const open: WeirInputRequest | undefined = run.inputRequest;
  await run.answer('ask_1', { text: 'x' });
  const info = await thread.get();
  return info.runs.map((r) => r.status).join() + (info.active ?? '') + (open?.schema ? 's' : '') + (thread.run?.session ?? '');
}
void chat;
