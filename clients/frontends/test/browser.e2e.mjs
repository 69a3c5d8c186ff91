// Chromium end-to-end for the AI SDK: a React page using @ai-sdk/react's useChat({ resume: true })
// with a DefaultChatTransport pointed at weir's ui-stream (test/page/app.jsx, bundled here with
// esbuild) streams a live session from edge A; edge A is SIGKILLed mid-stream; the page is
// reloaded from edge B and shows exactly the session's text. Writes docs/frontends-usechat.png.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { missingPrerequisite, skipUnless, REPO, startCluster, tokenText } from '../../js/test/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium';
const why = skipUnless(!fs.existsSync(CHROMIUM) ? `${CHROMIUM} is absent (apt-get install chromium)` : missingPrerequisite());

/** The page's script: app.jsx with React, @ai-sdk/react and ai bundled in. */
async function bundle() {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [path.join(here, 'page/app.jsx')],
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

describe('useChat({ resume: true }) in Chromium across an edge crash', { skip: why, timeout: 120000 }, () => {
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
});
