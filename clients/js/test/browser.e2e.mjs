// Browser end-to-end: Debian's Chromium (driven by playwright-core, which downloads no browser)
// opens the demo page served by edge A, streams a session, loses edge A to SIGKILL, finishes on
// edge B, and the text on the page equals the session's history exactly.
// Writes a screenshot to docs/demo.png.
//
// WEIR_DEMO_FROM_SOURCE=1 serves `/` and `/weir-client.js` from this checkout instead of the
// copies the binary embeds (for working on the page without rebuilding the binary).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startCluster, missingPrerequisite, skipUnless, tokenText, REPO } from './harness.mjs';

const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium';
const why = skipUnless(
  !fs.existsSync(CHROMIUM) ? `${CHROMIUM} is absent (apt-get install chromium)` : missingPrerequisite(),
);

describe('demo page in Chromium', { skip: why, timeout: 150000 }, () => {
  let c;
  let browser;

  before(async () => {
    const { chromium } = await import('playwright-core');
    c = await startCluster({ edges: 2, producers: 1 });
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
    // A page fulfilled by page.route() has no address, so Chromium counts it as public and
    // blocks its sockets to 127.0.0.1 (Local Network Access); a page the edge serves is local.
    if (process.env.WEIR_DEMO_FROM_SOURCE === '1') args.push('--disable-features=LocalNetworkAccessChecks');
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await c?.stop();
  });

  /** A page whose console errors and failed module loads show up in test failures. */
  async function newPage(opts = {}) {
    const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, deviceScaleFactor: 1, colorScheme: 'dark', ...opts });
    const page = await context.newPage();
    page.problems = [];
    page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
    page.on('console', (msg) => msg.type() === 'error' && page.problems.push(`console: ${msg.text()}`));
    if (process.env.WEIR_DEMO_FROM_SOURCE === '1') {
      const files = { '/': 'services/edge/static/index.html', '/weir-client.js': 'clients/js/weir-client.js' };
      await page.route(
        (url) => url.pathname in files && c.edges.some((e) => url.origin === e.url),
        (route) => {
          const p = new URL(route.request().url()).pathname;
          route.fulfill({
            status: 200,
            contentType: p === '/' ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8',
            body: fs.readFileSync(path.join(REPO, files[p]), 'utf8'),
          });
        },
      );
    }
    return page;
  }

  const textOf = (page, id) => page.locator(`[data-testid="${id}"]`).textContent();

  test('stream, lose edge A to SIGKILL, finish on edge B: page text equals history', async () => {
    const [A, B] = c.edges;
    const page = await newPage();
    await page.goto(`${A.url}/?urls=${A.url},${B.url}&tokens=400&rate=100&autostart=1&theme=dark`);
    await page.waitForFunction(() => (window.weirDemo?.tokens ?? 0) >= 60, null, { timeout: 20000 });
    assert.equal(await textOf(page, 'state'), 'open');
    assert.equal(await page.evaluate(() => window.weirDemo.session.node), 'edge-a');

    await c.kill(A);
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === 'ended', null, { timeout: 40000 });

    const { id, token } = await page.evaluate(() => window.weirDemo.created);
    const history = await c.history(id, token, B.url);
    const expected = tokenText(history);
    assert.equal(history.filter((e) => e.kind === 'token').length, 400);
    assert.equal(history.at(-1).kind, 'end');
    const shown = await textOf(page, 'text');
    assert.equal(shown.length, expected.length, 'same length as history');
    assert.ok(shown === expected, 'page text equals the concatenated token texts of history');
    assert.equal(await textOf(page, 'last-seq'), String(history.at(-1).seq));
    assert.equal(await page.evaluate(() => window.weirDemo.session.node), 'edge-b');
    assert.ok(Number(await textOf(page, 'reconnects')) >= 1, 'the page shows the reconnect');
    assert.deepEqual(page.problems.filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(p)), []);

    await page.waitForTimeout(300); // let the last stats frame paint
    fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
    assert.equal(await page.locator('[data-testid="edge"][data-status="lost"]').count(), 1, 'edge A shown as lost');
    await page.screenshot({ path: path.join(REPO, 'docs/demo.png'), fullPage: true });
    await page.context().close();
    await c.restart(A);
  });

  test('pause, resume and cancel buttons reach the producer', async () => {
    const [A] = c.edges;
    const page = await newPage({ colorScheme: 'light' });
    await page.goto(`${A.url}/?tokens=5000&rate=40&autostart=1`);
    await page.waitForFunction(() => (window.weirDemo?.tokens ?? 0) >= 5, null, { timeout: 20000 });
    await page.getByTestId('pause').click();
    await page.locator('[data-testid="timeline"] .k-status', { hasText: 'paused' }).waitFor({ timeout: 5000 });
    const { id, token } = await page.evaluate(() => window.weirDemo.created);
    assert.equal((await c.state(id, token)).status, 'paused');
    await page.waitForTimeout(400);
    const held = await textOf(page, 'last-seq');
    await page.waitForTimeout(800);
    assert.equal(await textOf(page, 'last-seq'), held, 'nothing arrives while paused');
    assert.ok(await page.getByTestId('resume').isEnabled());

    await page.getByTestId('resume').click();
    await page.locator('[data-testid="timeline"] .k-status', { hasText: 'resumed' }).waitFor({ timeout: 5000 });
    await page.waitForFunction((h) => Number(document.querySelector('[data-testid="last-seq"]').textContent) > h + 3, Number(held), { timeout: 5000 });

    await page.getByTestId('drop').click(); // the client reconnects and resumes
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="reconnects"]').textContent) >= 1, null, { timeout: 10000 });

    await page.getByTestId('cancel').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === 'ended', null, { timeout: 10000 });
    const st = await c.state(id, token);
    assert.equal(st.status, 'cancelled');
    assert.equal(st.end_reason, 'cancelled');
    const history = await c.history(id, token);
    assert.equal(await textOf(page, 'text'), tokenText(history));
    await page.locator('[data-testid="timeline"] .k-end', { hasText: 'cancelled' }).waitFor({ timeout: 2000 });
    if (process.env.WEIR_SCREENSHOT_LIGHT) await page.screenshot({ path: process.env.WEIR_SCREENSHOT_LIGHT, fullPage: true });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
