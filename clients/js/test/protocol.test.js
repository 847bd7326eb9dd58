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
  parseSseRecovery,
  isPosition,
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

test('recovery: true with a count, false with a reason', () => {
  assert.deepEqual(parse({ type: 'recovery', recovered: true, count: 3 }), {
    type: 'recovery',
    recovered: true,
    count: 3,
  });
  for (const reason of ['too_old', 'epoch_changed', 'malformed_position', 'too_large', 'unavailable', 'disabled']) {
    assert.deepEqual(parse({ type: 'recovery', recovered: false, reason }), {
      type: 'recovery',
      recovered: false,
      reason,
    });
  }
  // A count that is not a number of pushes is dropped, not trusted.
  assert.deepEqual(parse({ type: 'recovery', recovered: true, count: -1 }), { type: 'recovery', recovered: true });
  assert.throws(() => parse({ type: 'recovery', recovered: 'yes' }), HeraldProtocolError);
  assert.throws(() => parse({ type: 'recovery' }), HeraldProtocolError);
});

test('positions: <16 hex epoch>:<ms>-<seq>, nothing else', () => {
  for (const ok of ['00c0ffee12345678:1764700000000-3', 'ffffffffffffffff:0-0', '0123456789abcdef:18446744073709551615-18446744073709551615']) {
    assert.ok(isPosition(ok), ok);
  }
  for (const bad of [
    undefined,
    42,
    '',
    'order-42-shipped', // a herald-id
    '00C0FFEE12345678:1-3', // upper case
    '00c0ffee1234567:1-3', // 15 hex digits
    '00c0ffee12345678:1', // no seq
    '00c0ffee12345678:-1-3',
    '00c0ffee12345678:1-3 ',
    '00c0ffee12345678:123456789012345678901-0', // 21 digits
  ]) {
    assert.ok(!isPosition(bad), String(bad));
  }
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

test('SSE recovery: the same JSON fields as herald.v1', () => {
  assert.deepEqual(parseSseRecovery('{"recovered":true,"count":2}'), { type: 'recovery', recovered: true, count: 2 });
  assert.deepEqual(parseSseRecovery('{"recovered":false,"reason":"epoch_changed"}'), {
    type: 'recovery',
    recovered: false,
    reason: 'epoch_changed',
  });
  assert.throws(() => parseSseRecovery('recovery'), HeraldProtocolError);
  assert.throws(() => parseSseRecovery('[true]'), HeraldProtocolError);
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
  const pos = '00c0ffee12345678:1764700000000-3';
  const u = new URL(endpointUrl('https://h/p?tenant=7#frag', 'sse', { token: 'tok', lastEventId: pos }));
  assert.equal(u.pathname, '/p/sse');
  assert.equal(u.hash, '');
  assert.deepEqual(Object.fromEntries(u.searchParams), { tenant: '7', access_token: 'tok', last_event_id: pos });
  // The position is percent-encoded (`:` as %3A) on both transports.
  for (const transport of ['sse', 'websocket']) {
    assert.ok(
      endpointUrl('http://h', transport, { token: 't', lastEventId: pos }).endsWith('?access_token=t&last_event_id=00c0ffee12345678%3A1764700000000-3'),
      transport,
    );
  }
  // No token (cookie authentication) and no position: no parameters.
  assert.equal(endpointUrl('http://h', 'sse', { token: null, lastEventId: '' }), 'http://h/sse');
  // Relative to the page; a URL object works too.
  assert.equal(endpointUrl('/herald', 'websocket', { location: 'https://app.example.com/inbox' }), 'wss://app.example.com/herald/ws');
  assert.equal(endpointUrl(new URL('http://h:2'), 'sse'), 'http://h:2/sse');
  assert.throws(() => endpointUrl('ftp://h', 'sse'), /http\(s\) or ws\(s\)/);
  assert.throws(() => endpointUrl('/relative-without-page', 'sse'), TypeError);
});
