// The wire vocabulary the client understands: herald.v1 WebSocket messages, the SSE event
// names, and what WebSocket close codes mean. Pure functions (text in, typed objects out), so
// every message type is unit-tested without a socket.

/** The WebSocket subprotocol the client offers. */
export const SUBPROTOCOL = 'herald.v1';

/**
 * Why a connection ended. Frozen, so callers compare against these constants instead of
 * spelling strings.
 */
export const DisconnectReason = Object.freeze({
  /** The edge asked the client to reconnect (lifetime, drain, shutdown). Not a failure. */
  RECONNECT: 'reconnect',
  /** A newer connection of the same user and device took over. The client stops. */
  REPLACED: 'replaced',
  /** The connection dropped without a reason the client understands. A failure. */
  NETWORK: 'network',
  /** The application called close(). */
  CLOSED: 'closed',
  /** The edge is shutting down (close 1001). Not a failure. */
  SHUTDOWN: 'shutdown',
  /** The page became hidden and `pauseWhenHidden` is on. */
  PAUSED: 'paused',
  /** The edge closed the connection because its outbound queue overflowed (4002). */
  SLOW_CONSUMER: 'slow_consumer',
  /** The edge saw no pong in time (4003). */
  PONG_TIMEOUT: 'pong_timeout',
  /** The edge closed the connection for a policy violation (1008). */
  POLICY: 'policy',
  /** The edge saw a protocol error (1002). */
  PROTOCOL_ERROR: 'protocol_error',
  /** A frame was too big (1009). */
  TOO_BIG: 'too_big',
});

/** What an `error` event is about. */
export const ErrorKind = Object.freeze({
  /** A connection attempt failed before it was established (HTTP 401/403/429/503, network). */
  HANDSHAKE: 'handshake',
  /** `getToken()` threw or rejected. */
  TOKEN: 'token',
  /** A message from the edge could not be understood (it is skipped; the connection stays). */
  PROTOCOL: 'protocol',
});

/** Close codes of the Herald client protocol (docs/protocol.md). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_BIG: 1009,
  REPLACED: 4000,
  RECONNECT: 4001,
  SLOW_CONSUMER: 4002,
  PONG_TIMEOUT: 4003,
});

/** A message from the edge that does not follow the herald.v1 specification. */
export class HeraldProtocolError extends Error {
  /**
   * @param {string} message
   * @param {{ cause?: unknown, raw?: unknown }} [options]
   */
  constructor(message, { cause, raw } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'HeraldProtocolError';
    /** The offending text, for logging. */
    this.raw = raw;
  }
}

/**
 * Maps a WebSocket close code to the reason a `disconnected` event reports.
 * @param {number} code
 * @returns {string} one of DisconnectReason
 */
export function closeReason(code) {
  switch (code) {
    case CloseCode.REPLACED:
      return DisconnectReason.REPLACED;
    case CloseCode.RECONNECT:
      return DisconnectReason.RECONNECT;
    case CloseCode.GOING_AWAY:
      return DisconnectReason.SHUTDOWN;
    case CloseCode.SLOW_CONSUMER:
      return DisconnectReason.SLOW_CONSUMER;
    case CloseCode.PONG_TIMEOUT:
      return DisconnectReason.PONG_TIMEOUT;
    case CloseCode.POLICY:
      return DisconnectReason.POLICY;
    case CloseCode.PROTOCOL_ERROR:
      return DisconnectReason.PROTOCOL_ERROR;
    case CloseCode.TOO_BIG:
      return DisconnectReason.TOO_BIG;
    default:
      return DisconnectReason.NETWORK;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes standard base64 (RFC 4648 §4, padded) into bytes. Throws HeraldProtocolError on
 * anything else: `atob` alone would accept whitespace and missing padding.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function decodeBase64(text) {
  if (!BASE64.test(text)) throw new HeraldProtocolError('push data is not standard base64');
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/**
 * @param {unknown} v
 * @returns {v is number}
 */
const isNonNegativeNumber = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
/** @param {unknown} v */
const optionalString = (v) => (typeof v === 'string' ? v : undefined);

/**
 * A resumable position as the edge hands it out (SSE `id:`, herald.v1 `pos`):
 * `<epoch, 16 lowercase hex digits>:<ms>-<seq>`, e.g. `00c0ffee12345678:1764700000000-3`.
 * Anything else in an SSE `id:` is a herald-id (a push without history), which the client
 * de-duplicates on but never sends back as `last_event_id`.
 */
export const POSITION = /^[0-9a-f]{16}:\d{1,20}-\d{1,20}$/;

/**
 * True when `text` is a resumable position (see POSITION).
 * @param {unknown} text
 * @returns {text is string}
 */
export function isPosition(text) {
  return typeof text === 'string' && POSITION.test(text);
}

/**
 * Reads the fields of a `recovery` answer (herald.v1 message or SSE `recovery` data).
 * @param {Record<string, unknown>} obj
 * @param {unknown} raw
 */
function recoveryFields(obj, raw) {
  if (typeof obj.recovered !== 'boolean') {
    throw new HeraldProtocolError('recovery: field `recovered` must be a boolean', { raw });
  }
  /** @type {{ type: 'recovery', recovered: boolean, count?: number, reason?: string }} */
  const msg = { type: 'recovery', recovered: obj.recovered };
  if (isNonNegativeNumber(obj.count)) msg.count = obj.count;
  const reason = optionalString(obj.reason);
  if (reason !== undefined) msg.reason = reason;
  return msg;
}

/**
 * Parses one herald.v1 text frame. Returns the typed message, or null for a message type this
 * client does not know (ignored, for forward compatibility). Unknown fields are ignored.
 * Throws HeraldProtocolError for text that is not a herald.v1 message.
 *
 * @param {string} text
 * @returns {import('../index.js').HeraldMessage | null}
 */
export function parseMessage(text) {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (cause) {
    throw new HeraldProtocolError('message is not JSON', { cause, raw: text });
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new HeraldProtocolError('message is not a JSON object', { raw: text });
  }
  if (typeof obj.type !== 'string') {
    throw new HeraldProtocolError('message has no string `type`', { raw: text });
  }
  switch (obj.type) {
    case 'welcome': {
      /** @type {{ type: 'welcome', device?: string, pingMs?: number }} */
      const msg = { type: 'welcome' };
      const device = optionalString(obj.device);
      if (device !== undefined) msg.device = device;
      if (isNonNegativeNumber(obj.ping_ms)) msg.pingMs = obj.ping_ms;
      return msg;
    }
    case 'push': {
      if (typeof obj.id !== 'string' || obj.id === '') {
        throw new HeraldProtocolError('push: `id` must be a non-empty string', { raw: text });
      }
      if (typeof obj.data !== 'string') {
        throw new HeraldProtocolError('push: `data` must be a string', { raw: text });
      }
      /** @type {{ type: 'push', id: string, data: string | Uint8Array, binary: boolean, pos?: string }} */
      let msg;
      if (obj.encoding === undefined) {
        msg = { type: 'push', id: obj.id, data: obj.data, binary: false };
      } else if (obj.encoding === 'base64') {
        msg = { type: 'push', id: obj.id, data: decodeBase64(obj.data), binary: true };
      } else {
        throw new HeraldProtocolError(`push: unknown encoding ${JSON.stringify(obj.encoding)}`, {
          raw: text,
        });
      }
      const pos = optionalString(obj.pos);
      if (pos !== undefined && pos !== '') msg.pos = pos;
      return msg;
    }
    case 'reconnect': {
      /** @type {{ type: 'reconnect', reason?: string, retryMs?: number }} */
      const msg = { type: 'reconnect' };
      const reason = optionalString(obj.reason);
      if (reason !== undefined) msg.reason = reason;
      if (isNonNegativeNumber(obj.retry_ms)) msg.retryMs = obj.retry_ms;
      return msg;
    }
    case 'replaced':
      return { type: 'replaced' };
    case 'recovery':
      return recoveryFields(obj, text);
    default:
      return null;
  }
}

/**
 * The delay an SSE `event: reconnect` asks for, when its data carries one. The specified data
 * is the word `reconnect` and the delay travels in the `retry:` field, which EventSource keeps
 * to itself; so this reads a delay only from data that is a whole number of milliseconds or a
 * JSON object with `retry_ms`, and returns undefined otherwise (the client then picks a
 * jittered delay of its own).
 * @param {unknown} data
 * @returns {number | undefined}
 */
export function sseReconnectDelay(data) {
  if (typeof data !== 'string') return undefined;
  const text = data.trim();
  if (/^\d+$/.test(text)) return Number(text);
  if (text.startsWith('{')) {
    try {
      const obj = JSON.parse(text);
      if (obj && isNonNegativeNumber(obj.retry_ms)) return obj.retry_ms;
    } catch {
      // Not JSON after all: no delay in it.
    }
  }
  return undefined;
}

/**
 * Parses the data of an SSE `event: recovery` (the same JSON fields as herald.v1).
 * @param {string} data
 */
export function parseSseRecovery(data) {
  let obj;
  try {
    obj = JSON.parse(data);
  } catch (cause) {
    throw new HeraldProtocolError('recovery: data is not JSON', { cause, raw: data });
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new HeraldProtocolError('recovery: data is not a JSON object', { raw: data });
  }
  return recoveryFields(obj, data);
}
