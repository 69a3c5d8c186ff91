// Browser end-to-end: Debian's Chromium (driven by playwright-core, which downloads no browser)
// opens the demo page (a chat) served by edge A: two turns of one thread, edge A SIGKILLed in the
// middle of the second reply (finished on edge B), an /ask answered in the page; every reply on
// the page equals its run's history exactly. Writes a screenshot to docs/demo.png.
//
// WEIR_DEMO_FROM_SOURCE=1 serves `/` and `/weir-client.js` from this checkout instead of the
// copies the binary embeds (for working on the page without rebuilding the binary).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { clientFiles, startCluster, missingPrerequisite, skipUnless, tokenText, REPO } from './harness.mjs';

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
      const files = { '/': 'services/edge/static/index.html', ...clientFiles() };
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
  const replies = (page) => page.locator('[data-testid="msg-assistant"] .text').allTextContents();
  /** Sends a message from the composer and waits until its reply is over (the conversation grew by two). */
  async function say(page, text, { wait = true } = {}) {
    const before = await page.evaluate(() => window.weirDemo.messages.length);
    await page.getByTestId('say').fill(text);
    await page.getByTestId('send').click();
    if (wait) await page.waitForFunction((n) => window.weirDemo.messages.length === n + 2, before, { timeout: 40000 });
  }
  const LONG = 'Tell me how a weir keeps a river level while the water keeps moving over its crest, '.repeat(4).trim();

  test('a chat: two turns, edge A SIGKILLed mid-reply, an /ask answered in the page; every reply equals its run', async () => {
    const [A, B] = c.edges;
    const page = await newPage();
    await page.goto(`${A.url}/?urls=${A.url},${B.url}&rate=12&theme=dark`);

    await say(page, 'hello');
    assert.deepEqual(await replies(page), ['echo: hello']);
    assert.equal(await page.evaluate(() => window.weirDemo.run.node), 'edge-a');

    // Turn two streams from edge A, which dies part way: the reply finishes on edge B.
    await say(page, LONG, { wait: false });
    await page.waitForFunction(() => (document.querySelectorAll('[data-testid="msg-assistant"] .text')[1]?.textContent.length ?? 0) >= 40, null, { timeout: 20000 });
    await c.kill(A);
    await page.waitForFunction(() => window.weirDemo.messages.length === 4, null, { timeout: 40000 });
    assert.equal(await page.evaluate(() => window.weirDemo.run.node), 'edge-b');
    assert.ok(Number(await textOf(page, 'reconnects')) >= 1, 'the page shows the resume');
    assert.match(await page.locator('[data-testid="msg-assistant"]').nth(1).locator('.note').first().textContent(), /^resumed on edge-b after seq \d+$/);
    assert.equal(await page.locator('[data-testid="edge"][data-status="lost"]').count(), 1, 'edge A shown as lost');

    // Edge A is back (the page's HTTP calls stay on its own origin: edges send no CORS headers).
    // Turn three asks first; the page answers in its form.
    await c.restart(A);
    await say(page, '/ask What is your name?', { wait: false });
    await page.getByTestId('ask').waitFor({ state: 'visible', timeout: 20000 });
    assert.equal(await textOf(page, 'ask-prompt'), 'What is your name?');
    await page.getByTestId('ask-text').fill('Ada');
    await page.getByTestId('ask-send').click();
    await page.waitForFunction(() => window.weirDemo.messages.length === 6, null, { timeout: 20000 });
    assert.ok(await page.getByTestId('ask').isHidden());

    assert.deepEqual(await replies(page), ['echo: hello', `echo: ${LONG}`, 'you answered: Ada']);
    const runs = await page.evaluate(() => window.weirDemo.runs);
    assert.equal(runs.length, 3);
    for (const [i, run] of runs.entries()) {
      const history = await c.history(run.id, run.token, B.url);
      assert.equal(history.at(-1).kind, 'end');
      assert.equal(history.at(-1).data.reason, 'completed');
      assert.ok((await replies(page))[i] === tokenText(history), `reply ${i + 1} equals the tokens of its run's history`);
    }
    const asked = await c.history(runs[2].id, runs[2].token, B.url);
    assert.deepEqual(asked.filter((e) => e.kind === 'input').map((e) => e.data.data), [{ text: 'Ada' }], 'one answer, as typed');
    assert.deepEqual(page.problems.filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(p)), []);

    fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
    await page.screenshot({ path: path.join(REPO, 'docs/demo.png'), fullPage: true });
    await page.context().close();
  });

  test('pause, resume, drop and cancel reach the run of the current reply', async () => {
    const [A] = c.edges;
    if (A.proc.exitCode !== null || A.proc.signalCode) await c.restart(A); // the test before stopped with A killed
    const page = await newPage({ colorScheme: 'light' });
    await page.goto(`${A.url}/?rate=4`);
    await say(page, LONG, { wait: false });
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="last-seq"]').textContent) >= 2, null, { timeout: 20000 });
    await page.getByTestId('pause').click();
    await page.locator('[data-testid="msg-assistant"] .note', { hasText: 'paused' }).waitFor({ timeout: 5000 });
    const { id, token } = await page.evaluate(() => window.weirDemo.runs[0]);
    assert.equal((await c.state(id, token)).status, 'paused');
    const held = await textOf(page, 'last-seq');
    await page.waitForTimeout(1000);
    assert.equal(await textOf(page, 'last-seq'), held, 'nothing arrives while paused');

    await page.getByTestId('resume').click();
    await page.locator('[data-testid="msg-assistant"] .note', { hasText: 'resumed' }).waitFor({ timeout: 5000 });
    await page.waitForFunction((h) => Number(document.querySelector('[data-testid="last-seq"]').textContent) > h + 2, Number(held), { timeout: 10000 });

    await page.getByTestId('drop').click(); // the client reconnects and resumes
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="reconnects"]').textContent) >= 1, null, { timeout: 10000 });

    await page.getByTestId('cancel').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]').textContent === 'ended', null, { timeout: 10000 });
    const st = await c.state(id, token);
    assert.equal(st.status, 'cancelled');
    const history = await c.history(id, token);
    assert.equal((await replies(page))[0], tokenText(history));
    await page.locator('[data-testid="msg-assistant"] .note', { hasText: 'reply cancelled' }).waitFor({ timeout: 2000 });
    assert.ok(await page.getByTestId('send').isEnabled(), 'the next turn can be sent');
    if (process.env.WEIR_SCREENSHOT_LIGHT) await page.screenshot({ path: process.env.WEIR_SCREENSHOT_LIGHT, fullPage: true });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
