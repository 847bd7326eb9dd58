// The wire vocabulary: every herald.v1 message type, unknown types and fields, base64 binary
// payloads, malformed input, SSE event data, close codes and endpoint URLs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  CloseCode,
  DisconnectReason,
  HeraldProtocolError,
  closeReason,
  decodeBase64,
  parseMessage,
  parseSseRecovered,
  sseReconnectDelay,
} from '../src/protocol.js';
import { endpointUrl } from '../src/url.js';

const parse = (obj) => parseMessage(typeof obj === 'string' ? obj : JSON.stringify(obj));

test('welcome: device and ping period', () => {
  assert.deepEqual(parse({ type: 'welcome', device: 'd0123456789abcdef', ping_ms: 30000 }), {
    type: 'welcome',
    device: 'd0123456789abcdef',
    pingMs: 30000,
  });
  // Fields of the wrong type are treated as absent, not as errors.
  assert.deepEqual(parse({ type: 'welcome', device: 7, ping_ms: 'soon' }), { type: 'welcome' });
});

test('push: UTF-8 text as is, with and without a resumable position', () => {
  const text = 'line one\nline two — «non-ASCII» ✓ 🚀';
  assert.deepEqual(parse({ type: 'push', id: 'm-1', data: text }), {
    type: 'push',
    id: 'm-1',
    data: text,
    binary: false,
  });
  assert.deepEqual(parse({ type: 'push', id: 'm-2', data: '', pos: '17:4711' }), {
    type: 'push',
    id: 'm-2',
    data: '',
    binary: false,
    pos: '17:4711',
  });
  // A 64 KiB payload passes through untouched.
  const big = 'x'.repeat(64 * 1024);
  assert.equal(parse({ type: 'push', id: 'big', data: big }).data.length, 65536);
});

test('push: base64 payloads decode to the exact bytes', () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const b64 = Buffer.from(bytes).toString('base64');
  const msg = parse({ type: 'push', id: 'bin', data: b64, encoding: 'base64' });
  assert.equal(msg.binary, true);
  assert.ok(msg.data instanceof Uint8Array);
  assert.deepEqual([...msg.data], [...bytes]);
  // Padding variants and the empty payload.
  assert.deepEqual([...parse({ type: 'push', id: 'a', data: '/w==', encoding: 'base64' }).data], [255]);
  assert.deepEqual([...parse({ type: 'push', id: 'b', data: 'AP8A', encoding: 'base64' }).data], [0, 255, 0]);
  assert.deepEqual([...parse({ type: 'push', id: 'c', data: '', encoding: 'base64' }).data], []);
});

test('push: a malformed push is a protocol error', () => {
  const bad = [
    { type: 'push', data: 'no id' },
    { type: 'push', id: '', data: 'empty id' },
    { type: 'push', id: 5, data: 'numeric id' },
    { type: 'push', id: 'x' },
    { type: 'push', id: 'x', data: 42 },
    { type: 'push', id: 'x', data: 'not base64!', encoding: 'base64' },
    { type: 'push', id: 'x', data: 'AAA', encoding: 'base64' }, // missing padding
    { type: 'push', id: 'x', data: 'AA AA', encoding: 'base64' },
    { type: 'push', id: 'x', data: 'abcd', encoding: 'hex' },
  ];
  for (const obj of bad) {
    assert.throws(() => parse(obj), HeraldProtocolError, JSON.stringify(obj));
  }
});

test('reconnect: reason and delay', () => {
  for (const reason of ['lifetime', 'drain', 'shutdown']) {
    assert.deepEqual(parse({ type: 'reconnect', reason, retry_ms: 2500 }), {
      type: 'reconnect',
      reason,
      retryMs: 2500,
    });
  }
  // Without a usable delay the client picks one itself.
  assert.deepEqual(parse({ type: 'reconnect', reason: 'drain', retry_ms: -1 }), { type: 'reconnect', reason: 'drain' });
  assert.deepEqual(parse({ type: 'reconnect' }), { type: 'reconnect' });
});

test('replaced', () => {
  assert.deepEqual(parse({ type: 'replaced' }), { type: 'replaced' });
});

test('recovered: true with a count, false with a reason', () => {
  assert.deepEqual(parse({ type: 'recovered', recovered: true, count: 3 }), {
    type: 'recovered',
    recovered: true,
    count: 3,
  });
  for (const reason of ['too_old', 'epoch_changed', 'unavailable', 'unsupported']) {
    assert.deepEqual(parse({ type: 'recovered', recovered: false, reason }), {
      type: 'recovered',
      recovered: false,
      reason,
    });
  }
  assert.throws(() => parse({ type: 'recovered', recovered: 'yes' }), HeraldProtocolError);
});

test('unknown types are ignored and unknown fields dropped (forward compatibility)', () => {
  assert.equal(parse({ type: 'rebalance', hint: 'edge-7' }), null);
  assert.equal(parse({ type: 'PUSH', id: 'x', data: 'case matters' }), null);
  assert.deepEqual(parse({ type: 'push', id: 'x', data: 'y', priority: 'high', trace: { a: 1 } }), {
    type: 'push',
    id: 'x',
    data: 'y',
    binary: false,
  });
  assert.deepEqual(parse({ type: 'replaced', by: 'tab-2' }), { type: 'replaced' });
});

test('text that is not a herald.v1 message is a protocol error', () => {
  for (const text of ['', 'hello', '{"type":', '[]', '[{"type":"push"}]', 'null', '42', '"push"', '{}', '{"type":7}']) {
    assert.throws(() => parseMessage(text), HeraldProtocolError, JSON.stringify(text));
  }
  try {
    parseMessage('{oops');
  } catch (err) {
    assert.equal(err.raw, '{oops');
    assert.ok(err.cause instanceof SyntaxError, 'keeps the JSON error as its cause');
  }
});

test('decodeBase64 accepts only standard padded base64', () => {
  assert.deepEqual([...decodeBase64('aGk=')], [104, 105]);
  for (const bad of ['aGk', 'aGk==', 'a-_b', 'aGk=\n', '====']) {
    assert.throws(() => decodeBase64(bad), HeraldProtocolError, bad);
  }
});

test('SSE reconnect: a delay only when the data carries one', () => {
  assert.equal(sseReconnectDelay('reconnect'), undefined); // the specified data
  assert.equal(sseReconnectDelay('2500'), 2500);
  assert.equal(sseReconnectDelay('{"retry_ms":1200,"reason":"drain"}'), 1200);
  assert.equal(sseReconnectDelay('{"retry_ms":-3}'), undefined);
  assert.equal(sseReconnectDelay('{broken'), undefined);
  assert.equal(sseReconnectDelay(undefined), undefined);
});

test('SSE recovered: the same JSON fields as herald.v1', () => {
  assert.deepEqual(parseSseRecovered('{"recovered":true,"count":2}'), { type: 'recovered', recovered: true, count: 2 });
  assert.deepEqual(parseSseRecovered('{"recovered":false,"reason":"too_old"}'), {
    type: 'recovered',
    recovered: false,
    reason: 'too_old',
  });
  assert.throws(() => parseSseRecovered('recovered'), HeraldProtocolError);
  assert.throws(() => parseSseRecovered('[true]'), HeraldProtocolError);
});

test('close codes map to disconnect reasons', () => {
  const table = [
    [CloseCode.REPLACED, DisconnectReason.REPLACED],
    [CloseCode.RECONNECT, DisconnectReason.RECONNECT],
    [CloseCode.GOING_AWAY, DisconnectReason.SHUTDOWN],
    [CloseCode.SLOW_CONSUMER, DisconnectReason.SLOW_CONSUMER],
    [CloseCode.PONG_TIMEOUT, DisconnectReason.PONG_TIMEOUT],
    [CloseCode.POLICY, DisconnectReason.POLICY],
    [CloseCode.PROTOCOL_ERROR, DisconnectReason.PROTOCOL_ERROR],
    [CloseCode.TOO_BIG, DisconnectReason.TOO_BIG],
    [CloseCode.ABNORMAL, DisconnectReason.NETWORK],
    [CloseCode.NORMAL, DisconnectReason.NETWORK],
    [4999, DisconnectReason.NETWORK],
  ];
  for (const [code, reason] of table) assert.equal(closeReason(code), reason, `code ${code}`);
});

test('endpoint URLs: scheme per transport, path, token and resume position', () => {
  assert.equal(endpointUrl('http://127.0.0.1:8080', 'websocket', { token: 'a.b.c' }), 'ws://127.0.0.1:8080/ws?access_token=a.b.c');
  assert.equal(endpointUrl('http://127.0.0.1:8080/', 'sse', { token: 'a.b.c' }), 'http://127.0.0.1:8080/sse?access_token=a.b.c');
  assert.equal(endpointUrl('https://push.example.com/herald/', 'websocket'), 'wss://push.example.com/herald/ws');
  assert.equal(endpointUrl('wss://push.example.com', 'sse'), 'https://push.example.com/sse');
  assert.equal(endpointUrl('ws://h:1', 'websocket'), 'ws://h:1/ws');
  const u = new URL(endpointUrl('https://h/p?tenant=7#frag', 'sse', { token: 'tok', lastEventId: '17:42' }));
  assert.equal(u.pathname, '/p/sse');
  assert.equal(u.hash, '');
  assert.deepEqual(Object.fromEntries(u.searchParams), { tenant: '7', access_token: 'tok', last_event_id: '17:42' });
  // No token (cookie authentication) and no position: no parameters.
  assert.equal(endpointUrl('http://h', 'sse', { token: null, lastEventId: '' }), 'http://h/sse');
  // Relative to the page; a URL object works too.
  assert.equal(endpointUrl('/herald', 'websocket', { location: 'https://app.example.com/inbox' }), 'wss://app.example.com/herald/ws');
  assert.equal(endpointUrl(new URL('http://h:2'), 'sse'), 'http://h:2/sse');
  assert.throws(() => endpointUrl('ftp://h', 'sse'), /http\(s\) or ws\(s\)/);
  assert.throws(() => endpointUrl('/relative-without-page', 'sse'), TypeError);
});
