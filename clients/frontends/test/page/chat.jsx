// The thread chat page of browser.e2e.mjs: useChat over weir's chat endpoints (protocol.md §9),
// wired with only `api` and `headers` as docs/frontends.md shows. Like any chat app it keeps its
// messages (in localStorage), so a reload, even served by another edge, resumes the active run.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
const thread = params.get('thread');
const token = params.get('token');
const saved = `chat-${thread}`;

const transport = new DefaultChatTransport({ api: '/v1/chat', headers: { Authorization: `Bearer ${token}` } });

function App() {
  const initial = JSON.parse(localStorage.getItem(saved) ?? '[]');
  const { messages, sendMessage, status, error } = useChat({ id: thread, transport, resume: true, messages: initial });
  const [draft, setDraft] = useState('');
  useEffect(() => localStorage.setItem(saved, JSON.stringify(messages)), [messages]);
  const send = (e) => {
    e.preventDefault();
    sendMessage({ text: draft });
    setDraft('');
  };
  return (
    <main style={{ font: '16px/1.5 system-ui, sans-serif', maxWidth: 900, margin: '2rem auto', color: '#ddd' }}>
      <h1 style={{ fontSize: 22 }}>useChat ← weir ({location.host})</h1>
      <p>
        thread <code>{thread}</code> · status <b id="status">{status}</b> {error ? ` · ${error.message}` : ''}
      </p>
      <ol id="messages" style={{ listStyle: 'none', padding: 0 }}>
        {messages.map((m) => (
          <li key={m.id} data-role={m.role} data-id={m.id} style={{ background: m.role === 'user' ? '#25324a' : '#1b1d22', padding: 12, borderRadius: 8, margin: '8px 0', whiteSpace: 'pre-wrap' }}>
            {m.parts.filter((p) => p.type === 'text').map((p) => p.text).join('')}
          </li>
        ))}
      </ol>
      <form onSubmit={send}>
        <input id="prompt" value={draft} onChange={(e) => setDraft(e.target.value)} style={{ width: '80%', padding: 8 }} />
        <button id="send" disabled={status !== 'ready'}>Send</button>
      </form>
    </main>
  );
}

document.body.style.background = '#0f1115';
createRoot(document.getElementById('root')).render(<App />);
