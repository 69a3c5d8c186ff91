// A real weir cluster for tests: its own nats-server (JetStream) and redis-server on free
// ports, N edges and M producers from the built binary (target/debug/weir, or $WEIR_BIN).
// Everything it starts is killed by stop(), and on process exit as a safety net.
//
//   const c = await startCluster({ edges: 2 });
//   const s = await c.createMock({ tokens: 200 });
//   ... c.edges[0].url, c.kill(c.edges[0]), c.history(s.id, s.token) ...
//   await c.stop();

import { spawn } from 'node:child_process';
import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const WEIR_BIN = process.env.WEIR_BIN || path.join(REPO, 'target/debug/weir');
export const SECRET = 'js-test-secret-0123456789abcdef-0123';
/** The pinned nats-server of scripts/setup.sh, or $WEIR_NATS_SERVER. */
export const NATS_SERVER = process.env.WEIR_NATS_SERVER || path.join(REPO, '.tools/bin/nats-server');

/** Why the cluster cannot start here (a missing program), or null. */
export function missingPrerequisite() {
  if (!fs.existsSync(WEIR_BIN)) return `weir binary not found at ${WEIR_BIN} (cargo build, or set WEIR_BIN)`;
  if (!fs.existsSync(NATS_SERVER)) return `nats-server not found at ${NATS_SERVER} (run scripts/setup.sh, or set WEIR_NATS_SERVER)`;
  if (!which('redis-server')) return 'redis-server not found on PATH';
  return null;
}

/**
 * node:test's `skip` option for an end-to-end suite that cannot run for `why`
 * (false when it can). Under WEIR_E2E_REQUIRED=1 (scripts/test.sh, CI) a
 * missing prerequisite fails the suite instead of skipping it silently.
 */
export function skipUnless(why) {
  if (!why) return false;
  if (process.env.WEIR_E2E_REQUIRED === '1') {
    throw new Error(`end-to-end prerequisite missing (WEIR_E2E_REQUIRED=1): ${why}`);
  }
  return `skipped: ${why}`;
}

function which(prog) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const f = path.join(dir, prog);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      /* next */
    }
  }
  return null;
}

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitTcp(port, ms, proc) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (proc && proc.exitCode !== null) throw new Error(`${proc.name} exited with ${proc.exitCode} before listening:\n${proc.tail()}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms${proc ? `:\n${proc.tail()}` : ''}`);
}

async function waitHttp200(url, ms, proc) {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < ms) {
    if (proc && proc.exitCode !== null) throw new Error(`${proc.name} exited with ${proc.exitCode}:\n${proc.tail()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      last = `HTTP ${r.status} ${await r.text()}`;
      if (r.status === 200) return;
    } catch (e) {
      last = String(e?.cause?.code ?? e?.message ?? e);
    }
    await sleep(100);
  }
  throw new Error(`GET ${url} not 200 after ${ms} ms (last: ${last})${proc ? `:\n${proc.tail()}` : ''}`);
}

/** Every child process still alive, so that an exiting test run never leaves one behind. */
const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function launch(name, cmd, args, dir, env = {}) {
  const logFile = path.join(dir, `${name}.log`);
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    stdio: ['ignore', out, out],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...env },
  });
  fs.closeSync(out);
  child.name = name;
  child.logFile = logFile;
  child.tail = (n = 40) => {
    try {
      return fs.readFileSync(logFile, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '(no log)';
    }
  };
  child.exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * Starts nats-server, redis-server, `edges` edges and `producers` producers.
 * @param {{edges?: number, producers?: number, edgeArgs?: string[], producerArgs?: string[], edgeEnv?: object, readyTimeout?: number}} [opts]
 */
export async function startCluster(opts = {}) {
  const why = missingPrerequisite();
  if (why) throw new Error(why);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-js-'));
  const readyTimeout = opts.readyTimeout ?? 30000;
  const procs = [];
  const c = {
    dir,
    procs,
    edges: [],
    producers: [],
    natsUrl: '',
    redisUrl: '',
  };
  try {
    const natsPort = await freePort();
    const nats = launch('nats', NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(dir, 'js')], dir);
    procs.push(nats);
    const redisPort = await freePort();
    const redis = launch('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], dir);
    procs.push(redis);
    await waitTcp(natsPort, 10000, nats);
    await waitTcp(redisPort, 10000, redis);
    c.natsUrl = `nats://127.0.0.1:${natsPort}`;
    c.redisUrl = `redis://127.0.0.1:${redisPort}`;

    const names = 'abcdefghijklmnopqrstuvwxyz';
    for (let i = 0; i < (opts.edges ?? 2); i++) {
      const port = await freePort();
      const edge = {
        name: `edge-${names[i]}`,
        port,
        url: `http://127.0.0.1:${port}`,
        args: [
          'edge', '--listen', `127.0.0.1:${port}`, '--nats-url', c.natsUrl, '--redis-url', c.redisUrl,
          '--node-id', `edge-${names[i]}`, '--secret', SECRET, ...(opts.edgeArgs ?? []),
        ],
        proc: null,
      };
      c.edges.push(edge);
    }
    for (let i = 0; i < (opts.producers ?? 1); i++) {
      const port = await freePort();
      c.producers.push({
        name: `prod-${i + 1}`,
        port,
        url: `http://127.0.0.1:${port}`,
        args: [
          'producer', '--nats-url', c.natsUrl, '--redis-url', c.redisUrl, '--node-id', `prod-${i + 1}`,
          '--metrics-listen', `127.0.0.1:${port}`, ...(opts.producerArgs ?? []),
        ],
        proc: null,
      });
    }
    const startNode = (n) => {
      n.proc = launch(n.name, WEIR_BIN, n.args, dir, opts.edgeEnv ?? {});
      procs.push(n.proc);
    };
    const waitNode = async (n) => {
      await waitHttp200(`${n.url}/healthz`, readyTimeout, n.proc);
      await waitHttp200(`${n.url}/readyz`, readyTimeout, n.proc);
    };
    [...c.edges, ...c.producers].forEach(startNode);
    await Promise.all([...c.edges, ...c.producers].map(waitNode));

    /** SIGKILLs a node (edge or producer) and waits until it is gone. */
    c.kill = async (node) => {
      if (!node.proc || node.proc.exitCode !== null || node.proc.signalCode) return;
      node.proc.kill('SIGKILL');
      await node.proc.exited;
    };
    /** Sends a signal (e.g. SIGTERM: graceful drain) and waits until the node exits. */
    c.signal = async (node, sig, { timeout = 30000 } = {}) => {
      if (!node.proc || node.proc.exitCode !== null || node.proc.signalCode) return;
      node.proc.kill(sig);
      const t = setTimeout(() => node.proc.kill('SIGKILL'), timeout);
      await node.proc.exited;
      clearTimeout(t);
    };
    /** Starts a killed node again on the same port. */
    c.restart = async (node) => {
      await c.kill(node);
      startNode(node);
      await waitNode(node);
    };
    /** Logs of every process, for a failure message. */
    c.logs = (n = 30) => procs.map((p) => `--- ${p.name} (${p.logFile})\n${p.tail(n)}`).join('\n');
    c.stop = async () => {
      for (const p of procs) {
        if (p.exitCode === null && !p.signalCode) p.kill('SIGKILL');
      }
      await Promise.all(procs.map((p) => p.exited));
      if (!process.env.WEIR_KEEP_LOGS) fs.rmSync(dir, { recursive: true, force: true });
    };
    c.createMock = (input = {}, base = c.edges[0].url) =>
      c.create({ agent: 'mock', input: { tokens: 200, rate: 0, seed: 1, ...input } }, base);
    c.create = async (body, base = c.edges[0].url, headers = {}) => {
      const r = await fetch(`${base}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
      const text = await r.text();
      if (r.status !== 201) throw new Error(`POST /v1/sessions ${JSON.stringify(body)} → ${r.status} ${text}`);
      return JSON.parse(text);
    };
    /** Every stored event of a session, following next_after. */
    c.history = async (id, token, base = c.edges.find((e) => e.proc.exitCode === null && !e.proc.signalCode)?.url ?? c.edges[0].url) => {
      const events = [];
      let after = 0;
      for (;;) {
        const url = `${base}/v1/sessions/${id}/history?after=${after}&limit=1000&token=${encodeURIComponent(token)}`;
        const r = await fetch(url);
        const text = await r.text();
        if (r.status !== 200) throw new Error(`GET ${url} → ${r.status} ${text}`);
        const page = JSON.parse(text);
        events.push(...page.events);
        if (page.events.length === 0 || page.next_after <= after) return events;
        after = page.next_after;
      }
    };
    c.state = async (id, token, base = c.edges[0].url) => {
      const r = await fetch(`${base}/v1/sessions/${id}?token=${encodeURIComponent(token)}`);
      if (r.status !== 200) throw new Error(`GET /v1/sessions/${id} → ${r.status} ${await r.text()}`);
      return r.json();
    };
    return c;
  } catch (e) {
    const logs = procs.map((p) => `--- ${p.name}\n${p.tail(20)}`).join('\n');
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    throw new Error(`cluster did not start: ${e.message}\n${logs}`);
  }
}

/** An HS256 JWT signed with the test secret: what an edge would issue for `sub`. */
export function signToken(sub, { secret = SECRET, ttl = 3600 } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: now + ttl, iat: now })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/**
 * An identity provider: an RSA key whose public half its JWK set (served on
 * loopback at `url`, for `--jwks-url`) publishes under `kid`, and `sign(sub,
 * {ttl})` for an RS256 token it would issue. `close()` stops the server.
 */
export async function startProvider({ kid = 'js-rsa-1' } = {}) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return {
    url: `http://127.0.0.1:${server.address().port}/jwks.json`,
    sign(sub, { ttl = 3600 } = {}) {
      const now = Math.floor(Date.now() / 1000);
      const head = `${b64({ alg: 'RS256', typ: 'JWT', kid })}.${b64({ sub, exp: now + ttl, iat: now })}`;
      return `${head}.${sign('sha256', Buffer.from(head), privateKey).toString('base64url')}`;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A session id that exists nowhere. */
export function randomId() {
  return 'nx' + randomBytes(8).toString('hex');
}

/** The client's files as the edges serve them: `{route: path in the checkout}` (WEIR_DEMO_FROM_SOURCE). */
export function clientFiles() {
  const files = { '/weir-client.js': 'clients/js/weir-client.js' };
  for (const f of fs.readdirSync(path.join(REPO, 'clients/js/weir-client'))) files[`/weir-client/${f}`] = `clients/js/weir-client/${f}`;
  return files;
}

/** The concatenated text of the token events. */
export function tokenText(events) {
  return events.filter((e) => e.kind === 'token').map((e) => e.data.text).join('');
}
