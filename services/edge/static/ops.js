// The operator page (ops.html): nodes, sessions, broadcasts, over the public operator API
// with the key the operator types in (protocol.md §7).
const $ = (id) => document.getElementById(id);
const app = $('app');
const params = new URLSearchParams(location.search);
const KEY_STORE = 'weir:ops:key';
const REFRESH_MS = Math.max(500, Number(params.get('refresh')) || 3000);
const LIVE = new Set(['queued', 'streaming', 'paused']);

/** What the page knows, for tests and the console. */
const ops = (window.weirOps = { refreshes: 0, status: null, nodes: [], sessions: [], nextCursor: null, problems: [] });

// ---------------------------------------------------------------- theme (shared with the demo page)
const theme = params.get('theme') || localStorage.getItem('weir:theme') || (matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark');
document.documentElement.dataset.theme = theme;
$('theme').onclick = () => {
  const next = document.documentElement.dataset.theme === 'light' ? 'dark' : 'light';
  document.documentElement.dataset.theme = next;
  localStorage.setItem('weir:theme', next);
};

// ---------------------------------------------------------------- the API key
function storedKey() {
  try { return sessionStorage.getItem(KEY_STORE) || ''; } catch { return ''; }
}
function storeKey(k) {
  try { k ? sessionStorage.setItem(KEY_STORE, k) : sessionStorage.removeItem(KEY_STORE); } catch { /* private mode: kept in memory */ }
}
let apiKey = storedKey();

// ---------------------------------------------------------------- HTTP
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
/** A JSON request to this edge's API, with the key. Paths are relative, so a path prefix works. */
async function api(path, { method = 'GET', body, key = apiKey } = {}) {
  const headers = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', signal: AbortSignal.timeout(8000) });
  } catch (e) {
    throw new HttpError(0, 'unreachable', e?.name === 'TimeoutError' ? 'no answer within 8 s' : 'the edge cannot be reached');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = json && json.error;
    throw new HttpError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? (text.slice(0, 200) || res.statusText));
  }
  return json ?? {};
}

/** The part of the cluster an endpoint needs, named for people. */
const PART = { bus: 'the bus (NATS)', store: 'the session store (Redis)' };
const NEEDS = { status: null, nodes: 'bus', sessions: 'store', broadcast: 'bus', cancel: 'bus' };
/** One sentence for a failed request: which part is down for a 503, the edge's own words otherwise. */
function explain(what, endpoint, err) {
  if (err.status === 0) {
    // A request can hang rather than fail while a part it needs is down: say so when the edge did.
    const need = NEEDS[endpoint];
    const down = need && ops.status && ops.status[need] === 'down' ? `; ${PART[need]} is down` : '';
    return { text: `${what}: ${err.message}${down}.`, detail: '' };
  }
  if (err.status === 503) {
    // The edge's own view (GET /v1/status) names the part when it can; else what the endpoint needs.
    const st = ops.status || {};
    let who;
    if (st.bus === 'down' && st.store === 'down') who = `${PART.bus} and ${PART.store} are down`;
    else if (st.bus === 'down') who = `${PART.bus} is down`;
    else if (st.store === 'down') who = `${PART.store} is down`;
    else if (NEEDS[endpoint]) who = `${PART[NEEDS[endpoint]]} is unavailable`;
    else who = 'the edge is not ready';
    return { text: `${what}: ${who}.`, detail: err.message };
  }
  return { text: `${what}: ${err.status} ${err.code}.`, detail: err.message };
}

// ---------------------------------------------------------------- formatting
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const clock = (ms) => new Date(ms).toTimeString().slice(0, 8);
const int = (n) => (Number.isFinite(Number(n)) ? Math.round(Number(n)).toLocaleString() : '–');
function rate(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return '–';
  return v >= 100 ? Math.round(v).toLocaleString() : v >= 10 ? v.toFixed(0) : v.toFixed(1);
}
/** 42 s, 3 m 10 s, 2 h 5 m, 3 d 4 h. */
function dur(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds)));
  if (!Number.isFinite(s)) return '–';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
function ago(ms) {
  const s = Math.max(0, (Date.now() - Number(ms)) / 1000);
  if (!Number.isFinite(s)) return '–';
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s ago`;
  return `${dur(s)} ago`;
}
function setText(el, v) {
  const s = String(v);
  if (el.textContent !== s) el.textContent = s;
}
function health(el, v) {
  const ok = v === 'ok';
  el.className = `health ${v === undefined ? '' : ok ? 'ok' : 'down'}`;
  setText(el.lastElementChild, v === undefined ? '–' : ok ? 'ok' : 'down');
}

/**
 * Brings `tbody` to one row per item, in order, reusing rows by key: a refresh updates cells in
 * place, so a button never disappears under the pointer.
 */
function syncRows(tbody, items, keyOf, build, update) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const item of items) {
    const k = keyOf(item);
    let tr = old.get(k);
    if (tr) old.delete(k);
    else {
      tr = build(item);
      tr.dataset.key = k;
    }
    update(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (tr !== want) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

// ---------------------------------------------------------------- problems banner
const problems = new Map(); // source → {text, detail, kind}
function setProblem(source, p) {
  if (p) problems.set(source, p);
  else problems.delete(source);
  const box = $('problems');
  box.innerHTML = '';
  for (const [src, q] of problems) {
    const div = document.createElement('div');
    div.className = `banner show ${q.kind ?? 'bad'}`;
    div.dataset.testid = 'problem';
    div.dataset.source = src;
    div.innerHTML = `${esc(q.text)}${q.detail ? `<span class="detail">${esc(q.detail)}</span>` : ''}`;
    box.appendChild(div);
  }
  ops.problems = [...problems.values()].map((q) => q.text);
  renderLive();
}

// ---------------------------------------------------------------- this edge: GET /v1/status
function renderStatus(st) {
  ops.status = st;
  setText($('st-node'), st.node ?? '–');
  $('st-node').title = st.node ?? '';
  setText($('st-version'), st.version ?? '–');
  setText($('st-uptime'), dur(st.uptime_s));
  setText($('st-serving'), st.draining ? 'draining: clients move to other edges' : 'accepting clients');
  $('st-serving').classList.toggle('stale', !!st.draining);
  setText($('st-conns'), int(st.connections));
  setText($('st-followed'), int(st.sessions_followed));
  health($('st-bus'), st.bus);
  health($('st-store'), st.store);
  const down = [st.bus === 'down' && 'bus', st.store === 'down' && 'store'].filter(Boolean);
  if (down.length) {
    const what = down.map((p) => PART[p]).join(' and ');
    const effect = down.includes('store')
      ? 'New sessions are refused and the session list is unavailable; sessions in progress keep streaming from the log.'
      : 'Streams pause until it is back; broadcasts, cancels and the node list are unavailable.';
    setProblem('health', { text: `${st.node ?? 'This edge'} reports ${what} down. ${effect}` });
  } else setProblem('health', null);
}

// ---------------------------------------------------------------- nodes: GET /v1/nodes
function nodeLoad(n) {
  const part = (v, label) => (v === undefined || v === null ? '' : `<span><b>${esc(label === 'ev/s' ? rate(v) : int(v))}</b>${label}</span>`);
  if (n.role === 'edge') return part(n.connections, 'conns') + part(n.sessions_followed, 'sessions') + part(n.events_per_s, 'ev/s');
  if (n.role === 'producer') {
    const runs = n.concurrency ? `<span><b>${esc(int(n.runs ?? 0))}</b>/ ${esc(int(n.concurrency))} runs</span>` : part(n.runs, 'runs');
    return runs + part(n.events_per_s, 'ev/s');
  }
  return '';
}
function renderNodes(list) {
  const order = { edge: 0, producer: 1 };
  const nodes = [...list].sort((a, b) => (order[a.role] ?? 2) - (order[b.role] ?? 2) || String(a.id).localeCompare(String(b.id)));
  ops.nodes = nodes;
  const me = ops.status?.node;
  syncRows(
    $('nodes-body'),
    nodes,
    (n) => `${n.role}:${n.id}`,
    () => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'node-row';
      tr.innerHTML = '<td><span class="badge"></span></td><td class="mono idcell"></td><td class="mono dim"></td><td class="dim"></td><td><span class="load"></span></td><td class="num dim"></td>';
      return tr;
    },
    (tr, n) => {
      const c = tr.children;
      tr.dataset.id = n.id;
      tr.dataset.role = n.role;
      c[0].firstChild.className = `badge r-${n.role}`;
      setText(c[0].firstChild, n.role);
      const label = esc(n.id) + (n.id === me && n.role === 'edge' ? '<span class="you">this edge</span>' : '');
      if (c[1].innerHTML !== label) c[1].innerHTML = label;
      c[1].title = n.id;
      setText(c[2], n.version ?? '–');
      setText(c[3], n.started ? dur((Date.now() - n.started) / 1000) : '–');
      const load = nodeLoad(n);
      if (c[4].firstChild.innerHTML !== load) c[4].firstChild.innerHTML = load;
      setText(c[5], n.last_seen ? ago(n.last_seen) : '–');
      // Nodes announce every third of the TTL (10 s): two missed announcements look stale.
      c[5].classList.toggle('stale', !!n.last_seen && Date.now() - n.last_seen > 7000);
      c[5].title = n.last_seen ? new Date(n.last_seen).toLocaleString() : '';
    },
  );
  $('nodes-empty').hidden = nodes.length > 0;
  const edges = nodes.filter((n) => n.role === 'edge');
  const producers = nodes.filter((n) => n.role === 'producer');
  const sum = (arr, f) => arr.reduce((a, n) => a + (Number(n[f]) || 0), 0);
  setText($('k-edges'), edges.length);
  setText($('k-edges-sub'), me ? `this page: ${me}` : 'live nodes');
  setText($('k-producers'), producers.length);
  $('k-conns').textContent = int(sum(edges, 'connections'));
  $('k-followed').textContent = int(sum(edges, 'sessions_followed'));
  $('k-delivered').innerHTML = `${rate(sum(edges, 'events_per_s'))}<small>ev/s</small>`;
  $('k-runs').textContent = int(sum(producers, 'runs'));
  setText($('k-runs-sub'), `${rate(sum(producers, 'events_per_s'))} ev/s made`);
  setText($('nodes-meta'), `${edges.length} edge${edges.length === 1 ? '' : 's'} · ${producers.length} producer${producers.length === 1 ? '' : 's'} · updated ${clock(Date.now())}`);
}

// ---------------------------------------------------------------- sessions: GET /v1/sessions
// The filter and page size come from the URL (?status=…&limit=…) and go back into it, so a view
// can be bookmarked or reloaded.
const STATUSES = ['queued', 'streaming', 'paused', 'completed', 'cancelled', 'failed'];
let filter = STATUSES.includes(params.get('status')) ? params.get('status') : '';
let limit = Math.min(1000, Math.max(1, Math.floor(Number(params.get('limit'))) || Number($('limit').value)));
if (![...$('limit').options].some((o) => Number(o.value) === limit)) $('limit').add(new Option(String(limit), String(limit), true, true));
$('limit').value = String(limit);
for (const b of $('filter').children) b.setAttribute('aria-pressed', String(b.dataset.status === filter));
let cursor = null; // of the page shown (null = newest)
const back = []; // cursors of the newer pages
/** Bumped when the filter or page changes, so an answer to an older query is never shown. */
let view = 0;
function reload() {
  view++;
  $('older').disabled = $('newer').disabled = $('first').disabled = true; // until the page is in
  const u = new URL(location.href);
  if (filter) u.searchParams.set('status', filter);
  else u.searchParams.delete('status');
  u.searchParams.set('limit', String(limit));
  history.replaceState(null, '', u);
  refreshNow();
}
/** Session id → 'confirm' (asked once, waiting for the second click) or 'sending'/'sent'. */
const cancelState = new Map();

function sessionsPath() {
  const q = new URLSearchParams();
  if (filter) q.set('status', filter);
  q.set('limit', String(limit));
  if (cursor) q.set('cursor', cursor);
  return `v1/sessions?${q}`;
}

function renderSessions(list = ops.sessions) {
  ops.sessions = list;
  syncRows(
    $('sess-body'),
    list,
    (s) => s.id,
    () => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'session-row';
      tr.innerHTML = '<td><span class="badge"><i class="dot"></i><span></span></span></td>'
        + '<td class="idcell"><button type="button" class="sid" data-testid="session-id" title="Target this session with a broadcast"></button></td>'
        + '<td class="dim"></td><td class="num"></td><td class="num"></td><td class="num dim"></td><td class="mono dim idcell"></td>'
        + '<td class="act"><button type="button" class="btn sm danger" data-testid="cancel"></button></td>';
      return tr;
    },
    (tr, s) => {
      const c = tr.children;
      tr.dataset.id = s.id;
      tr.dataset.status = s.status;
      const badge = c[0].firstChild;
      badge.className = `badge s-${s.status}`;
      setText(badge.lastChild, s.status);
      setText(c[1].firstChild, s.id);
      c[1].firstChild.dataset.id = s.id;
      const agent = `${esc(s.agent ?? '–')}${s.pace ? `<span class="meta"> · paced ${esc(int(s.pace))}/s</span>` : ''}`;
      if (c[2].innerHTML !== agent) c[2].innerHTML = agent;
      setText(c[3], int(s.last_seq ?? 0));
      setText(c[4], s.subscribers === undefined || s.subscribers === null ? '–' : int(s.subscribers));
      setText(c[5], s.created ? dur((Date.now() - s.created) / 1000) : '–');
      c[5].title = s.created ? new Date(s.created).toLocaleString() : '';
      setText(c[6], s.producer ?? '–');
      c[6].title = s.producer ?? '';
      const btn = c[7].firstChild;
      btn.dataset.id = s.id;
      const live = LIVE.has(s.status);
      if (!live) cancelState.delete(s.id);
      const cs = cancelState.get(s.id);
      btn.hidden = !live;
      btn.disabled = cs === 'sending' || cs === 'sent';
      btn.classList.toggle('confirm', cs === 'confirm');
      setText(btn, cs === 'confirm' ? 'Confirm cancel' : cs === 'sending' ? 'Cancelling…' : cs === 'sent' ? 'Cancelling…' : 'Cancel');
      btn.title = `Cancel session ${s.id}: its run stops and it ends with reason cancelled`;
    },
  );
  $('sess-empty').hidden = list.length > 0;
  const kind = filter ? `${filter} sessions` : 'sessions';
  setText($('sess-empty'), back.length ? `No older ${kind}.` : filter ? `No ${kind}.` : 'No sessions yet. Sessions appear here as soon as they are created.');
  const live = list.filter((s) => LIVE.has(s.status)).length;
  setText($('sess-meta'), `${list.length} shown · ${live} live`);
  setText($('page'), `Page ${back.length + 1}`);
  $('older').disabled = !ops.nextCursor;
  $('newer').disabled = back.length === 0;
  $('first').disabled = back.length === 0;
}

$('filter').addEventListener('click', (e) => {
  const chip = e.target.closest('.chip');
  if (!chip) return;
  filter = chip.dataset.status;
  for (const b of $('filter').children) b.setAttribute('aria-pressed', String(b === chip));
  cursor = null;
  back.length = 0;
  ops.nextCursor = null;
  renderSessions([]);
  reload();
});
$('limit').onchange = () => {
  limit = Number($('limit').value);
  cursor = null;
  back.length = 0;
  reload();
};
$('older').onclick = () => {
  if (!ops.nextCursor) return;
  back.push(cursor);
  cursor = ops.nextCursor;
  reload();
};
$('newer').onclick = () => {
  if (!back.length) return;
  cursor = back.pop();
  reload();
};
$('first').onclick = () => {
  cursor = null;
  back.length = 0;
  reload();
};

$('sess-body').addEventListener('click', (e) => {
  const sid = e.target.closest('button.sid');
  if (sid) {
    $('bc-session').value = sid.dataset.id;
    updateSendLabel();
    $('bc-text').focus();
    return;
  }
  const btn = e.target.closest('button[data-testid="cancel"]');
  if (!btn || btn.disabled) return;
  const id = btn.dataset.id;
  if (cancelState.get(id) !== 'confirm') {
    cancelState.set(id, 'confirm');
    setTimeout(() => {
      if (cancelState.get(id) === 'confirm') {
        cancelState.delete(id);
        renderSessions();
      }
    }, 5000);
    renderSessions();
    return;
  }
  cancel(id);
});

/** POST /v1/sessions/{id}/cancel with the API key: the producer stops and the session ends `cancelled`. */
async function cancel(id) {
  cancelState.set(id, 'sending');
  renderSessions();
  try {
    await api(`v1/sessions/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    cancelState.set(id, 'sent');
    setProblem(`cancel:${id}`, null);
  } catch (err) {
    cancelState.delete(id);
    if (err.status === 401) return askForKey('refused');
    if (err.status === 409) setProblem(`cancel:${id}`, { text: `Session ${id} had already ended.`, kind: 'warn' });
    else if (err.status === 404) setProblem(`cancel:${id}`, { text: `Session ${id} no longer exists.`, kind: 'warn' });
    else setProblem(`cancel:${id}`, explain(`Cancel of ${id} failed`, 'cancel', err));
    setTimeout(() => setProblem(`cancel:${id}`, null), 8000);
  }
  renderSessions();
  setTimeout(refreshNow, 400);
}

// ---------------------------------------------------------------- broadcast: POST /v1/broadcast
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
function updateSendLabel() {
  const sid = $('bc-session').value.trim();
  setText($('bc-send-label'), sid ? 'Send to this session' : 'Send to every client');
}
$('bc-session').addEventListener('input', updateSendLabel);
function bcResult(msg, kind) {
  const b = $('bc-result');
  b.className = `banner${msg ? ` show ${kind}` : ''}`;
  b.textContent = msg;
}
$('bc-text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('bc-form').requestSubmit();
});
$('bc-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('bc-text').value.trim();
  const session = $('bc-session').value.trim();
  if (!text) return bcResult('Write a message first.', 'bad');
  if (session && !ID_RE.test(session)) return bcResult('A session id is 1–64 letters, digits, _ or -.', 'bad');
  const body = { data: { text } };
  if (session) body.session = session;
  $('bc-send').disabled = true;
  bcResult('', '');
  try {
    await api('v1/broadcast', { method: 'POST', body });
    const at = Date.now();
    bcResult(session ? 'Sent to the clients of session ' : 'Sent to every connected client on every edge.', 'ok');
    if (session) $('bc-result').append(Object.assign(document.createElement('code'), { textContent: session }), '.');
    setTimeout(() => { if ($('bc-result').classList.contains('ok')) bcResult('', ''); }, 6000);
    $('bc-text').value = '';
    const li = document.createElement('li');
    li.innerHTML = `<span class="t">${clock(at)}</span><span><span class="txt"></span><span class="to">${session ? `to session <code>${esc(session)}</code>` : 'to every client'}</span></span>`;
    li.querySelector('.txt').textContent = text;
    const ul = $('bc-sent');
    ul.prepend(li);
    while (ul.children.length > 5) ul.lastElementChild.remove();
  } catch (err) {
    if (err.status === 401) askForKey('refused');
    else {
      const x = explain('Not sent', 'broadcast', err);
      bcResult(`${x.text}${x.detail ? ` (${x.detail})` : ''}`, 'bad');
    }
  } finally {
    $('bc-send').disabled = false;
  }
});

// ---------------------------------------------------------------- refresh loop
let timer = null;
let inflight = null;
let again = false;
let paused = false;
let prompting = false;
let lastOk = 0;

function renderLive() {
  let state = 'ok';
  let text = `live · every ${REFRESH_MS / 1000} s`;
  if (prompting) [state, text] = ['paused', 'locked'];
  else if (paused) [state, text] = ['paused', 'paused'];
  else if (!lastOk && problems.size === 0) [state, text] = ['idle', 'connecting'];
  else if ([...problems.keys()].some((k) => k === 'edge')) [state, text] = ['error', 'edge unreachable'];
  else if (problems.size) [state, text] = ['degraded', 'degraded'];
  app.dataset.live = state;
  setText($('live-text'), text);
}
$('live').onclick = () => {
  paused = !paused;
  renderLive();
  if (!paused) refreshNow();
};

function schedule() {
  clearTimeout(timer);
  if (!paused && !prompting) timer = setTimeout(refresh, REFRESH_MS);
}
function refreshNow() {
  if (inflight) again = true;
  else refresh();
}

async function refresh() {
  if (prompting) return;
  clearTimeout(timer);
  inflight = (async () => {
    const asked = view;
    const [st, nodes, sessions] = await Promise.allSettled([api('v1/status'), api('v1/nodes'), api(sessionsPath())]);
    const all = [st, nodes, sessions];
    if (all.some((r) => r.status === 'rejected' && r.reason.status === 401)) {
      askForKey(apiKey ? 'refused' : 'needed');
      return;
    }
    if (all.every((r) => r.status === 'rejected' && r.reason.status === 0)) {
      setProblem('edge', { text: `This edge does not answer; the page keeps trying every ${REFRESH_MS / 1000} s.`, detail: st.reason.message });
    } else setProblem('edge', null);
    if (st.status === 'fulfilled') {
      renderStatus(st.value);
      setProblem('status', null);
    } else if (st.reason.status !== 0) setProblem('status', explain('Edge status unavailable', 'status', st.reason));
    if (nodes.status === 'fulfilled') {
      renderNodes(Array.isArray(nodes.value.nodes) ? nodes.value.nodes : []);
      setProblem('nodes', null);
    } else if (nodes.reason.status !== 0) setProblem('nodes', explain('Node list unavailable', 'nodes', nodes.reason));
    if (asked !== view) again = true; // the filter or page changed meanwhile: ask again
    else if (sessions.status === 'fulfilled') {
      ops.nextCursor = sessions.value.next_cursor ?? null;
      renderSessions(Array.isArray(sessions.value.sessions) ? sessions.value.sessions : []);
      setProblem('sessions', null);
    } else if (sessions.reason.status !== 0) setProblem('sessions', explain('Session list unavailable', 'sessions', sessions.reason));
    if (all.some((r) => r.status === 'fulfilled')) lastOk = Date.now();
    ops.refreshes++;
    renderLive();
  })();
  try {
    await inflight;
  } finally {
    inflight = null;
    if (again) {
      again = false;
      refresh();
    } else schedule();
  }
}

// ---------------------------------------------------------------- key prompt
const KEY_WHY = {
  needed: '',
  refused: 'The edge refused this key (401). Check the edges’ --api-key and try again.',
  forgotten: '',
};
function askForKey(why) {
  prompting = true;
  clearTimeout(timer);
  if (why === 'refused') {
    apiKey = '';
    storeKey('');
  }
  const err = $('key-error');
  err.textContent = KEY_WHY[why] ?? '';
  err.className = `banner bad${err.textContent ? ' show' : ''}`;
  $('key-overlay').hidden = false;
  $('key-input').value = '';
  $('key-submit').disabled = false;
  renderLive();
  $('key-input').focus();
}
$('key-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const candidate = $('key-input').value.trim();
  if (!candidate) return;
  $('key-submit').disabled = true;
  try {
    await api('v1/status', { key: candidate });
  } catch (err) {
    $('key-submit').disabled = false;
    const msg = err.status === 401 ? KEY_WHY.refused : explain('The key could not be checked', 'status', err).text;
    $('key-error').textContent = msg;
    $('key-error').className = 'banner bad show';
    $('key-input').select();
    return;
  }
  apiKey = candidate;
  storeKey(candidate);
  prompting = false;
  $('key-overlay').hidden = true;
  renderLive();
  refreshNow();
});
$('forget-key').onclick = () => {
  apiKey = '';
  storeKey('');
  askForKey('forgotten');
};

// Ages and "last seen" move between refreshes too.
setInterval(() => {
  if (ops.nodes.length) renderNodes(ops.nodes);
  if (ops.sessions.length) renderSessions();
}, 1000);

renderLive();
refresh();
