// weir-bench chat's baseline: a one-request stream without a log. Vercel's
// resumable-stream (Redis pub/sub, the stream kept only while it runs)
// behind node:http, answering `POST /chat/{id}` with `{"text", "rate"}`
// by the AI SDK UI message stream weir's mock agent gives for the same
// message: `echo: <text>` in text deltas of at most 8 characters, the
// first at once and then one every 1/rate seconds.
//
//   REDIS_URL=redis://127.0.0.1:6379 PORT=8790 node server.mjs
// `GET /chat/{id}` resumes a stream that is still running (204 otherwise).
import http from 'node:http';
import { createResumableStreamContext } from 'resumable-stream';

const context = createResumableStreamContext({ waitUntil: null });
const port = Number(process.env.PORT || 8790);

function reply(text, rate, id) {
  const words = `echo: ${text}`;
  const pieces = [];
  for (let i = 0; i < words.length; i += 8) pieces.push(words.slice(i, i + 8));
  const chunk = (c) => `data: ${JSON.stringify(c)}\n\n`;
  const gap = rate > 0 ? 1000 / rate : 0;
  return new ReadableStream({
    async start(controller) {
      controller.enqueue(chunk({ type: 'start', messageId: id }));
      controller.enqueue(chunk({ type: 'start-step' }));
      controller.enqueue(chunk({ type: 'text-start', id: `${id}-t` }));
      for (let n = 0; n < pieces.length; n++) {
        if (n > 0 && gap > 0) await new Promise((r) => setTimeout(r, gap));
        controller.enqueue(chunk({ type: 'text-delta', id: `${id}-t`, delta: pieces[n] }));
      }
      controller.enqueue(chunk({ type: 'text-end', id: `${id}-t` }));
      controller.enqueue(chunk({ type: 'finish-step' }));
      controller.enqueue(chunk({ type: 'finish' }));
      controller.enqueue('data: [DONE]\n\n');
      controller.close();
    },
  });
}

async function body(req) {
  let data = '';
  for await (const part of req) data += part;
  return JSON.parse(data || '{}');
}

async function send(res, stream) {
  if (!stream) {
    res.writeHead(204).end();
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'x-vercel-ai-ui-message-stream': 'v1',
    'cache-control': 'no-cache',
  });
  for await (const piece of stream) res.write(piece);
  res.end();
}

const server = http.createServer(async (req, res) => {
  const m = /^\/chat\/([A-Za-z0-9_-]{1,64})$/.exec(req.url || '');
  try {
    if (!m) return res.writeHead(404).end();
    if (req.method === 'POST') {
      const { text = '', rate = 50 } = await body(req);
      await send(res, await context.createNewResumableStream(m[1], () => reply(text, rate, m[1])));
    } else if (req.method === 'GET') {
      await send(res, await context.resumeExistingStream(m[1]));
    } else {
      res.writeHead(405).end();
    }
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'internal', message: String(e) } }));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`resumable-stream baseline on 127.0.0.1:${port}`));
