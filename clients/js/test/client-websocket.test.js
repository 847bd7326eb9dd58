// HeraldClient over WebSocket, driven with a fake socket and a virtual clock: the herald.v1
// session, plain mode, de-duplication, getToken per attempt, the reconnect ask, replaced,
// failed handshakes and the backoff.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { HeraldClient } from '../src/index.js';
import {
  FakeClock,
  fakeEventSourceClass,
  fakeWebSocketClass,
  query,
  recordEvents,
  seededRandom,
  settle,
} from './helpers/fakes.js';

/** A position as the edge hands it out. */
const P = (seq) => `00c0ffee12345678:1764700000000-${seq}`;

/** A client on fakes; returns the parts a test drives. */
function setup(options = {}) {
  const WebSocket = fakeWebSocketClass();
  const EventSource = fakeEventSourceClass();
  const clock = new FakeClock();
  let tokens = 0;
  const client = new HeraldClient({
    url: 'http://edge.test:8080',
    getToken: () => `token-${++tokens}`,
    WebSocket,
    EventSource,
    transports: ['websocket'],
    timers: clock,
    random: seededRandom(42),
    backoff: { baseMs: 1000, capMs: 30000 },
    healthyAfterMs: 10000,
    ...options,
  });
  const log = recordEvents(client);
  return { client, WebSocket, EventSource, clock, log, tokenCount: () => tokens };
}

/** Starts the client and completes a herald.v1 session: open + welcome. */
async function connect(t, device = 'd-1') {
  const before = t.WebSocket.all.length;
  if (t.client.state === 'idle' || t.client.state === 'stopped') t.client.start();
  await settle();
  assert.equal(t.WebSocket.all.length, before + 1, 'one new socket');
  const ws = t.WebSocket.last;
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device, ping_ms: 30000 });
  assert.equal(t.client.state, 'connected');
  return ws;
}

test('offers herald.v1, sends the token, and is connected at the welcome', async () => {
  const t = setup();
  t.client.start();
  assert.equal(t.client.state, 'connecting');
  await settle();
  const ws = t.WebSocket.last;
  assert.deepEqual(ws.protocols, ['herald.v1']);
  assert.equal(ws.binaryType, 'arraybuffer');
  const url = new URL(ws.url);
  assert.equal(url.origin + url.pathname, 'ws://edge.test:8080/ws');
  assert.deepEqual(query(ws.url), { access_token: 'token-1' });

  ws.serverOpen();
  assert.deepEqual(t.log.types(), ['connecting'], 'herald.v1 waits for the welcome');
  ws.serverSend({ type: 'welcome', device: 'd-abc', ping_ms: 30000 });
  assert.deepEqual(t.log.of('connecting'), [{ transport: 'websocket', url: 'http://edge.test:8080', attempt: 1 }]);
  assert.deepEqual(t.log.of('connected'), [{ transport: 'websocket', protocol: 'herald.v1', device: 'd-abc', pingMs: 30000 }]);
  assert.equal(t.client.device, 'd-abc');
});

test('pushes arrive as push events; binary ones as bytes', async () => {
  const t = setup();
  const ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'm1', data: 'hello\nworld ✓' });
  ws.serverSend({ type: 'push', id: 'm2', data: Buffer.from([0, 1, 254, 255]).toString('base64'), encoding: 'base64' });
  ws.serverSend({ type: 'push', id: 'm3', data: 'with pos', pos: P(100) });
  const pushes = t.log.of('push');
  assert.equal(pushes.length, 3);
  assert.deepEqual(pushes[0], { id: 'm1', data: 'hello\nworld ✓', binary: false, transport: 'websocket' });
  assert.equal(pushes[1].binary, true);
  assert.deepEqual([...pushes[1].data], [0, 1, 254, 255]);
  assert.equal(pushes[2].pos, P(100));
  assert.equal(t.client.lastEventId, P(100));
});

test('a push seen within the window is dropped, also across a reconnect', async () => {
  const t = setup({ dedupWindow: 2 });
  let ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'a', data: '1' });
  ws.serverSend({ type: 'push', id: 'a', data: '1 again' });
  ws.serverSend({ type: 'push', id: 'b', data: '2' });
  ws.serverClose(1006);
  t.clock.runNext();
  await settle();
  ws = t.WebSocket.last;
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device: 'd-1' });
  ws.serverSend({ type: 'push', id: 'b', data: '2 redelivered' });
  ws.serverSend({ type: 'push', id: 'c', data: '3' });
  ws.serverSend({ type: 'push', id: 'a', data: 'a left the window of 2 (b, c)' });
  assert.deepEqual(t.log.of('push').map((p) => p.data), ['1', '2', '3', 'a left the window of 2 (b, c)']);
  assert.equal(t.client.duplicates, 2);
});

test('plain mode: the edge did not take herald.v1, payloads arrive verbatim without ids', async () => {
  const t = setup();
  t.client.start();
  await settle();
  const ws = t.WebSocket.last;
  ws.serverOpen('');
  assert.deepEqual(t.log.of('connected'), [{ transport: 'websocket', protocol: 'plain' }]);
  ws.serverSend('{"type":"push","id":"x","data":"not parsed in plain mode"}');
  ws.serverSend(Uint8Array.from([1, 2, 3]).buffer);
  ws.serverSend('same');
  ws.serverSend('same');
  const pushes = t.log.of('push');
  assert.equal(pushes[0].data, '{"type":"push","id":"x","data":"not parsed in plain mode"}');
  assert.equal(pushes[0].id, undefined);
  assert.deepEqual([...pushes[1].data], [1, 2, 3]);
  assert.equal(pushes[1].binary, true);
  assert.equal(pushes.length, 4, 'without ids nothing is de-duplicated');
});

test('unknown message types are ignored; malformed ones surface as protocol errors', async () => {
  const t = setup();
  const ws = await connect(t);
  ws.serverSend({ type: 'future-thing', x: 1 });
  ws.serverSend('not json');
  ws.serverSend(new Uint8Array([1]).buffer);
  ws.serverSend({ type: 'push', id: 'ok', data: 'still connected' });
  const errors = t.log.of('error');
  assert.equal(errors.length, 2);
  assert.ok(errors.every((e) => e.kind === 'protocol' && e.transport === 'websocket'));
  assert.equal(errors[0].error.name, 'HeraldProtocolError');
  assert.equal(t.client.state, 'connected');
  assert.deepEqual(t.log.of('push').map((p) => p.id), ['ok']);
});

test('only positions are resume points: pushes without pos leave lastEventId alone', async () => {
  const t = setup();
  const ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'h1', data: 'no history' });
  assert.equal(t.client.lastEventId, undefined);
  ws.serverSend({ type: 'push', id: 'h2', pos: P(7), data: 'with history' });
  ws.serverSend({ type: 'push', id: 'h3', data: 'no history again' });
  ws.serverSend({ type: 'push', id: 'h4', pos: 'garbage', data: 'a pos that is not a position' });
  assert.equal(t.client.lastEventId, P(7));
  ws.serverClose(1006);
  t.clock.runNext();
  await settle();
  assert.equal(t.WebSocket.last.url, `ws://edge.test:8080/ws?access_token=token-2&last_event_id=00c0ffee12345678%3A1764700000000-7`);
});

test('resume after a drop: recovery, the replayed pushes (duplicates dropped by id), then live ones', async () => {
  const t = setup();
  let ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'a', pos: P(1), data: '1' });
  ws.serverSend({ type: 'push', id: 'b', pos: P(2), data: '2' });
  ws.serverClose(1006);
  t.clock.runNext();
  await settle();
  ws = t.WebSocket.last;
  assert.equal(query(ws.url).last_event_id, P(2));
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device: 'd-1' });
  ws.serverSend({ type: 'recovery', recovered: true, count: 2 });
  ws.serverSend({ type: 'push', id: 'b', pos: P(2), data: '2' }); // delivered twice (at-least-once)
  ws.serverSend({ type: 'push', id: 'c', pos: P(3), data: '3' });
  ws.serverSend({ type: 'push', id: 'd', pos: P(4), data: '4 live' });
  assert.deepEqual(t.log.of('recovery'), [{ recovered: true, count: 2, transport: 'websocket' }]);
  assert.deepEqual(t.log.of('push').map((p) => p.data), ['1', '2', '3', '4 live']);
  assert.equal(t.client.duplicates, 1);
  assert.equal(t.client.lastEventId, P(4));
});

test('recovery false is forwarded with its reason, before the live pushes', async () => {
  const t = setup({ lastEventId: P(1) });
  const ws = await connect(t);
  ws.serverSend({ type: 'recovery', recovered: false, reason: 'too_old' });
  ws.serverSend({ type: 'push', id: 'r1', pos: P(9), data: 'live' });
  assert.deepEqual(t.log.types().slice(-2), ['recovery', 'push']);
  assert.deepEqual(t.log.of('recovery'), [{ recovered: false, reason: 'too_old', transport: 'websocket' }]);
});

test('recovery false with malformed_position forgets the position it was given', async () => {
  const t = setup({ lastEventId: 'saved-by-an-old-version' });
  const ws = await connect(t);
  assert.equal(query(ws.url).last_event_id, 'saved-by-an-old-version');
  ws.serverSend({ type: 'recovery', recovered: false, reason: 'malformed_position' });
  assert.equal(t.client.lastEventId, undefined);
  ws.serverClose(1006);
  t.clock.runNext();
  await settle();
  assert.equal(query(t.WebSocket.last.url).last_event_id, undefined);
});

test('urls: the first connect uses the first edge, every reconnect the next one (round robin)', async () => {
  const t = setup({ url: undefined, urls: ['http://edge-1.test', 'https://edge-2.test/push'] });
  assert.equal(t.client.url, 'http://edge-1.test');
  let ws = await connect(t);
  assert.equal(new URL(ws.url).origin, 'ws://edge-1.test');
  ws.serverSend({ type: 'push', id: 'a', pos: P(1), data: '1' });
  ws.serverSend({ type: 'reconnect', reason: 'drain', retry_ms: 10 });
  assert.equal(t.client.url, 'https://edge-2.test/push', 'the next attempt goes to the other edge');
  t.clock.runNext();
  await settle();
  ws = t.WebSocket.last;
  const u = new URL(ws.url);
  assert.equal(u.origin + u.pathname, 'wss://edge-2.test/push/ws');
  assert.equal(u.searchParams.get('last_event_id'), P(1), 'resumes on the other edge');
  assert.deepEqual(t.log.of('connecting').map((c) => c.url), ['http://edge-1.test', 'https://edge-2.test/push']);
  ws.failHandshake();
  t.clock.runNext();
  await settle();
  assert.equal(new URL(t.WebSocket.last.url).origin, 'ws://edge-1.test', 'wraps around after a failure');
});

test('url and urls: exactly one of them, every entry a usable URL', () => {
  const WebSocket = fakeWebSocketClass();
  assert.throws(() => new HeraldClient({ WebSocket }), TypeError);
  assert.throws(() => new HeraldClient({ urls: [], WebSocket }), TypeError);
  assert.throws(() => new HeraldClient({ url: 'http://a', urls: ['http://b'], WebSocket }), TypeError);
  assert.throws(() => new HeraldClient({ urls: ['http://a', 'ftp://b'], WebSocket }), TypeError);
  assert.equal(new HeraldClient({ urls: [new URL('http://a/x')], WebSocket }).url, 'http://a/x');
});

test('getToken is called before every attempt, async tokens included', async () => {
  let n = 0;
  const t = setup({
    getToken: async () => {
      await settle();
      n += 1;
      return `async-${n}`;
    },
  });
  t.client.start();
  await settle();
  await settle();
  assert.equal(query(t.WebSocket.last.url).access_token, 'async-1');
  t.WebSocket.last.failHandshake();
  for (let i = 2; i <= 4; i++) {
    t.clock.runNext();
    await settle();
    await settle();
    assert.equal(t.WebSocket.all.length, i);
    assert.equal(query(t.WebSocket.last.url).access_token, `async-${i}`, 'a fresh token each time');
    if (i < 4) t.WebSocket.last.failHandshake();
  }
  assert.equal(n, 4);
});

test('a getToken failure is an error and backs off like a failed handshake', async () => {
  let fail = true;
  const t = setup({
    getToken: () => {
      if (fail) throw new Error('token service down');
      return 'ok';
    },
  });
  t.client.start();
  await settle();
  assert.equal(t.WebSocket.all.length, 0, 'no socket without a token');
  const [err] = t.log.of('error');
  assert.equal(err.kind, 'token');
  assert.equal(err.error.message, 'token service down');
  assert.equal(err.failures, 1);
  assert.ok(err.retryInMs >= 0 && err.retryInMs < 1000);
  assert.equal(t.client.state, 'waiting');
  fail = false;
  t.clock.runNext();
  await settle();
  assert.equal(query(t.WebSocket.last.url).access_token, 'ok');
});

test('cookie authentication: no getToken, no access_token', async () => {
  const t = setup({ getToken: undefined });
  t.client.start();
  await settle();
  assert.deepEqual(query(t.WebSocket.last.url), {});
});

test('reconnect ask: close from this side, wait the asked delay, no failure counted', async () => {
  const t = setup();
  const ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'p1', pos: P(1), data: 'x' });
  ws.serverSend({ type: 'reconnect', reason: 'drain', retry_ms: 1234 });
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: undefined }], 'the client closes first (TIME_WAIT on the client)');
  assert.deepEqual(t.log.of('disconnected'), [
    { reason: 'reconnect', askReason: 'drain', transport: 'websocket', willReconnect: true, retryInMs: 1234 },
  ]);
  assert.equal(t.client.state, 'waiting');
  assert.deepEqual(t.clock.pending().map((p) => p.ms), [1234]);
  // The close 4001 that follows from the edge changes nothing.
  ws.serverClose(4001, 'reconnect');
  assert.equal(t.clock.pending().length, 1);

  t.clock.advance(1233);
  await settle();
  assert.equal(t.WebSocket.all.length, 1, 'not before the asked delay');
  t.clock.advance(1);
  await settle();
  assert.equal(t.WebSocket.all.length, 2);
  const next = t.WebSocket.last;
  assert.equal(query(next.url).access_token, 'token-2');
  assert.equal(query(next.url).last_event_id, P(1), 'resumes after the last push');
  assert.equal(t.client.failures, 0, 'an ask is not a failure');
  // The next failure starts the backoff at its first window.
  next.failHandshake();
  assert.equal(t.log.of('error').at(-1).failures, 1);
  assert.ok(t.log.of('error').at(-1).retryInMs < 1000);
});

test('close 4001 or 1001 without a message: reconnect after a jittered delay below the base', async () => {
  for (const [code, reason] of [
    [4001, 'reconnect'],
    [1001, 'shutdown'],
  ]) {
    const t = setup();
    const ws = await connect(t);
    ws.serverClose(code, reason);
    const [d] = t.log.of('disconnected');
    assert.equal(d.reason, reason);
    assert.equal(d.code, code);
    assert.ok(d.retryInMs >= 0 && d.retryInMs < 1000, `${d.retryInMs}`);
    assert.equal(t.client.failures, 0);
    t.clock.runNext();
    await settle();
    assert.equal(t.WebSocket.all.length, 2);
  }
});

test('an absurd asked delay is capped', async () => {
  const t = setup();
  const ws = await connect(t);
  ws.serverSend({ type: 'reconnect', reason: 'lifetime', retry_ms: 1e12 });
  assert.equal(t.log.of('disconnected')[0].retryInMs, 5 * 60 * 1000);
});

test('replaced stops the client: no reconnect, ever', async () => {
  for (const how of ['message', 'close-4000']) {
    const t = setup();
    const ws = await connect(t);
    if (how === 'message') {
      ws.serverSend({ type: 'replaced' });
      assert.equal(t.client.state, 'stopped', 'stops at the message, before the close frame');
      assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: undefined }]);
      ws.serverClose(4000, 'replaced');
    } else {
      ws.serverClose(4000, 'replaced');
    }
    assert.equal(t.client.state, 'stopped', how);
    const d = t.log.of('disconnected');
    assert.equal(d.length, 1, how);
    assert.equal(d[0].reason, 'replaced');
    assert.equal(d[0].willReconnect, false);
    assert.deepEqual(t.clock.pending(), [], `${how}: nothing scheduled`);
    t.clock.advance(24 * 3600 * 1000);
    await settle();
    assert.equal(t.WebSocket.all.length, 1, `${how}: no new connection`);
    // The application may take the stream back explicitly.
    t.client.start();
    await settle();
    assert.equal(t.WebSocket.all.length, 2);
  }
});

test('failed handshakes back off with growing windows and surface as errors, never a tight loop', async () => {
  const t = setup({ random: () => 0.999 });
  t.client.start();
  await settle();
  const failures = 12;
  for (let i = 1; i <= failures; i++) {
    t.WebSocket.last.failHandshake();
    const err = t.log.of('error').at(-1);
    assert.equal(err.kind, 'handshake');
    assert.equal(err.code, 1006);
    assert.equal(err.failures, i);
    const bound = Math.min(30000, 1000 * 2 ** (i - 1));
    assert.ok(err.retryInMs < bound && err.retryInMs >= 0.99 * bound, `failure ${i}: ${err.retryInMs} vs ${bound}`);
    // Nothing happens until the timer fires: exactly one attempt per elapsed delay.
    await settle();
    assert.equal(t.WebSocket.all.length, i);
    assert.deepEqual(t.clock.pending().length, 1);
    t.clock.runNext();
    await settle();
    assert.equal(t.WebSocket.all.length, i + 1);
  }
  assert.equal(t.log.of('connected').length, 0);
  assert.equal(t.log.of('disconnected').length, 0, 'never connected, so never disconnected');
  // Sum of the waits: at least the doubling windows up to the cap.
  const waited = t.clock.now;
  assert.ok(waited > 0.99 * (1000 + 2000 + 4000 + 8000 + 16000 + 7 * 30000), `${waited}`);
});

test('a drop after a short connection keeps counting; a healthy one resets the backoff', async () => {
  const t = setup({ random: () => 0.5 });
  t.client.start();
  await settle();
  for (let i = 0; i < 3; i++) {
    t.WebSocket.last.failHandshake();
    t.clock.runNext();
    await settle();
  }
  assert.equal(t.client.failures, 3);
  // Connected for 9 s (< healthyAfterMs), then dropped: failure 4, window 8 s.
  let ws = t.WebSocket.last;
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device: 'd' });
  t.clock.advance(9000);
  ws.serverClose(1006);
  let d = t.log.of('disconnected').at(-1);
  assert.equal(d.reason, 'network');
  assert.equal(d.retryInMs, 4000);
  assert.equal(t.client.failures, 4);
  // Connected for 10 s: the backoff resets; the next drop waits within the base window.
  t.clock.runNext();
  await settle();
  ws = t.WebSocket.last;
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device: 'd' });
  t.clock.advance(10000);
  assert.equal(t.client.failures, 0);
  ws.serverClose(1006);
  d = t.log.of('disconnected').at(-1);
  assert.equal(d.retryInMs, 500);
  assert.equal(t.client.failures, 1);
});

test('edge close codes for misbehaving connections are failures with their reason', async () => {
  for (const [code, reason] of [
    [4002, 'slow_consumer'],
    [4003, 'pong_timeout'],
    [1008, 'policy'],
    [1009, 'too_big'],
    [1002, 'protocol_error'],
  ]) {
    const t = setup();
    const ws = await connect(t);
    ws.serverClose(code);
    const [d] = t.log.of('disconnected');
    assert.deepEqual([d.reason, d.code, d.willReconnect], [reason, code, true]);
    assert.equal(t.client.failures, 1);
  }
});

test('close() closes the socket and stops; events stop too', async () => {
  const t = setup();
  const ws = await connect(t);
  t.client.close();
  assert.equal(t.client.state, 'stopped');
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: undefined }]);
  assert.deepEqual(t.log.of('disconnected'), [{ reason: 'closed', transport: 'websocket', willReconnect: false }]);
  ws.serverSend({ type: 'push', id: 'late', data: 'after close' });
  ws.serverClose(1000);
  assert.equal(t.log.of('push').length, 0);
  assert.deepEqual(t.clock.pending(), []);
});

test('close() while the token is being fetched abandons the attempt', async () => {
  let release;
  const t = setup({ getToken: () => new Promise((resolve) => (release = resolve)) });
  t.client.start();
  await settle();
  t.client.close();
  release('late-token');
  await settle();
  assert.equal(t.WebSocket.all.length, 0);
  assert.equal(t.client.state, 'stopped');
});

test('resume: the first connect can start from a saved position; resume: false sends none', async () => {
  let t = setup({ lastEventId: P(7) });
  t.client.start();
  await settle();
  assert.equal(query(t.WebSocket.last.url).last_event_id, P(7));

  t = setup({ resume: false, lastEventId: P(7) });
  const ws = await connect(t);
  ws.serverSend({ type: 'push', id: 'p', pos: P(8), data: 'x' });
  ws.serverClose(1006);
  t.clock.runNext();
  await settle();
  assert.equal(query(t.WebSocket.last.url).last_event_id, undefined);
});

test('listeners: on() returns a remover, off() removes, unknown names throw', async () => {
  const t = setup();
  const seen = [];
  const fn = (p) => seen.push(p.id);
  const remove = t.client.on('push', fn);
  const ws = await connect(t);
  ws.serverSend({ type: 'push', id: '1', data: '' });
  remove();
  ws.serverSend({ type: 'push', id: '2', data: '' });
  t.client.on('push', fn);
  ws.serverSend({ type: 'push', id: '3', data: '' });
  t.client.off('push', fn);
  ws.serverSend({ type: 'push', id: '4', data: '' });
  assert.deepEqual(seen, ['1', '3']);
  assert.throws(() => t.client.on('pushed', () => {}), /unknown event "pushed"/);
});

test('bad options are refused when the client is made', () => {
  const WebSocket = fakeWebSocketClass();
  const base = { url: 'http://h', WebSocket };
  assert.throws(() => new HeraldClient(), TypeError);
  assert.throws(() => new HeraldClient({ ...base, transports: [] }), /transports/);
  assert.throws(() => new HeraldClient({ ...base, transports: ['websocket', 'websocket'] }), /repeat/);
  assert.throws(() => new HeraldClient({ ...base, transports: ['long-polling'] }), /unknown transport/);
  assert.throws(() => new HeraldClient({ ...base, fallbackAfter: 0 }), /fallbackAfter/);
  assert.throws(() => new HeraldClient({ ...base, getToken: 'abc' }), /getToken/);
  assert.throws(() => new HeraldClient({ ...base, backoff: { baseMs: 10, capMs: 5 } }), /capMs/);
  assert.throws(() => new HeraldClient({ ...base, url: 'ftp://h' }), /http\(s\) or ws\(s\)/);
  assert.throws(() => new HeraldClient({ url: 'http://h', WebSocket: undefined, EventSource: undefined }), /none of the transports/);
});
