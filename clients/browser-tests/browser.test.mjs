// Herald in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core — no browser download) against `herald dev`, plus a push published with kcat
// (librdkafka's command-line client) from outside Rust.
//
// Run by scripts/test-browser.sh, which installs what is missing and sets:
//   HERALD_BIN       the `herald` binary
//   PLAYWRIGHT_CORE  path of the playwright-core package
//   CHROMIUM         the browser executable
//   OUT_DIR          where screenshots go
//
// Every wait has a generous stated bound; nothing asserts an absolute time.
//
// The drain and reconnect-ask scenarios run their own `herald dev` (`--edges 2`, or a short
// `--max-lifetime`), so the shared one keeps its single edge for the other tests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { readFile, mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_SRC = path.join(HERE, '..', 'js', 'src');
const OUT_DIR = process.env.OUT_DIR ?? path.join(HERE, 'out');
const PATIENCE_MS = 60_000;

const { chromium } = createRequire(import.meta.url)(process.env.PLAYWRIGHT_CORE);

let dev; // the herald dev child
let ready; // HERALD_READY fields
let browser;
const servers = [];
let pageOrigin; // allowed
let foreignOrigin; // not allowed

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A port p with p + 1 also free (for `herald dev --edges 2`, which uses the next ports). */
async function freePortPair() {
  for (;;) {
    const p = await freePort();
    const ok = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p + 1, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok && p + 1 < 65536) return p;
  }
}

/** Starts `herald dev` with `args` and resolves to { child, ready } at its HERALD_READY line. */
async function startDev(args) {
  const child = spawn(process.env.HERALD_BIN, ['dev', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });
  const fields = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`herald dev printed no HERALD_READY in 120 s:\n${out}\n${stderr}`)), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('HERALD_READY '));
      if (line) {
        clearTimeout(timer);
        resolve(Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split(/=(.*)/s).slice(0, 2))));
      }
    });
    child.on('exit', (code) => reject(new Error(`herald dev exited ${code}:\n${stderr}`)));
  });
  return { child, ready: fields, stderr: () => stderr };
}

async function stopDev(d) {
  if (!d || d.child.exitCode !== null) return;
  d.child.kill('SIGTERM');
  await new Promise((r) => { d.child.on('exit', r); setTimeout(r, 15_000); });
}

/** A static server for the test page and the client's modules, on another origin than the edge. */
async function pageServer(port) {
  const html = '<!doctype html><meta charset="utf-8"><title>herald browser test</title><p>test page</p>';
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(html);
      return;
    }
    const m = url.pathname.match(/^\/client\/([a-z]+\.js)$/);
    if (m) {
      try {
        const src = await readFile(path.join(CLIENT_SRC, m[1]));
        res.writeHead(200, { 'Content-Type': 'text/javascript' });
        res.end(src);
        return;
      } catch {
        /* fall through */
      }
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  servers.push(server);
  return `http://127.0.0.1:${port}`;
}

async function until(what, f, timeoutMs = PATIENCE_MS) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function token(user) {
  const r = await fetch(`${ready.admin}/demo/token?user=${encodeURIComponent(user)}`);
  assert.equal(r.status, 200);
  return r.text();
}

async function send(user, payload, priority = 'normal') {
  const r = await fetch(`${ready.admin}/demo/send`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, payload, priority }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  return body.id;
}

async function stats() {
  const r = await fetch(`${ready.admin}/stats`);
  return r.json();
}

function rejects(s, status) {
  return s.shards.reduce((n, sh) => n + (sh.probe.handshake_rejects?.[status] ?? 0), 0);
}

/** Sends numbered warm-up pushes to `user` until `received()` sees one: the connection is then
 * registered and routed (a push to a user not yet in the registry is settled offline). */
async function warmUp(user, received, admin = ready.admin) {
  let n = 0;
  await until(`a warm-up push to reach ${user}`, async () => {
    if (await received()) return true;
    await sendVia(admin, user, `warmup-${n++}`);
    await new Promise((r) => setTimeout(r, 300));
    return received();
  });
}

before(async () => {
  await mkdir(OUT_DIR, { recursive: true });
  const [edgePort, adminPort, pagePort, foreignPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  pageOrigin = await pageServer(pagePort);
  foreignOrigin = await pageServer(foreignPort);
  dev = spawn(
    process.env.HERALD_BIN,
    ['dev', '--listen', `127.0.0.1:${edgePort}`, '--admin', `127.0.0.1:${adminPort}`, '--allowed-origins', pageOrigin, '--shards', '2'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  dev.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });
  ready = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`herald dev printed no HERALD_READY in 120 s:\n${out}\n${stderr}`)), 120_000);
    dev.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('HERALD_READY '));
      if (line) {
        clearTimeout(timer);
        resolve(Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split(/=(.*)/s).slice(0, 2))));
      }
    });
    dev.on('exit', (code) => reject(new Error(`herald dev exited ${code}:\n${stderr}`)));
  });
  for (const key of ['ws', 'sse', 'kafka', 'admin', 'demo']) assert.ok(ready[key], `HERALD_READY has ${key}=`);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  if (dev) {
    dev.kill('SIGTERM');
    await new Promise((r) => { dev.on('exit', r); setTimeout(r, 15_000); });
  }
  for (const s of servers) s.close();
});

const PAYLOADS = ['plain text', 'line one\nline two\nline three', 'héllo wörld ✓ 👋 日本語', 'x'.repeat(64 * 1024)];

test('a page on another origin receives pushes over WebSocket and EventSource', async () => {
  const page = await browser.newPage();
  await page.goto(pageOrigin);
  const wsToken = await token('ws-user');
  const sseToken = await token('sse-user');
  await page.evaluate(([ws, sse, wsToken, sseToken]) => {
    window.wsGot = [];
    window.sseGot = [];
    window.opened = { ws: false, sse: false };
    const s = new WebSocket(`${ws}?access_token=${wsToken}`);
    s.onopen = () => { window.opened.ws = true; };
    s.onmessage = (e) => window.wsGot.push(e.data);
    const es = new EventSource(`${sse}?access_token=${sseToken}`);
    es.onopen = () => { window.opened.sse = true; };
    es.onmessage = (e) => window.sseGot.push(e.data);
  }, [ready.ws, ready.sse, wsToken, sseToken]);
  await until('both sockets to open', () => page.evaluate(() => window.opened.ws && window.opened.sse));
  await warmUp('ws-user', () => page.evaluate(() => window.wsGot.length > 0));
  await warmUp('sse-user', () => page.evaluate(() => window.sseGot.length > 0));
  for (const p of PAYLOADS) {
    await send('ws-user', p);
    await send('sse-user', p);
  }
  const real = (list) => list.filter((m) => !m.startsWith('warmup-'));
  await until('every payload on both', () =>
    page.evaluate(() => [window.wsGot, window.sseGot]).then(([a, b]) => real(a).length >= 4 && real(b).length >= 4));
  const [wsGot, sseGot] = await page.evaluate(() => [window.wsGot, window.sseGot]);
  assert.deepEqual(real(wsGot), PAYLOADS, 'WebSocket: text, multi-line, non-ASCII, 64 KiB, in order');
  assert.deepEqual(real(sseGot), PAYLOADS, 'EventSource: the same');
  await page.close();
});

test('a page on an origin outside the allow-list is refused', async () => {
  const before = rejects(await stats(), '403');
  const page = await browser.newPage();
  await page.goto(foreignOrigin);
  const t = await token('foreign-user');
  const result = await page.evaluate(([ws, sse, t]) => new Promise((resolve) => {
    const r = { wsOpened: false, wsClosed: false, sseOpened: false, sseFailed: false };
    const s = new WebSocket(`${ws}?access_token=${t}`);
    s.onopen = () => { r.wsOpened = true; };
    s.onclose = () => { r.wsClosed = true; };
    const es = new EventSource(`${sse}?access_token=${t}`);
    es.onopen = () => { r.sseOpened = true; };
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) { r.sseFailed = true; es.close(); } };
    const check = setInterval(() => {
      if (r.wsClosed && r.sseFailed) { clearInterval(check); resolve(r); }
    }, 50);
    setTimeout(() => { clearInterval(check); resolve(r); }, 60_000);
  }), [ready.ws, ready.sse, t]);
  assert.deepEqual(result, { wsOpened: false, wsClosed: true, sseOpened: false, sseFailed: true });
  await until('the edge to count both 403s', async () => rejects(await stats(), '403') >= before + 2);
  await page.close();
});

test('the client surfaces a bad token as errors without a reconnect storm', async () => {
  const page = await browser.newPage();
  await page.goto(pageOrigin);
  const before = rejects(await stats(), '401');
  const seen = await page.evaluate(async ([url]) => {
    const { HeraldClient } = await import('/client/index.js');
    const seen = { connecting: 0, errors: 0, connected: 0 };
    const c = new HeraldClient({ url, getToken: () => 'not-a-token' });
    c.on('connecting', () => { seen.connecting += 1; });
    c.on('error', () => { seen.errors += 1; });
    c.on('connected', () => { seen.connected += 1; });
    c.start();
    await new Promise((r) => setTimeout(r, 6000));
    c.close();
    return seen;
  }, [ready.ws.replace(/^ws/, 'http').replace(/\/ws$/, '')]);
  const refused = rejects(await stats(), '401') - before;
  assert.equal(seen.connected, 0);
  assert.ok(seen.errors >= 1, `errors surfaced: ${JSON.stringify(seen)}`);
  // Capped exponential backoff with jitter: a handful of attempts in 6 s, not a storm.
  assert.ok(seen.connecting >= 1 && seen.connecting <= 10, `attempts in 6 s: ${JSON.stringify(seen)}`);
  assert.ok(refused >= 1 && refused <= 10, `401s at the edge in 6 s: ${refused}`);
  await page.close();
});

test('the demo page shows a push sent from its form', async () => {
  const page = await browser.newPage();
  await page.goto(ready.demo);
  await until('the demo to connect', async () => (await page.textContent('#state')) === 'connected');
  // The page's client is registered once a push reaches it (see warmUp).
  await warmUp('alice', async () => (await page.locator('li.push').count()) > 0);
  const text = `from the demo form ${Date.now()} ✓`;
  await page.fill('#payload', text);
  await page.click('#send-button');
  await until('the push to show', async () => (await page.locator('li.push', { hasText: text }).count()) === 1);
  const shot = path.join(OUT_DIR, 'demo.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  await page.close();
});

test('a push published with kcat (outside Rust) reaches an SSE client', async () => {
  const kcat = spawnSync('sh', ['-c', 'command -v kcat || command -v kafkacat'], { encoding: 'utf8' }).stdout.trim();
  assert.ok(kcat, 'kcat is installed');
  const t = await token('kcat-user');
  const ctl = new AbortController();
  const res = await fetch(`${ready.sse}?access_token=${t}`, { signal: ctl.signal });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let stream = '';
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ done: true }));
      if (done) return;
      stream += decoder.decode(value, { stream: true });
    }
  })();
  let n = 0;
  const payload = () => `from kcat ${n} ✓`;
  await until('a kcat push to arrive', async () => {
    n += 1;
    const r = spawnSync(kcat, ['-P', '-b', ready.kafka, '-t', 'herald.push.normal', '-k', 'kcat-user',
      '-H', 'herald-target=kcat-user', '-H', `herald-id=kcat-${n}`], { input: payload(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    await new Promise((r) => setTimeout(r, 500));
    return stream.includes('data: from kcat');
  });
  const event = stream.split('\n\n').find((e) => e.includes('data: from kcat'));
  // herald dev keeps history: the SSE id is the push's position (without history it would be
  // the herald-id header).
  assert.match(event, /^id: [0-9a-f]{16}:\d+-\d+$/m, 'the SSE id is a resumable position');
  assert.match(event, /^data: from kcat \d+ ✓$/m);
  ctl.abort();
  await pump;
});

// ---- moving between edges: a drain, a reconnect ask -------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function sendVia(admin, user, payload) {
  const r = await fetch(`${admin}/demo/send`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, payload }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  return body.id;
}

/** `ws://host:port/ws` → `http://host:port` (the client's base URL). */
const baseOf = (ws) => ws.replace(/^ws/, 'http').replace(/\/ws$/, '');

/**
 * A page on the allowed origin holds a push stream with the client (`urls`, one transport);
 * pushes numbered seq-0, seq-1, … are sent one after another the whole time through `admin`;
 * `leave()` makes the edge ask the client to go (a drain, or nothing: the lifetime runs out);
 * after `moves` reconnections the sending stops. Every numbered push must arrive exactly once
 * and in order. Returns what the page saw, for the scenario's own assertions.
 */
async function moveScenario({ name, user, transport, urls, admin, leave, moves }) {
  const page = await browser.newPage();
  await page.goto(pageOrigin);
  const r = await fetch(`${admin}/demo/token?user=${encodeURIComponent(user)}`);
  assert.equal(r.status, 200);
  const jwt = await r.text();
  await page.evaluate(async ([urls, jwt, transport, title]) => {
    const { HeraldClient } = await import('/client/index.js');
    document.body.innerHTML = `<h3>${title}</h3><pre id="events"></pre>`;
    window.got = [];
    window.events = [];
    window.recoveries = [];
    const note = (line) => {
      window.events.push(line);
      document.querySelector('#events').textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
    };
    const c = new HeraldClient({ urls, transports: [transport], getToken: () => jwt });
    c.on('connecting', ({ url }) => note(`connecting ${url}`));
    c.on('connected', ({ transport }) => note(`connected ${transport}`));
    c.on('disconnected', ({ reason, askReason }) => note(`disconnected ${reason}${askReason ? ` (${askReason})` : ''}`));
    c.on('error', ({ kind }) => note(`error ${kind}`));
    c.on('recovery', (r) => {
      window.recoveries.push(r);
      note(`recovery ${JSON.stringify({ recovered: r.recovered, count: r.count, reason: r.reason })} from ${c.lastEventId ?? '-'}`);
    });
    c.on('push', ({ data }) => window.got.push(data));
    window.client = c;
    c.start();
  }, [urls, jwt, transport, name]);
  const connects = () => page.evaluate(() => window.events.filter((e) => e.startsWith('connected')).length);
  await until('the client to connect', async () => (await connects()) >= 1);
  await warmUp(user, () => page.evaluate(() => window.got.length > 0), admin);

  const sent = [];
  let sending = true;
  const sender = (async () => {
    for (let i = 0; sending; i++) {
      await sendVia(admin, user, `seq-${i}`);
      sent.push(`seq-${i}`);
      await sleep(30);
    }
  })();
  await sleep(1000);
  const before = await connects();
  await leave();
  await until(`${moves} reconnection(s)`, async () => (await connects()) >= before + moves);
  await sleep(1500); // and pushes after the move
  sending = false;
  await sender;
  const numbered = () => page.evaluate(() => window.got.filter((x) => x.startsWith('seq-')));
  await until(`all ${sent.length} numbered pushes`, async () => (await numbered()).length >= sent.length, 30_000).catch(() => {});
  await sleep(500); // a late duplicate would show up now
  const got = await numbered();
  const seen = await page.evaluate(() => ({
    events: window.events,
    recoveries: window.recoveries,
    duplicates: window.client.duplicates,
    url: window.client.url,
  }));
  const shot = path.join(OUT_DIR, `${name}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  await page.evaluate(() => window.client.close());
  await page.close();
  console.log(`${name}: ${sent.length} numbered pushes sent, ${got.length} received, ${seen.duplicates} duplicate(s) dropped by the client; recoveries ${JSON.stringify(seen.recoveries)}; screenshot: ${shot}`);
  console.log(`${name}: events: ${seen.events.join(' | ')}`);
  const missing = sent.filter((x) => !got.includes(x));
  assert.deepEqual(missing, [], 'no push sent during the move is lost');
  assert.equal(new Set(got).size, got.length, 'each push once');
  assert.deepEqual(got, sent, 'in order');
  return seen;
}

for (const transport of ['websocket', 'sse']) {
  test(`${transport}: the client follows a drain onto the second edge without losing a push sent during the move`, async () => {
    const [listen, adminPort] = await Promise.all([freePortPair(), freePortPair()]);
    const d = await startDev([
      '--edges', '2', '--listen', `127.0.0.1:${listen}`, '--admin', `127.0.0.1:${adminPort}`,
      '--allowed-origins', pageOrigin, '--shards', '2',
    ]);
    try {
      for (const key of ['ws', 'ws2', 'sse', 'sse2', 'admin', 'admin2', 'demo', 'demo2']) assert.ok(d.ready[key], `HERALD_READY has ${key}=`);
      const edge1 = baseOf(d.ready.ws);
      const edge2 = baseOf(d.ready.ws2);
      const seen = await moveScenario({
        name: `drain-${transport}`,
        user: `mover-${transport}`,
        transport,
        urls: [edge1, edge2],
        admin: d.ready.admin2, // edge 1's admin goes away with its drain
        leave: async () => {
          const r = await fetch(`${d.ready.admin}/admin/drain`, { method: 'POST' });
          assert.equal(r.status, 202);
        },
        moves: 1,
      });
      assert.equal(seen.events.find((e) => e.startsWith('connecting')), `connecting ${edge1}`, 'started on edge 1');
      assert.ok(seen.events.some((e) => e.startsWith('disconnected reconnect')), `asked to reconnect: ${seen.events}`);
      assert.equal(seen.events.filter((e) => e.startsWith('connecting')).at(-1), `connecting ${edge2}`, 'ended on edge 2');
      assert.ok(seen.recoveries.length >= 1 && seen.recoveries.every((r) => r.recovered), `resumed: ${JSON.stringify(seen.recoveries)}`);
    } finally {
      await stopDev(d);
    }
  });
}

test('websocket: the client follows reconnect asks (connection lifetime) on one edge without losing a push', async () => {
  const [listen, adminPort] = await Promise.all([freePort(), freePort()]);
  const d = await startDev([
    '--listen', `127.0.0.1:${listen}`, '--admin', `127.0.0.1:${adminPort}`,
    '--allowed-origins', pageOrigin, '--shards', '2', '--max-lifetime', '3s',
  ]);
  try {
    const seen = await moveScenario({
      name: 'lifetime-websocket',
      user: 'lifetime-user',
      transport: 'websocket',
      urls: [baseOf(d.ready.ws)],
      admin: d.ready.admin,
      leave: async () => {},
      moves: 2,
    });
    assert.ok(seen.events.some((e) => e === 'disconnected reconnect (lifetime)'), `asked by lifetime: ${seen.events}`);
    assert.ok(seen.recoveries.length >= 2 && seen.recoveries.every((r) => r.recovered), `resumed: ${JSON.stringify(seen.recoveries)}`);
  } finally {
    await stopDev(d);
  }
});
