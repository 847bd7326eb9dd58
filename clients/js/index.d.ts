// Type declarations of the Herald client (hand-written; the code is plain ES modules in src/).
// They depend on no DOM types, so they compile in Node projects without `lib: ["dom"]`.

/** The transports, in the client's default order of preference. */
export type Transport = 'websocket' | 'sse';

/** The client's state (`client.state`). */
export type ClientState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'paused' | 'stopped';

/** Why a connection ended (`disconnected` event). */
export type DisconnectReasonName =
  | 'reconnect'
  | 'replaced'
  | 'network'
  | 'closed'
  | 'shutdown'
  | 'paused'
  | 'slow_consumer'
  | 'pong_timeout'
  | 'policy'
  | 'protocol_error'
  | 'too_big';

/** What an `error` event is about. */
export type ErrorKindName = 'handshake' | 'token' | 'protocol';

/** The smallest part of a WebSocket the client uses (browser WebSocket, `ws`, undici). */
export interface WebSocketLike {
  readonly protocol: string;
  readonly readyState: number;
  binaryType: string;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

/** A WebSocket constructor: `new WebSocket(url, ['herald.v1'])`. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** The smallest part of an EventSource the client uses (browser EventSource, `eventsource`). */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

/** An EventSource constructor: `new EventSource(url, { withCredentials })`. */
export type EventSourceConstructor = new (
  url: string,
  init: { withCredentials: boolean },
) => EventSourceLike;

/** Timer functions (inject fakes in tests). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: any): void;
}

/** What the client reads of the page's `document`. */
export interface VisibilitySource {
  readonly visibilityState: string;
  addEventListener(type: 'visibilitychange', listener: () => void): void;
  removeEventListener(type: 'visibilitychange', listener: () => void): void;
}

export interface BackoffOptions {
  /** Bound of the delay after the first failure, ms (default 1000). */
  baseMs?: number;
  /** Largest bound, ms (default 30000). */
  capMs?: number;
}

interface HeraldClientCommonOptions {
  /**
   * Called before every connection attempt (the first and each reconnect); its result is sent
   * as `?access_token=`. Return null/undefined to send none (cookie authentication).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Transports in order of preference (default `['websocket', 'sse']`). */
  transports?: Transport[];
  /**
   * Consecutive failures before `open` on one transport after which the next transport in
   * `transports` is tried (default 2). A transport that opened is kept.
   */
  fallbackAfter?: number;
  /** Reconnect backoff: delay = random(0, min(capMs, baseMs * 2^(failures-1))). */
  backoff?: BackoffOptions;
  /** A connection up this long resets the backoff (default 10000 ms). */
  healthyAfterMs?: number;
  /** How many recent push ids to remember for de-duplication (default 1000; 0 = off). */
  dedupWindow?: number;
  /**
   * Send `last_event_id=<position>` when connecting after a push with a position arrived
   * (default true): the edge replays what was missed and answers with a `recovery` event.
   */
  resume?: boolean;
  /** Resume position to start from (e.g. saved from `client.lastEventId`). */
  lastEventId?: string;
  /** Close the connection while `document.visibilityState` is `hidden` (default false). */
  pauseWhenHidden?: boolean;
  /** With `pauseWhenHidden`: stay connected this long after the page hides (default 0 ms). */
  hiddenGraceMs?: number;
  /** EventSource `withCredentials` (send cookies cross-origin; default false). */
  withCredentials?: boolean;
  /** WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** EventSource constructor (default `globalThis.EventSource`). */
  EventSource?: EventSourceConstructor;
  /** Timer functions (default the global setTimeout/clearTimeout). */
  timers?: Timers;
  /** Random source in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
  /** Visibility source (default `globalThis.document`). */
  document?: VisibilitySource;
  /** Base for a relative `url` (default `globalThis.location.href`). */
  location?: string;
}

/** Where the edge is: one `url`, or a list of edges in `urls`. */
export type HeraldClientOptions = HeraldClientCommonOptions &
  (
    | {
        /**
         * Where the edge answers: `https://push.example.com`, `wss://push.example.com/herald`,
         * or a path relative to the page. `/ws` and `/sse` are appended; the scheme is switched
         * per transport. Behind a load balancer this is all you need.
         */
        url: string | { readonly href: string };
        urls?: undefined;
      }
    | {
        url?: undefined;
        /**
         * Several edges (no load balancer in front): the first connect uses the first, and
         * every reconnect (after a reconnect ask such as a drain, a drop or a failure) the next
         * one, round robin. Each entry is read like `url`.
         */
        urls: readonly (string | { readonly href: string })[];
      }
  );

export interface ConnectingEvent {
  transport: Transport;
  /** The edge this attempt goes to (`url`, or the entry of `urls`). */
  url: string;
  /** 1 + the consecutive failures so far. */
  attempt: number;
}

export interface ConnectedEvent {
  transport: Transport;
  /** `herald.v1`, `plain` (the edge did not take the subprotocol: pushes carry no id) or `sse`. */
  protocol: 'herald.v1' | 'plain' | 'sse';
  /** The device id from the herald.v1 welcome. */
  device?: string;
  /** The edge's ping period from the herald.v1 welcome. */
  pingMs?: number;
}

export interface PushEvent {
  /** The push's herald-id (undefined in plain WebSocket mode). */
  id: string | undefined;
  /** Text as is; bytes when `binary`. */
  data: string | Uint8Array;
  /** True when the payload was binary (`data` is a Uint8Array). */
  binary: boolean;
  /** Resumable position, when the edge keeps history. */
  pos?: string;
  transport: Transport;
}

export interface DisconnectedEvent {
  reason: DisconnectReasonName;
  transport: Transport;
  /** WebSocket close code, when the edge closed. */
  code?: number;
  /** With reason `reconnect`: the edge's reason (`lifetime`, `drain`, `shutdown`). */
  askReason?: string;
  /** False after `closed` and `replaced`. */
  willReconnect: boolean;
  /** Delay before the next attempt, when one is scheduled. */
  retryInMs?: number;
}

export interface ErrorEvent {
  kind: ErrorKindName;
  transport: Transport;
  /** What was thrown (token, protocol errors). */
  error?: unknown;
  /** WebSocket close code of a failed attempt (1006 in browsers). */
  code?: number;
  /** Handshake and token errors: consecutive failures counted. */
  failures?: number;
  /** Handshake and token errors: delay before the next attempt. */
  retryInMs?: number;
  /** Handshake and token errors: the transport the next attempt uses. */
  nextTransport?: Transport;
}

/**
 * The edge's answer to `last_event_id`, once per connection that resumed, before any push of
 * that connection.
 */
export interface RecoveryEvent {
  /**
   * True: the `count` missed pushes follow as `push` events, then live ones — nothing was
   * lost. False: pushes since the last position may be lost; **reload the state from your
   * backend** (live pushes follow).
   */
  recovered: boolean;
  /** With `recovered: true`: how many missed pushes are replayed (they follow this event). */
  count?: number;
  /**
   * With `recovered: false`: `too_old` (the position left the history), `epoch_changed` (the
   * history was lost or never existed), `malformed_position`, `too_large` (the missed pushes
   * exceed the connection's outbound queue), `unavailable` (the registry did not answer in
   * time), `disabled` (the edge does no recovery).
   */
  reason?:
    | 'too_old'
    | 'epoch_changed'
    | 'malformed_position'
    | 'too_large'
    | 'unavailable'
    | 'disabled'
    | (string & {});
  transport: Transport;
}

export interface HeraldEventMap {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  push: PushEvent;
  disconnected: DisconnectedEvent;
  error: ErrorEvent;
  recovery: RecoveryEvent;
}

export declare class HeraldClient {
  constructor(options: HeraldClientOptions);
  readonly state: ClientState;
  /** The transport of the current connection, or the one the next attempt uses. */
  readonly transport: Transport;
  /** The edge of the current connection, or the one the next attempt uses. */
  readonly url: string;
  /** The device id from the last herald.v1 welcome. */
  readonly device: string | undefined;
  /** The last push's position (sent as `last_event_id` on reconnect); only positions count. */
  readonly lastEventId: string | undefined;
  /** Pushes dropped as duplicates. */
  readonly duplicates: number;
  /** Consecutive failures the backoff is counting. */
  readonly failures: number;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof HeraldEventMap>(type: K, listener: (event: HeraldEventMap[K]) => void): () => void;
  off<K extends keyof HeraldEventMap>(type: K, listener: (event: HeraldEventMap[K]) => void): void;
  /** Starts connecting; again after close() or a replacement. */
  start(): void;
  /** Closes the connection and stops reconnecting. */
  close(): void;
}

export declare const State: Readonly<{
  IDLE: 'idle';
  CONNECTING: 'connecting';
  CONNECTED: 'connected';
  WAITING: 'waiting';
  PAUSED: 'paused';
  STOPPED: 'stopped';
}>;

export declare const TRANSPORTS: readonly Transport[];
export declare const EVENTS: readonly (keyof HeraldEventMap)[];
export declare const MAX_ASKED_DELAY_MS: number;

// ---- protocol (pure helpers) ---------------------------------------------------------------

export declare const SUBPROTOCOL: 'herald.v1';

export declare const DisconnectReason: Readonly<{
  RECONNECT: 'reconnect';
  REPLACED: 'replaced';
  NETWORK: 'network';
  CLOSED: 'closed';
  SHUTDOWN: 'shutdown';
  PAUSED: 'paused';
  SLOW_CONSUMER: 'slow_consumer';
  PONG_TIMEOUT: 'pong_timeout';
  POLICY: 'policy';
  PROTOCOL_ERROR: 'protocol_error';
  TOO_BIG: 'too_big';
}>;

export declare const ErrorKind: Readonly<{
  HANDSHAKE: 'handshake';
  TOKEN: 'token';
  PROTOCOL: 'protocol';
}>;

export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  ABNORMAL: 1006;
  POLICY: 1008;
  TOO_BIG: 1009;
  REPLACED: 4000;
  RECONNECT: 4001;
  SLOW_CONSUMER: 4002;
  PONG_TIMEOUT: 4003;
}>;

export declare class HeraldProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown; raw?: unknown });
  readonly raw: unknown;
}

export type HeraldMessage =
  | { type: 'welcome'; device?: string; pingMs?: number }
  | { type: 'push'; id: string; data: string | Uint8Array; binary: boolean; pos?: string }
  | { type: 'reconnect'; reason?: string; retryMs?: number }
  | { type: 'replaced' }
  | { type: 'recovery'; recovered: boolean; count?: number; reason?: string };

/** Parses one herald.v1 text frame; null for an unknown type; throws HeraldProtocolError. */
export declare function parseMessage(text: string): HeraldMessage | null;
export declare function parseSseRecovery(data: string): Extract<HeraldMessage, { type: 'recovery' }>;
/** A resumable position: `<epoch, 16 hex>:<ms>-<seq>`. */
export declare const POSITION: RegExp;
/** True when `text` is a resumable position (an SSE id that is not one is a herald-id). */
export declare function isPosition(text: unknown): text is string;
export declare function sseReconnectDelay(data: unknown): number | undefined;
export declare function decodeBase64(text: string): Uint8Array;
export declare function closeReason(code: number): DisconnectReasonName;

// ---- building blocks -----------------------------------------------------------------------

export declare class Backoff {
  constructor(options?: BackoffOptions & { random?: () => number });
  readonly baseMs: number;
  readonly capMs: number;
  readonly failures: number;
  /** Exclusive bound of the delay after `failures` consecutive failures. */
  bound(failures: number): number;
  /** Counts a failure; returns the delay before the next attempt. */
  fail(): number;
  /** A whole number of ms uniformly in [0, bound). */
  jitter(bound: number): number;
  reset(): void;
}

export declare class IdWindow {
  constructor(size?: number);
  readonly capacity: number;
  readonly size: number;
  has(id: string): boolean;
  /** True when new; false when still in the window. */
  add(id: string): boolean;
}

export declare function endpointUrl(
  base: string | { readonly href: string },
  transport: Transport,
  params?: { token?: string | null; lastEventId?: string | null; location?: string },
): string;
