// Browser end-to-end for the operator page (`/ops`): a real cluster of two edges and two
// producers with an API key, Debian's Chromium driven by playwright-core (no browser download).
// The page is unlocked with the key (a wrong one gets the prompt again), lists both edges and both
// producers, cancels a running session from its row, and sends broadcasts that reach clients on
// the other edge: the JS client's onNotice in Node and the demo page's notice bar.
//
// WEIR_OPS_PNG=docs/ops.png writes a screenshot of the page there (relative to the repo).
// WEIR_DEMO_FROM_SOURCE=1 serves `/ops`, `/` and `/weir-client.js` from this checkout instead of
// the copies the binary embeds (for working on the pages without rebuilding the binary).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';

import { WeirSession } from '../weir-client.js';
import { clientFiles, startCluster, missingPrerequisite, skipUnless, REPO } from './harness.mjs';
import { waitFor, sleep } from './fake-ws.mjs';

const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium';
const why = skipUnless(
  !fs.existsSync(CHROMIUM) ? `${CHROMIUM} is absent (apt-get install chromium)` : missingPrerequisite(),
);

const KEY = 'ops-e2e-key-7f3a';
const AUTH = { authorization: `Bearer ${KEY}` };
/** A session that streams for 100 s unless cancelled. */
const LONG = { agent: 'mock', input: { tokens: 2000, rate: 20 } };

describe('operator page in Chromium', { skip: why, timeout: 240000 }, () => {
  let c;
  let browser;
  /** Sessions and clients to stop at the end. */
  const clients = [];

  before(async () => {
    const { chromium } = await import('playwright-core');
    c = await startCluster({ edges: 2, producers: 2, edgeArgs: ['--api-key', KEY] });
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
    // A page fulfilled by page.route() has no address, so Chromium counts it as public and
    // blocks its sockets to 127.0.0.1 (Local Network Access); a page the edge serves is local.
    if (process.env.WEIR_DEMO_FROM_SOURCE === '1') args.push('--disable-features=LocalNetworkAccessChecks');
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
  });

  after(async () => {
    for (const s of clients) s.close();
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
      const files = {
        '/ops': 'services/edge/static/ops.html',
        '/ops/ops.js': 'services/edge/static/ops.js',
        '/ops/ops.css': 'services/edge/static/ops.css',
        '/': 'services/edge/static/index.html',
        ...clientFiles(),
      };
      await page.route(
        (url) => url.pathname in files && c.edges.some((e) => url.origin === e.url),
        (route) => {
          const p = new URL(route.request().url()).pathname;
          route.fulfill({
            status: 200,
            contentType: p.endsWith('.js')
              ? 'text/javascript; charset=utf-8'
              : p.endsWith('.css')
                ? 'text/css; charset=utf-8'
                : 'text/html; charset=utf-8',
            body: fs.readFileSync(path.join(REPO, files[p]), 'utf8'),
          });
        },
      );
    }
    return page;
  }

  /** Console errors other than the HTTP errors the tests cause on purpose (401s, a killed Redis). */
  const unexpected = (page) => page.problems.filter((p) => !/Failed to load resource/.test(p));

  /** Opens /ops on `edge` (refreshing every second) and unlocks it with `key`. */
  async function openOps(edge, key = KEY, opts = {}) {
    const page = await newPage(opts);
    await page.goto(`${edge.url}/ops?refresh=1000`);
    await page.getByTestId('key-prompt').waitFor({ state: 'visible', timeout: 10000 });
    await page.getByTestId('key-input').fill(key);
    await page.getByTestId('key-submit').click();
    return page;
  }

  const row = (page, id) => page.locator(`[data-testid="session-row"][data-id="${id}"]`);

  /** A Node client of a session on `edge`, recording its notices. */
  async function follow(created, edge) {
    const notices = [];
    const s = new WeirSession({ session: created.id, token: created.token, urls: [edge.url], WebSocket, onNotice: (d) => notices.push(d) });
    s.notices = notices;
    clients.push(s);
    await s.connect();
    await waitFor(() => s.lastSeq >= 1, { timeout: 10000, what: `first event of ${created.id}` });
    return s;
  }

  test('a wrong key gets the key prompt again; the right one opens the console and is kept in sessionStorage', async () => {
    const [A] = c.edges;
    const page = await openOps(A, 'not-the-key');
    await page.getByTestId('key-error').filter({ hasText: '401' }).waitFor({ timeout: 5000 });
    assert.ok(await page.getByTestId('key-prompt').isVisible(), 'the prompt stays up after a refused key');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weir:ops:key')), null, 'a refused key is not stored');

    await page.getByTestId('key-input').fill(KEY);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('key-prompt').waitFor({ state: 'hidden', timeout: 5000 });
    await page.locator('[data-testid="st-node"]', { hasText: 'edge-a' }).waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weir:ops:key')), KEY);
    assert.equal(await page.evaluate(() => localStorage.getItem('weir:ops:key')), null, 'never in localStorage');

    // A stored key the edge no longer accepts (rotated) brings the prompt back on the next refresh.
    await page.evaluate(() => sessionStorage.setItem('weir:ops:key', 'rotated-away'));
    await page.reload();
    await page.getByTestId('key-prompt').waitFor({ state: 'visible', timeout: 5000 });
    await page.getByTestId('key-error').filter({ hasText: 'refused' }).waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weir:ops:key')), null);

    // The lock button forgets the key.
    await page.getByTestId('key-input').fill(KEY);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('key-prompt').waitFor({ state: 'hidden', timeout: 5000 });
    await page.getByTestId('forget-key').click();
    assert.ok(await page.getByTestId('key-prompt').isVisible());
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weir:ops:key')), null);
    assert.deepEqual(unexpected(page), []);
    await page.context().close();
  });

  test('the node list shows both edges and both producers; Cancel on a running session ends it cancelled', async () => {
    const [A, B] = c.edges;
    for (let i = 0; i < 3; i++) await c.create({ agent: 'mock', input: { tokens: 40, rate: 0, seed: i } }, B.url, AUTH);
    const long = await c.create(LONG, B.url, AUTH);
    const page = await openOps(A);

    for (const [id, role] of [['edge-a', 'edge'], ['edge-b', 'edge'], ['prod-1', 'producer'], ['prod-2', 'producer']]) {
      await page.locator(`[data-testid="node-row"][data-id="${id}"][data-role="${role}"]`).waitFor({ timeout: 10000 });
    }
    assert.equal(await page.locator('[data-testid="node-row"]').count(), 4);
    assert.match(await page.locator('[data-testid="node-row"][data-id="edge-a"]').textContent(), /this edge/i);
    assert.equal(await page.getByTestId('k-edges').textContent(), '2');
    assert.equal(await page.getByTestId('k-producers').textContent(), '2');

    const r = row(page, long.id);
    await page.locator(`[data-testid="session-row"][data-id="${long.id}"][data-status="streaming"]`).waitFor({ timeout: 10000 });
    assert.match(await r.textContent(), /mock/);
    await r.getByTestId('cancel').click();
    await r.getByTestId('cancel').filter({ hasText: 'Confirm' }).waitFor({ timeout: 2000 });
    assert.equal((await c.state(long.id, long.token)).status, 'streaming', 'the first click only asks for confirmation');
    await r.getByTestId('cancel').click();

    const st = await waitFor(
      async () => {
        const s = await c.state(long.id, long.token);
        return s.status === 'cancelled' && s;
      },
      { timeout: 15000, interval: 100, what: `session ${long.id} cancelled` },
    );
    assert.equal(st.end_reason, 'cancelled');
    await page.locator(`[data-testid="session-row"][data-id="${long.id}"][data-status="cancelled"]`).waitFor({ timeout: 10000 });
    assert.ok(await r.getByTestId('cancel').isHidden(), 'no Cancel on an ended session');

    // The status filter asks the edge for cancelled sessions only.
    await page.getByTestId('status-filter').getByText('Cancelled').click();
    await waitFor(async () => (await page.locator('[data-testid="session-row"]').count()) >= 1 && (await page.locator('[data-testid="session-row"]:not([data-status="cancelled"])').count()) === 0, { timeout: 10000, what: 'only cancelled rows' });
    await page.getByTestId('status-filter').getByText('All').click();

    // Paging follows the edge's cursors, newest first; ?limit= sets the page size.
    const r2 = await fetch(`${A.url}/v1/sessions?limit=100`, { headers: AUTH });
    const newest = (await r2.json()).sessions.map((s) => s.id);
    assert.equal(newest.length, 4);
    await page.goto(`${A.url}/ops?refresh=1000&limit=2`); // the key is still in sessionStorage
    const shown = () => page.locator('[data-testid="session-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    const showing = (ids, what) => waitFor(async () => JSON.stringify(await shown()) === JSON.stringify(ids), { timeout: 10000, what });
    await showing(newest.slice(0, 2), 'page 1');
    assert.equal(await page.getByTestId('page').textContent(), 'Page 1');
    await page.getByTestId('older').click();
    await showing(newest.slice(2, 4), 'page 2');
    assert.equal(await page.getByTestId('page').textContent(), 'Page 2');
    await page.getByTestId('newer').click();
    await showing(newest.slice(0, 2), 'page 1 again');
    assert.ok(await page.getByTestId('newer').isDisabled());
    assert.deepEqual(unexpected(page), []);
    await page.context().close();
  });

  test('a broadcast typed into the page reaches clients on the other edge; one for a session reaches only its clients', async () => {
    const [A, B] = c.edges;
    const s1 = await c.create(LONG, B.url, AUTH);
    const s2 = await c.create(LONG, B.url, AUTH);
    const x = await follow(s1, B);
    const y = await follow(s2, B);
    await c.create({ agent: 'external' }, A.url, AUTH); // waits for an outside producer: queued

    // The demo page on edge B, in a chat whose reply waits for the user's answer (connected).
    const demo = await newPage();
    await demo.goto(`${B.url}/`);
    await demo.getByTestId('api-key').fill(KEY);
    await demo.getByTestId('say').fill('/ask Still there?');
    await demo.getByTestId('send').click();
    await demo.getByTestId('ask').waitFor({ state: 'visible', timeout: 15000 });

    const page = await openOps(A);
    await row(page, s1.id).waitFor({ timeout: 10000 });
    const everyone = 'Maintenance at 18:00 UTC: streams resume by themselves.';
    await page.getByTestId('broadcast-text').fill(everyone);
    await page.getByTestId('broadcast-send').click();
    await page.getByTestId('broadcast-result').filter({ hasText: 'every connected client' }).waitFor({ timeout: 5000 });
    await waitFor(() => x.notices.length === 1 && y.notices.length === 1, { timeout: 5000, what: 'the notice on both clients' });
    assert.deepEqual(x.notices[0], { text: everyone });
    assert.deepEqual(y.notices[0], { text: everyone });
    await demo.locator('[data-testid="notice-text"]', { hasText: everyone }).waitFor({ timeout: 5000 });
    assert.ok(await demo.getByTestId('notice').isVisible());

    // Clicking a session id targets it.
    await row(page, s1.id).getByTestId('session-id').click();
    assert.equal(await page.getByTestId('broadcast-session').inputValue(), s1.id);
    await page.getByTestId('broadcast-text').fill('Only for this session');
    await page.getByTestId('broadcast-send').click();
    await page.getByTestId('broadcast-result').filter({ hasText: s1.id }).waitFor({ timeout: 5000 });
    await waitFor(() => x.notices.length === 2, { timeout: 5000, what: 'the session notice on its client' });
    assert.deepEqual(x.notices[1], { text: 'Only for this session' });
    await sleep(1000);
    assert.equal(y.notices.length, 1, 'a client of another session gets no session notice');
    assert.equal(await demo.getByTestId('notice-text').textContent(), everyone, 'nor does the demo page');
    assert.equal(await page.locator('[data-testid="broadcast-sent"] li').count(), 2);
    assert.ok(x.state === 'open' && y.state === 'open', 'notices never disturb the streams');

    await demo.getByTestId('notice-close').click();
    assert.ok(await demo.getByTestId('notice').isHidden(), 'the notice bar is dismissable');

    if (process.env.WEIR_OPS_PNG) {
      await page.getByTestId('broadcast-session').fill('');
      await page.getByTestId('broadcast-session').blur();
      await page.mouse.move(0, 0);
      await page.waitForTimeout(2500); // two refreshes: the subscribers and loads are in
      const out = path.resolve(REPO, process.env.WEIR_OPS_PNG);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      await page.screenshot({ path: out, fullPage: true });
    }
    assert.deepEqual(unexpected(page), []);
    assert.deepEqual(unexpected(demo), []);
    await demo.getByTestId('cancel').click();
    await page.context().close();
    await demo.context().close();
  });

  // Last: it kills Redis, which this harness does not bring back.
  test('with Redis gone the page says the session store is down', async () => {
    const [A] = c.edges;
    const page = await openOps(A);
    await page.locator('[data-testid="st-store"].ok').waitFor({ timeout: 10000 });
    const redis = c.procs.find((p) => p.name === 'redis');
    redis.kill('SIGKILL');
    await redis.exited;
    await page.locator('[data-testid="problem"]', { hasText: 'session store (Redis)' }).first().waitFor({ timeout: 15000 });
    await page.locator('[data-testid="st-store"].down').waitFor({ timeout: 15000 });
    assert.ok(await page.getByTestId('key-prompt').isHidden(), 'a 503 is not mistaken for a bad key');
    assert.deepEqual(unexpected(page), []);
    await page.context().close();
  });
});
