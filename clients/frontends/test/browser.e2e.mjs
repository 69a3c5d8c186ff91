// Chromium end-to-end for the AI SDK, with pages bundled here by esbuild:
// - test/page/app.jsx: @ai-sdk/react's useChat({ resume: true }) with a DefaultChatTransport pointed
//   at weir's ui-stream streams a live session from edge A; edge A is SIGKILLed mid-stream; the page
//   is reloaded from edge B and shows exactly the session's text. Writes docs/frontends-usechat.png.
// - test/page/chat.jsx: useChat on a thread through weir's chat endpoints (api and headers only),
//   three turns, behind a load balancer (here: the browser's request routing) whose edge A is
//   SIGKILLed during the second reply; the reloaded page resumes that reply from edge B.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { missingPrerequisite, skipUnless, REPO, startCluster, tokenText } from '../../js/test/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium';
const why = skipUnless(!fs.existsSync(CHROMIUM) ? `${CHROMIUM} is absent (apt-get install chromium)` : missingPrerequisite());

/** A page's script: page/<name> with React, @ai-sdk/react and ai bundled in. */
async function bundle(name = 'app.jsx') {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [path.join(here, 'page', name)],
    bundle: true,
    write: false,
    format: 'esm',
    jsx: 'automatic',
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

const HTML = '<!doctype html><meta charset="utf-8"><title>useChat on weir</title><div id="root"></div><script type="module" src="/frontends-test.js"></script>';

describe('useChat in Chromium across an edge crash', { skip: why, timeout: 180000 }, () => {
  let c;
  let browser;

  before(async () => {
    const { chromium } = await import('playwright-core');
    c = await startCluster({ edges: 2, producers: 1 });
    // The page is fulfilled by page.route(), so Chromium would treat it as public and block its
    // requests to 127.0.0.1 (Local Network Access) without this flag.
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run', '--disable-features=LocalNetworkAccessChecks'];
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await c?.stop();
  });

  test('edge A dies mid-stream; reloaded from edge B the page shows exactly the session text', async () => {
    const js = await bundle();
    const s = await c.createMock({ tokens: 400, rate: 80, seed: 21 });
    const [a, b] = c.edges;
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, colorScheme: 'dark' });
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    // The page and its script are served at each edge's own origin, so ui-stream is same-origin.
    await page.route(
      (url) => ['/frontends-test.html', '/frontends-test.js'].includes(url.pathname),
      (route) => {
        const html = new URL(route.request().url()).pathname.endsWith('.html');
        route.fulfill({ status: 200, contentType: html ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8', body: html ? HTML : js });
      },
    );
    const query = `?session=${s.id}&token=${encodeURIComponent(s.token)}`;
    await page.goto(`${a.url}/frontends-test.html${query}`);
    await page.waitForFunction(() => document.querySelector('#out')?.textContent.length > 40, null, { timeout: 20000 });
    await c.kill(a);
    const partial = await page.locator('#out').textContent();
    assert.equal((await c.state(s.id, s.token, b.url)).status, 'streaming', 'edge A died while the session was live');

    await page.goto(`${b.url}/frontends-test.html${query}`);
    await page.waitForFunction(() => document.querySelector('#out')?.dataset.finished === 'true', null, { timeout: 30000 });
    const shown = await page.locator('#out').textContent();
    const want = tokenText(await c.history(s.id, s.token, b.url));
    assert.ok(want.startsWith(partial) && partial.length < want.length, 'edge A had shown a prefix');
    assert.equal(shown, want);
    assert.deepEqual(problems, []);
    await page.screenshot({ path: path.join(REPO, 'docs/frontends-usechat.png') });
    await context.close();
  });

  test('a three-turn chat on a thread through /v1/chat: edge A dies during the second reply; the reloaded page resumes it from edge B', async () => {
    const js = await bundle('chat.jsx');
    const r = await fetch(`${c.edges[1].url}/v1/threads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'mock', input: { rate: 20 } }) });
    assert.equal(r.status, 201);
    const thread = await r.json();
    const a = c.edges[0];
    const b = c.edges[1];
    await c.restart(a); // the test before killed it
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, colorScheme: 'dark' });
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    // The app's origin is a load balancer in front of the edges: the page is served at it, and its
    // /v1/ requests go to whichever edge is up (edge A until it dies).
    const origin = 'http://chat.weir.test';
    let upstream = a.url;
    await page.route(`${origin}/**`, (route) => {
      const url = new URL(route.request().url());
      if (url.pathname.startsWith('/v1/')) return route.continue({ url: `${upstream}${url.pathname}${url.search}` });
      const html = url.pathname.endsWith('.html');
      return route.fulfill({ status: 200, contentType: html ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8', body: html ? HTML.replace('/frontends-test.js', '/chat.js') : js });
    });
    const url = `${origin}/chat.html?thread=${thread.id}&token=${encodeURIComponent(thread.token)}`;
    const replies = () => page.locator('li[data-role="assistant"]').allTextContents();
    const send = async (text) => {
      await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'ready');
      await page.fill('#prompt', text);
      await page.click('#send');
    };
    await page.goto(url);
    await send('first turn');
    await page.waitForFunction(() => document.querySelectorAll('li[data-role="assistant"]').length === 1 && document.querySelector('#status').textContent === 'ready');
    const second = 'the second turn is long enough to be cut in the middle of its reply when edge A dies, '.repeat(3).trim();
    await send(second);
    await page.waitForFunction(() => (document.querySelectorAll('li[data-role="assistant"]')[1]?.textContent.length ?? 0) > 20);
    await c.kill(a);
    upstream = b.url;
    const partial = (await replies())[1];
    const auth = { headers: { Authorization: `Bearer ${thread.token}` } };
    const live = await (await fetch(`${b.url}/v1/threads/${thread.id}`, auth)).json();
    assert.ok(live.active, 'edge A died while the second run was live');
    // The run is held (paused) while the page reloads, so that the reload finds it live.
    const control = (op) => fetch(`${b.url}/v1/sessions/${live.active}/${op}`, { method: 'POST', ...auth });
    assert.equal((await control('pause')).status, 202);
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'streaming', null, { timeout: 30000 });
    assert.equal((await control('resume')).status, 202);
    await page
      .waitForFunction((n) => document.querySelectorAll('li[data-role="assistant"]')[1]?.textContent.length === n && document.querySelector('#status').textContent === 'ready', `echo: ${second}`.length, { timeout: 30000 })
      .catch(async (e) => {
        throw new Error(`${e.message}; the page shows: ${await page.locator('main').textContent()}; the thread: ${JSON.stringify(await (await fetch(`${b.url}/v1/threads/${thread.id}`, { headers: { Authorization: `Bearer ${thread.token}` } })).json())}`);
      });
    await send('third turn');
    await page.waitForFunction(() => document.querySelectorAll('li[data-role="assistant"]').length === 3 && document.querySelector('#status').textContent === 'ready', null, { timeout: 30000 });
    assert.deepEqual(await replies(), ['echo: first turn', `echo: ${second}`, 'echo: third turn']);
    assert.ok(`echo: ${second}`.startsWith(partial) && partial.length < `echo: ${second}`.length, 'edge A had shown part of the second reply');
    const ids = await page.locator('li[data-role="assistant"]').evaluateAll((els) => els.map((e) => e.dataset.id));
    const { runs } = await (await fetch(`${b.url}/v1/threads/${thread.id}`, { headers: { Authorization: `Bearer ${thread.token}` } })).json();
    assert.deepEqual(ids, runs.map((run) => run.id), 'one message per run, under its id');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
