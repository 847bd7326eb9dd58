// HeraldClient over SSE and the fallback policy: SSE when WebSocket is missing or keeps failing
// before `open`, EventSource reconnections managed by the client (fresh token, last_event_id),
// the SSE reconnect/replaced/recovered events.

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

function setup(options = {}) {
  const WebSocket = fakeWebSocketClass();
  const EventSource = fakeEventSourceClass();
  const clock = new FakeClock();
  let tokens = 0;
  const client = new HeraldClient({
    url: 'https://edge.test',
    getToken: () => `token-${++tokens}`,
    WebSocket,
    EventSource,
    timers: clock,
    random: seededRandom(3),
    ...options,
  });
  const log = recordEvents(client);
  return { client, WebSocket, EventSource, clock, log };
}

/** Runs the pending reconnect timer and lets the token promise settle. */
async function nextAttempt(t) {
  t.clock.runNext();
  await settle();
}

test('without a WebSocket implementation the client uses SSE', async () => {
  const t = setup({ WebSocket: undefined });
  t.client.start();
  await settle();
  assert.equal(t.EventSource.all.length, 1);
  const es = t.EventSource.last;
  const url = new URL(es.url);
  assert.equal(url.origin + url.pathname, 'https://edge.test/sse');
  assert.deepEqual(query(es.url), { access_token: 'token-1' });
  assert.deepEqual(es.init, { withCredentials: false });
  es.serverOpen();
  assert.deepEqual(t.log.of('connected'), [{ transport: 'sse', protocol: 'sse' }]);
  assert.equal(t.client.transport, 'sse');
});

test('fallback: after `fallbackAfter` failures before open, SSE; a transport that works is kept', async () => {
  const t = setup({ fallbackAfter: 3 });
  t.client.start();
  await settle();
  for (let i = 1; i <= 3; i++) {
    assert.equal(t.WebSocket.all.length, i);
    t.WebSocket.last.failHandshake();
    const err = t.log.of('error').at(-1);
    assert.equal(err.transport, 'websocket');
    assert.equal(err.nextTransport, i < 3 ? 'websocket' : 'sse');
    await nextAttempt(t);
  }
  assert.equal(t.WebSocket.all.length, 3, 'no fourth WebSocket');
  assert.equal(t.EventSource.all.length, 1);
  assert.equal(t.log.of('connecting').at(-1).transport, 'sse');
  assert.equal(t.log.of('connecting').at(-1).attempt, 4, 'the backoff kept counting across the switch');
  t.EventSource.last.serverOpen();
  assert.equal(t.log.of('connected').at(-1).transport, 'sse');
  // SSE stays after a drop: it opened, WebSocket did not.
  t.EventSource.last.serverError();
  await nextAttempt(t);
  assert.equal(t.EventSource.all.length, 2);
  assert.equal(t.WebSocket.all.length, 3);
});

test('an open resets the count of failures before open that leads to the fallback', async () => {
  const t = setup({ transports: ['sse', 'websocket'], fallbackAfter: 2 });
  t.client.start();
  await settle();
  t.EventSource.last.serverError({ gaveUp: true }); // 1 failure before open
  await nextAttempt(t);
  t.EventSource.last.serverOpen(); // opened: the count starts again
  t.EventSource.last.serverError();
  await nextAttempt(t);
  t.EventSource.last.serverError({ gaveUp: true }); // 1 failure before open, not 2
  await nextAttempt(t);
  assert.equal(t.EventSource.all.length, 4);
  assert.equal(t.WebSocket.all.length, 0);
});

test('a WebSocket that opened once is not given up for drops after open', async () => {
  const t = setup({ fallbackAfter: 1 });
  t.client.start();
  await settle();
  for (let i = 0; i < 4; i++) {
    const ws = t.WebSocket.last;
    ws.serverOpen();
    ws.serverSend({ type: 'welcome', device: 'd' });
    ws.serverClose(1006);
    await nextAttempt(t);
  }
  assert.equal(t.WebSocket.all.length, 5);
  assert.equal(t.EventSource.all.length, 0);
});

test('when every transport fails the client rotates through them, backing off all along', async () => {
  const t = setup({ fallbackAfter: 2, random: () => 0.999 });
  t.client.start();
  await settle();
  const order = [];
  for (let i = 0; i < 8; i++) {
    const ws = t.WebSocket.all.length;
    const es = t.EventSource.all.length;
    const last = t.log.of('connecting').at(-1).transport;
    order.push(last);
    if (last === 'websocket') t.WebSocket.last.failHandshake();
    else t.EventSource.last.serverError({ gaveUp: true });
    assert.equal(t.WebSocket.all.length + t.EventSource.all.length, ws + es, 'no retry before the timer');
    await nextAttempt(t);
  }
  assert.deepEqual(order, ['websocket', 'websocket', 'sse', 'sse', 'websocket', 'websocket', 'sse', 'sse']);
  const delays = t.log.of('error').map((e) => e.retryInMs);
  for (const [i, d] of delays.entries()) {
    assert.ok(d < Math.min(30000, 1000 * 2 ** i) && d >= 0.99 * Math.min(30000, 1000 * 2 ** i), `failure ${i + 1}: ${d}`);
  }
  assert.ok(t.EventSource.all.every((es) => es.closed), 'every failed EventSource was closed by the client');
});

test('transports order and subsets are honoured', async () => {
  let t = setup({ transports: ['sse', 'websocket'] });
  t.client.start();
  await settle();
  assert.equal(t.EventSource.all.length, 1);
  assert.equal(t.WebSocket.all.length, 0);

  t = setup({ transports: ['websocket'], fallbackAfter: 1 });
  t.client.start();
  await settle();
  for (let i = 0; i < 5; i++) {
    t.WebSocket.last.failHandshake();
    await nextAttempt(t);
  }
  assert.equal(t.EventSource.all.length, 0, 'never SSE when not listed');
  assert.equal(t.WebSocket.all.length, 6);
});

const P = (seq) => `00c0ffee12345678:1764700000000-${seq}`;

test('SSE pushes: ids de-duplicate, multi-line data as EventSource joined it', async () => {
  const t = setup({ transports: ['sse'] });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  es.serverOpen();
  es.serverEvent({ id: 'm1', data: 'line 1\nline 2' });
  es.serverEvent({ id: 'm2', data: 'ünïcödé ✓' });
  es.serverEvent({ id: 'm1', data: 'line 1\nline 2' });
  assert.deepEqual(t.log.of('push'), [
    { id: 'm1', data: 'line 1\nline 2', binary: false, transport: 'sse' },
    { id: 'm2', data: 'ünïcödé ✓', binary: false, transport: 'sse' },
  ]);
  assert.equal(t.client.duplicates, 1);
  assert.equal(t.client.lastEventId, undefined, 'herald-ids are not positions: nothing to resume from');
});

test('SSE ids that are positions: tracked as the resume point, de-duplicated by position', async () => {
  const t = setup({ transports: ['sse'] });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  es.serverOpen();
  es.serverEvent({ id: P(1), data: 'a' });
  es.serverEvent({ id: P(2), data: 'b' });
  es.serverEvent({ id: P(1), data: 'a again' });
  es.serverEvent({ id: 'not-a-position', data: 'no history' });
  assert.deepEqual(
    t.log.of('push').map((p) => [p.id, p.pos, p.data]),
    [
      [P(1), P(1), 'a'],
      [P(2), P(2), 'b'],
      ['not-a-position', undefined, 'no history'],
    ],
  );
  assert.equal(t.client.duplicates, 1);
  assert.equal(t.client.lastEventId, P(2), 'a herald-id does not move the resume point');
});

test('SSE broadcasts (no id: line) are neither de-duplicated nor a resume point', async () => {
  const t = setup({ transports: ['sse'] });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  es.serverOpen();
  es.serverEvent({ data: 'broadcast before any id' });
  es.serverEvent({ id: P(5), data: 'user push' });
  // EventSource reports the previous id for an event without an id: line.
  es.serverEvent({ data: 'broadcast 1' });
  es.serverEvent({ data: 'broadcast 2' });
  assert.deepEqual(
    t.log.of('push').map((p) => [p.id, p.data]),
    [
      [undefined, 'broadcast before any id'],
      [P(5), 'user push'],
      [undefined, 'broadcast 1'],
      [undefined, 'broadcast 2'],
    ],
  );
  assert.equal(t.client.duplicates, 0);
  assert.equal(t.client.lastEventId, P(5));
});

test('SSE drop: the client closes the EventSource and reconnects itself with a fresh token and last_event_id', async () => {
  const t = setup({ transports: ['sse'] });
  t.client.start();
  await settle();
  const first = t.EventSource.last;
  first.serverOpen();
  first.serverEvent({ id: P(41), data: 'a' });
  first.serverEvent({ id: P(42), data: 'b' });
  first.serverError(); // EventSource would retry by itself (readyState CONNECTING) with token-1
  assert.equal(first.closed, true, 'closed before its own retry could reuse the old token');
  const [d] = t.log.of('disconnected');
  assert.deepEqual([d.reason, d.transport, d.willReconnect], ['network', 'sse', true]);
  await nextAttempt(t);
  const second = t.EventSource.last;
  assert.notEqual(second, first);
  assert.deepEqual(query(second.url), { access_token: 'token-2', last_event_id: P(42) });
  assert.match(second.url, /last_event_id=00c0ffee12345678%3A1764700000000-42$/, 'percent-encoded');
});

test('SSE reconnect event: close, come back after a delay, not a failure', async () => {
  for (const [data, expected] of [
    ['reconnect', undefined], // the specified data: the client picks a delay below the base
    ['2500', 2500],
    ['{"retry_ms":1800}', 1800],
  ]) {
    const t = setup({ transports: ['sse'] });
    t.client.start();
    await settle();
    const es = t.EventSource.last;
    es.serverOpen();
    es.serverEvent({ event: 'reconnect', data });
    assert.equal(es.closed, true);
    const [d] = t.log.of('disconnected');
    assert.equal(d.reason, 'reconnect');
    if (expected === undefined) assert.ok(d.retryInMs >= 0 && d.retryInMs < 1000, `${d.retryInMs}`);
    else assert.equal(d.retryInMs, expected);
    assert.deepEqual(t.clock.pending().map((p) => p.ms), [d.retryInMs]);
    assert.equal(t.client.failures, 0);
    // The edge's later close is not seen as an error.
    es.serverError({ gaveUp: true });
    assert.equal(t.log.of('error').length, 0);
    await nextAttempt(t);
    assert.equal(t.EventSource.all.length, 2);
  }
});

test('SSE replaced event: stop, do not reconnect', async () => {
  const t = setup({ transports: ['sse'] });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  es.serverOpen();
  es.serverEvent({ event: 'replaced', data: 'replaced' });
  assert.equal(es.closed, true);
  assert.equal(t.client.state, 'stopped');
  assert.deepEqual(t.log.of('disconnected'), [{ reason: 'replaced', transport: 'sse', willReconnect: false }]);
  t.clock.advance(3600 * 1000);
  await settle();
  assert.equal(t.EventSource.all.length, 1);
});

test('SSE recovery event before the replayed pushes, and a malformed one as a protocol error', async () => {
  const t = setup({ transports: ['sse'], lastEventId: P(17) });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  assert.equal(query(es.url).last_event_id, P(17));
  es.serverOpen();
  es.serverEvent({ event: 'recovery', data: '{"recovered":true,"count":1}' });
  es.serverEvent({ id: P(18), data: 'missed' });
  es.serverEvent({ event: 'recovery', data: 'garbage' });
  es.serverEvent({ id: P(19), data: 'live' });
  assert.deepEqual(t.log.of('recovery'), [{ recovered: true, count: 1, transport: 'sse' }]);
  assert.deepEqual(t.log.types().filter((x) => x === 'recovery' || x === 'push'), ['recovery', 'push', 'push']);
  assert.equal(t.log.of('error')[0].kind, 'protocol');
  assert.equal(t.client.state, 'connected');
  assert.equal(t.client.lastEventId, P(19));
});

test('SSE recovery false: surfaced with its reason; the next push is the new resume point', async () => {
  const t = setup({ transports: ['sse'], lastEventId: P(3) });
  t.client.start();
  await settle();
  const es = t.EventSource.last;
  es.serverOpen();
  es.serverEvent({ event: 'recovery', data: '{"recovered":false,"reason":"too_old"}' });
  assert.deepEqual(t.log.of('recovery'), [{ recovered: false, reason: 'too_old', transport: 'sse' }]);
  assert.equal(t.client.lastEventId, P(3), 'kept until a push brings a newer one');
  es.serverEvent({ id: 'ffffffffffffffff:1-0', data: 'live, new epoch' });
  assert.equal(t.client.lastEventId, 'ffffffffffffffff:1-0');
});

test('SSE failure before open (bad token: 401 looks like any error) backs off and reports', async () => {
  const t = setup({ transports: ['sse'], random: () => 0.5 });
  t.client.start();
  await settle();
  t.EventSource.last.serverError({ gaveUp: true });
  await nextAttempt(t);
  t.EventSource.last.serverError({ gaveUp: true });
  const errors = t.log.of('error');
  assert.deepEqual(errors.map((e) => [e.kind, e.transport, e.failures, e.retryInMs]), [
    ['handshake', 'sse', 1, 500],
    ['handshake', 'sse', 2, 1000],
  ]);
  assert.equal(t.log.of('disconnected').length, 0);
});

test('withCredentials is passed to EventSource', async () => {
  const t = setup({ transports: ['sse'], withCredentials: true, getToken: undefined });
  t.client.start();
  await settle();
  assert.deepEqual(t.EventSource.last.init, { withCredentials: true });
  assert.deepEqual(query(t.EventSource.last.url), {});
});
