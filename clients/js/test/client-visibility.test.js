// pauseWhenHidden: the connection closes while the page is hidden (only when asked to) and
// comes back, with a fresh token, when it is visible again.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { HeraldClient } from '../src/index.js';
import {
  FakeClock,
  FakeDocument,
  fakeWebSocketClass,
  query,
  recordEvents,
  settle,
} from './helpers/fakes.js';

function setup(options = {}) {
  const WebSocket = fakeWebSocketClass();
  const clock = new FakeClock();
  const document = new FakeDocument();
  let tokens = 0;
  const client = new HeraldClient({
    url: 'http://edge.test',
    getToken: () => `token-${++tokens}`,
    WebSocket,
    transports: ['websocket'],
    timers: clock,
    random: () => 0.5,
    document,
    ...options,
  });
  const log = recordEvents(client);
  return { client, WebSocket, clock, document, log };
}

async function connected(t) {
  t.client.start();
  await settle();
  const ws = t.WebSocket.last;
  ws.serverOpen();
  ws.serverSend({ type: 'welcome', device: 'd' });
  return ws;
}

test('without pauseWhenHidden a hidden page keeps its connection', async () => {
  const t = setup();
  const ws = await connected(t);
  t.document.setVisibility('hidden');
  assert.equal(t.client.state, 'connected');
  assert.equal(ws.closedByClient, false);
  assert.equal(t.document.listenerCount, 0, 'does not even listen');
});

test('pauseWhenHidden: hidden closes, visible reconnects at once with a fresh token', async () => {
  const t = setup({ pauseWhenHidden: true });
  const ws = await connected(t);
  ws.serverSend({ type: 'push', id: 'p1', pos: '00c0ffee12345678:1764700000000-1', data: 'x' });
  t.document.setVisibility('hidden');
  assert.equal(t.client.state, 'paused');
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: undefined }]);
  assert.deepEqual(t.log.of('disconnected'), [{ reason: 'paused', transport: 'websocket', willReconnect: true }]);
  assert.deepEqual(t.clock.pending(), [], 'nothing scheduled while hidden');
  t.clock.advance(60 * 60 * 1000);
  await settle();
  assert.equal(t.WebSocket.all.length, 1);

  t.document.setVisibility('visible');
  await settle();
  assert.equal(t.WebSocket.all.length, 2);
  assert.deepEqual(query(t.WebSocket.last.url), { access_token: 'token-2', last_event_id: '00c0ffee12345678:1764700000000-1' });
});

test('start() on a hidden page waits for it to become visible', async () => {
  const t = setup({ pauseWhenHidden: true });
  t.document.visibilityState = 'hidden';
  t.client.start();
  await settle();
  assert.equal(t.client.state, 'paused');
  assert.equal(t.WebSocket.all.length, 0);
  t.document.setVisibility('visible');
  await settle();
  assert.equal(t.WebSocket.all.length, 1);
});

test('hiding cancels a pending reconnect; after failures, showing still respects the backoff', async () => {
  const t = setup({ pauseWhenHidden: true });
  t.client.start();
  await settle();
  t.WebSocket.last.failHandshake();
  t.clock.runNext();
  await settle();
  t.WebSocket.last.failHandshake();
  assert.equal(t.client.state, 'waiting');
  t.document.setVisibility('hidden');
  assert.equal(t.client.state, 'paused');
  assert.deepEqual(t.clock.pending(), []);
  t.document.setVisibility('visible');
  assert.equal(t.client.state, 'waiting', 'two failures: wait within the current window');
  assert.deepEqual(t.clock.pending().map((p) => p.ms), [1000]); // 0.5 * min(30000, 1000 * 2^1)
});

test('hiddenGraceMs: a short trip to another tab does not disconnect', async () => {
  const t = setup({ pauseWhenHidden: true, hiddenGraceMs: 5000 });
  const ws = await connected(t);
  t.document.setVisibility('hidden');
  t.clock.advance(4999);
  t.document.setVisibility('visible');
  t.clock.advance(10000);
  assert.equal(t.client.state, 'connected');
  assert.equal(ws.closedByClient, false);
  t.document.setVisibility('hidden');
  t.clock.advance(5000);
  assert.equal(t.client.state, 'paused');
  assert.equal(ws.closedByClient, true);
});

test('close() stops listening to visibility; replaced too', async () => {
  const t = setup({ pauseWhenHidden: true });
  await connected(t);
  assert.equal(t.document.listenerCount, 1);
  t.client.close();
  assert.equal(t.document.listenerCount, 0);
  t.document.setVisibility('hidden');
  t.document.setVisibility('visible');
  await settle();
  assert.equal(t.WebSocket.all.length, 1, 'a closed client stays closed');

  const r = setup({ pauseWhenHidden: true });
  const ws = await connected(r);
  ws.serverSend({ type: 'replaced' });
  assert.equal(r.document.listenerCount, 0);
  r.document.setVisibility('hidden');
  r.document.setVisibility('visible');
  await settle();
  assert.equal(r.WebSocket.all.length, 1);
});
