// Herald client: a push stream over WebSocket (herald.v1) with an SSE fallback, for browsers
// and Node. See README.md for usage and the reconnect policy, index.d.ts for the types.
//
// Layout:
//   client.js    HeraldClient: connection attempts, the reconnect policy, events
//   protocol.js  herald.v1 messages, SSE event data, close codes (pure)
//   backoff.js   capped exponential backoff with full jitter (pure)
//   dedup.js     bounded window of recent push ids (pure)
//   url.js       endpoint URLs with access_token and last_event_id (pure)
//   emitter.js   the on()/off() event emitter

export { HeraldClient, State, TRANSPORTS, EVENTS, MAX_ASKED_DELAY_MS } from './client.js';
export {
  SUBPROTOCOL,
  CloseCode,
  DisconnectReason,
  ErrorKind,
  HeraldProtocolError,
  closeReason,
  decodeBase64,
  parseMessage,
  parseSseRecovery,
  POSITION,
  isPosition,
  sseReconnectDelay,
} from './protocol.js';
export { Backoff } from './backoff.js';
export { IdWindow } from './dedup.js';
export { endpointUrl } from './url.js';
