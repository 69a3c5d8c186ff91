// The page of browser.e2e.mjs: a React app whose only weir-specific part is the transport. It is
// the docs/frontends.md example, unchanged: useChat({ resume: true }) replays the session's message
// from whichever edge serves the page.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useState } from 'react';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
const session = params.get('session');
const token = params.get('token');
const api = `/v1/sessions/${session}/ui-stream`;
const headers = { Authorization: `Bearer ${token}` };

const transport = new DefaultChatTransport({
  api,
  prepareSendMessagesRequest: ({ messages }) => ({ api, headers, body: { messages } }),
  prepareReconnectToStreamRequest: () => ({ api, headers }),
});

function App() {
  const [finished, setFinished] = useState(false);
  const { messages, status, error } = useChat({ id: session, transport, resume: true, onFinish: () => setFinished(true) });
  const text = messages
    .filter((m) => m.role === 'assistant')
    .flatMap((m) => m.parts)
    .filter((p) => p.type === 'text')
    .map((p) => p.text)
    .join('');
  return (
    <main style={{ font: '16px/1.5 system-ui, sans-serif', maxWidth: 900, margin: '2rem auto', color: '#ddd' }}>
      <h1 style={{ fontSize: 22 }}>useChat ← weir ({location.host})</h1>
      <p>
        session <code>{session}</code> · status <b id="status">{status}</b>
        {finished ? ' · finished' : ''} {error ? ` · ${error.message}` : ''}
      </p>
      <pre id="out" data-finished={String(finished)} style={{ whiteSpace: 'pre-wrap', background: '#1b1d22', padding: 16, borderRadius: 8 }}>
        {text}
      </pre>
    </main>
  );
}

document.body.style.background = '#0f1115';
createRoot(document.getElementById('root')).render(<App />);
