// HeraldClient: one logical push stream kept alive over WebSocket (herald.v1) or SSE.
//
// The client owns the reconnect policy; the sockets are injected constructors, so the same
// code runs in browsers (the globals), in Node (any WebSocket/EventSource implementation) and
// in tests (fakes driven by a fake clock and a seeded random source).
//
// Life of a connection attempt:
//   connecting ─ getToken() ─ socket ─ open ─ (herald.v1: welcome) ─ connected ─ pushes …
//   then one of:
//     reconnect ask   → close the socket ourselves, wait the asked delay, connect again
//                       (not a failure: the backoff does not grow)
//     replaced        → close, stop for good (another tab or instance owns the stream)
//     drop / error    → backoff (full jitter), connect again; a connection that stayed up for
//                       `healthyAfterMs` has reset the backoff first
//     failure before the connection was established (401/403/503 are invisible to a browser)
//                     → `error` event, backoff, and after `fallbackAfter` consecutive failures
//                       before `open` the next transport in `transports`
// Every attempt gets a fresh token from getToken(), which is why EventSource's own retry (which
// would reuse the URL and so the old token) is never allowed to run.
//
// Every scheduled reconnect goes to the next edge of `urls` (round robin; one `url` means
// always the same edge) and, with `resume`, names the last position seen (`last_event_id`), so
// the edge it lands on replays what was missed (`recovery` event) — pushes are de-duplicated
// by id over a bounded window, whichever edge delivered them.

import { Backoff } from './backoff.js';
import { IdWindow } from './dedup.js';
import { Emitter } from './emitter.js';
import {
  CloseCode,
  DisconnectReason,
  ErrorKind,
  HeraldProtocolError,
  SUBPROTOCOL,
  closeReason,
  isPosition,
  parseMessage,
  parseSseRecovery,
  sseReconnectDelay,
} from './protocol.js';
import { endpointUrl } from './url.js';

/** The client's state, readable as `client.state`. */
export const State = Object.freeze({
  /** Created, start() not called yet. */
  IDLE: 'idle',
  /** Fetching a token or waiting for the socket to open (and, on herald.v1, the welcome). */
  CONNECTING: 'connecting',
  /** Connected: pushes flow. */
  CONNECTED: 'connected',
  /** Waiting out a reconnect delay. */
  WAITING: 'waiting',
  /** The page is hidden and `pauseWhenHidden` is on: no connection until it is visible. */
  PAUSED: 'paused',
  /** Stopped by close() or because the stream was replaced; start() starts again. */
  STOPPED: 'stopped',
});

/** Transports in the client's default order of preference. */
export const TRANSPORTS = Object.freeze(['websocket', 'sse']);

/** Event names accepted by on()/off(). */
export const EVENTS = Object.freeze([
  'connecting',
  'connected',
  'push',
  'disconnected',
  'error',
  'recovery',
]);

/** The longest reconnect delay the client accepts from the edge (a guard against garbage). */
export const MAX_ASKED_DELAY_MS = 5 * 60 * 1000;

const WS_OPEN_OR_CONNECTING = new Set([0, 1]);

/**
 * @typedef {object} Connection one connection attempt and what happened on it
 * @property {'websocket' | 'sse'} transport
 * @property {any} socket the WebSocket or EventSource
 * @property {boolean} opened the transport's `open` fired (the HTTP handshake succeeded)
 * @property {boolean} connected `connected` was emitted (herald.v1: the welcome arrived)
 * @property {boolean} v1 the edge accepted the herald.v1 subprotocol
 * @property {string} [sseLastId] SSE: the `lastEventId` of the previous event on this
 *   EventSource (an event without an `id:` line inherits it, so an equal value means "no id")
 */

export class HeraldClient {
  #emitter = new Emitter(EVENTS);
  /** @type {(string | { href: string })[]} the edges, tried in turn */ #urls;
  /** Index into #urls of the edge the next attempt uses. */
  #urlIndex = 0;
  /** @type {(() => unknown) | undefined} */ #getToken;
  /** @type {('websocket' | 'sse')[]} transports that can run here, in order of preference */
  #transports;
  /** Index into #transports of the transport the next attempt uses. */
  #transportIndex = 0;
  /** Consecutive failures before `open` on the current transport (drives the fallback). */
  #preOpenFailures = 0;
  #fallbackAfter;
  /** @type {Backoff} */ #backoff;
  #healthyAfterMs;
  /** @type {IdWindow} */ #ids;
  #resume;
  /** @type {string | undefined} where the stream stopped: the last push's position */
  #lastEventId;
  #pauseWhenHidden;
  #hiddenGraceMs;
  #withCredentials;
  /** @type {any} */ #WebSocket;
  /** @type {any} */ #EventSource;
  /** @type {{ setTimeout: Function, clearTimeout: Function }} */ #timers;
  /** @type {any} the page's document (visibility), or undefined */ #document;
  /** @type {string | undefined} base for a relative `url` */ #location;

  /** @type {import('../index.js').ClientState} */
  #state = State.IDLE;
  /** @type {Connection | null} */ #conn = null;
  /** Bumped whenever an attempt in progress must be abandoned (close, pause, a newer attempt). */
  #generation = 0;
  /**
   * Timer handles: the pending reconnect, the reset of the backoff once a connection stayed up
   * for `healthyAfterMs`, and the pause once the page stayed hidden for `hiddenGraceMs`.
   * @type {{ reconnect: unknown, healthy: unknown, hidden: unknown }}
   */
  #pending = { reconnect: null, healthy: null, hidden: null };
  /** @type {string | undefined} */ #device;
  #duplicates = 0;
  #visibilityListening = false;

  /** @param {import('../index.js').HeraldClientOptions} options */
  constructor(options) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('HeraldClient needs an options object with at least `url`');
    }
    const {
      url,
      urls,
      getToken,
      transports = TRANSPORTS,
      fallbackAfter = 2,
      backoff = {},
      healthyAfterMs = 10_000,
      dedupWindow = 1000,
      resume = true,
      lastEventId,
      pauseWhenHidden = false,
      hiddenGraceMs = 0,
      withCredentials = false,
      WebSocket = globalThis.WebSocket,
      EventSource = globalThis.EventSource,
      timers,
      random = Math.random,
      document = globalThis.document,
      location = globalThis.location?.href,
    } = options;

    if (getToken !== undefined && typeof getToken !== 'function') {
      throw new TypeError('getToken must be a function returning a token (or a promise of one)');
    }
    if (!Array.isArray(transports) || transports.length === 0) {
      throw new TypeError(`transports must be a non-empty array of ${TRANSPORTS.join(', ')}`);
    }
    for (const t of transports) {
      if (!TRANSPORTS.includes(t)) throw new TypeError(`unknown transport ${JSON.stringify(t)}`);
    }
    if (new Set(transports).size !== transports.length) {
      throw new TypeError('transports must not repeat a transport');
    }
    if (!(Number.isInteger(fallbackAfter) && fallbackAfter >= 1)) {
      throw new RangeError(`fallbackAfter must be a whole number >= 1, got ${fallbackAfter}`);
    }
    if (!(Number.isFinite(healthyAfterMs) && healthyAfterMs >= 0)) {
      throw new RangeError(`healthyAfterMs must be a number >= 0, got ${healthyAfterMs}`);
    }
    if (!(Number.isFinite(hiddenGraceMs) && hiddenGraceMs >= 0)) {
      throw new RangeError(`hiddenGraceMs must be a number >= 0, got ${hiddenGraceMs}`);
    }
    /** @type {Record<string, boolean>} */
    const available = { websocket: typeof WebSocket === 'function', sse: typeof EventSource === 'function' };
    this.#transports = transports.filter((t) => available[t]);
    if (this.#transports.length === 0) {
      throw new TypeError(
        `none of the transports ${transports.join(', ')} is available here: pass a WebSocket or EventSource constructor`,
      );
    }
    if (url !== undefined && urls !== undefined) {
      throw new TypeError('pass either `url` or `urls`, not both');
    }
    const list = urls !== undefined ? urls : url === undefined ? [] : [url];
    if (!Array.isArray(list) || list.length === 0) {
      throw new TypeError('HeraldClient needs `url` (the edge) or `urls` (a non-empty array of edges)');
    }
    // Fail at construction, not at the first connect, on a URL that cannot work.
    for (const u of list) for (const t of this.#transports) endpointUrl(u, t, { location });

    this.#urls = [...list];
    this.#getToken = getToken;
    this.#fallbackAfter = fallbackAfter;
    this.#backoff = new Backoff({ ...backoff, random });
    this.#healthyAfterMs = healthyAfterMs;
    this.#ids = new IdWindow(dedupWindow);
    this.#resume = Boolean(resume);
    this.#lastEventId = lastEventId == null || lastEventId === '' ? undefined : String(lastEventId);
    this.#pauseWhenHidden = Boolean(pauseWhenHidden);
    this.#hiddenGraceMs = hiddenGraceMs;
    this.#withCredentials = Boolean(withCredentials);
    this.#WebSocket = WebSocket;
    this.#EventSource = EventSource;
    this.#timers = timers ?? {
      setTimeout: (/** @type {() => void} */ fn, /** @type {number} */ ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (/** @type {any} */ handle) => globalThis.clearTimeout(handle),
    };
    this.#document = document;
    this.#location = location;
  }

  /** One of State. */
  get state() {
    return this.#state;
  }

  /** The transport of the current connection, or the one the next attempt uses. */
  get transport() {
    return this.#conn?.transport ?? this.#transports[this.#transportIndex];
  }

  /** The edge (an entry of `urls`, or `url`) of the current connection or the next attempt. */
  get url() {
    const u = this.#urls[this.#urlIndex];
    return typeof u === 'string' ? u : u.href;
  }

  /** The device id from the last herald.v1 welcome. */
  get device() {
    return this.#device;
  }

  /** Where the stream stopped: passed as `last_event_id` on the next connect when `resume`. */
  get lastEventId() {
    return this.#lastEventId;
  }

  /** Pushes dropped because their id was seen within the de-duplication window. */
  get duplicates() {
    return this.#duplicates;
  }

  /** Consecutive failures the backoff is counting. */
  get failures() {
    return this.#backoff.failures;
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @param {string} type
   * @param {Function} listener
   */
  on(type, listener) {
    return this.#emitter.on(type, listener);
  }

  /**
   * Removes a listener.
   * @param {string} type
   * @param {Function} listener
   */
  off(type, listener) {
    this.#emitter.off(type, listener);
  }

  /** Starts connecting (again, after close() or a replacement). Does nothing while running. */
  start() {
    if (this.#state !== State.IDLE && this.#state !== State.STOPPED) return;
    this.#listenToVisibility(true);
    if (this.#pauseWhenHidden && this.#hidden()) {
      this.#state = State.PAUSED;
      return;
    }
    this.#connect();
  }

  /** Closes the connection and stops reconnecting. */
  close() {
    if (this.#state === State.IDLE || this.#state === State.STOPPED) return;
    this.#stop(DisconnectReason.CLOSED, {});
  }

  // ---- connecting ---------------------------------------------------------------------------

  async #connect() {
    this.#clearTimer('reconnect');
    const generation = ++this.#generation;
    const transport = this.#transports[this.#transportIndex];
    const base = this.#urls[this.#urlIndex];
    this.#state = State.CONNECTING;
    this.#emitter.emit('connecting', { transport, url: this.url, attempt: this.#backoff.failures + 1 });

    let token;
    try {
      token = this.#getToken ? await this.#getToken() : undefined;
      if (token != null && typeof token !== 'string') {
        throw new TypeError(`getToken() must return a string, got ${typeof token}`);
      }
    } catch (error) {
      if (generation === this.#generation) this.#retryAfterError(ErrorKind.TOKEN, transport, { error }, false);
      return;
    }
    // close(), a pause or another attempt happened while the token was being fetched.
    if (generation !== this.#generation) return;

    const url = endpointUrl(base, transport, {
      token: /** @type {string | null | undefined} */ (token),
      lastEventId: this.#resume ? this.#lastEventId : undefined,
      location: this.#location,
    });
    try {
      if (transport === 'websocket') this.#openWebSocket(url);
      else this.#openEventSource(url);
    } catch (error) {
      // A constructor that throws (bad URL, a browser's SecurityError) is a failed handshake.
      this.#conn = null;
      this.#retryAfterError(ErrorKind.HANDSHAKE, transport, { error }, true);
    }
  }

  /** @param {string} url */
  #openWebSocket(url) {
    const ws = new this.#WebSocket(url, [SUBPROTOCOL]);
    /** @type {Connection} */
    const conn = { transport: 'websocket', socket: ws, opened: false, connected: false, v1: false };
    this.#conn = conn;
    // Binary pushes (plain mode) as ArrayBuffer, never as Blob (which reads asynchronously).
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => {
      if (this.#conn !== conn) return;
      conn.opened = true;
      conn.v1 = ws.protocol === SUBPROTOCOL;
      this.#preOpenFailures = 0;
      // herald.v1 is connected at its welcome (which names the device); plain mode at open.
      if (!conn.v1) this.#onConnected(conn, { protocol: 'plain' });
    });
    ws.addEventListener('message', (/** @type {{ data: unknown }} */ event) => {
      if (this.#conn !== conn) return;
      this.#onWebSocketMessage(conn, event.data);
    });
    ws.addEventListener('close', (/** @type {{ code?: number, reason?: string }} */ event) => {
      if (this.#conn !== conn) return;
      this.#onWebSocketClose(conn, event.code ?? CloseCode.ABNORMAL);
    });
    // An error is always followed by a close event, which carries the decision.
    ws.addEventListener('error', () => {});
  }

  /** @param {string} url */
  #openEventSource(url) {
    const es = new this.#EventSource(url, { withCredentials: this.#withCredentials });
    /** @type {Connection} */
    const conn = { transport: 'sse', socket: es, opened: false, connected: false, v1: false };
    this.#conn = conn;
    es.addEventListener('open', () => {
      if (this.#conn !== conn) return;
      conn.opened = true;
      this.#preOpenFailures = 0;
      this.#onConnected(conn, { protocol: 'sse' });
    });
    es.addEventListener('message', (/** @type {{ data: string, lastEventId?: string }} */ event) => {
      if (this.#conn !== conn) return;
      // An event without an `id:` line (a broadcast) keeps the EventSource's previous
      // lastEventId; ids are unique per push, so the same value again means "no id".
      const raw = event.lastEventId ? event.lastEventId : undefined;
      const id = raw !== undefined && raw !== conn.sseLastId ? raw : undefined;
      conn.sseLastId = raw;
      // The SSE id is the push's position when the edge keeps history, else its herald-id.
      this.#onPush(conn, { id, data: event.data, binary: false, pos: isPosition(id) ? id : undefined });
    });
    es.addEventListener('reconnect', (/** @type {{ data?: unknown }} */ event) => {
      if (this.#conn !== conn) return;
      this.#onAsked(conn, DisconnectReason.RECONNECT, { retryMs: sseReconnectDelay(event.data) });
    });
    es.addEventListener('replaced', () => {
      if (this.#conn !== conn) return;
      this.#stop(DisconnectReason.REPLACED, {});
    });
    es.addEventListener('recovery', (/** @type {{ data: string, lastEventId?: string }} */ event) => {
      if (this.#conn !== conn) return;
      // No `id:` line: whatever lastEventId it shows is inherited, not a new id.
      conn.sseLastId = event.lastEventId ? event.lastEventId : undefined;
      try {
        this.#onRecovery(conn, parseSseRecovery(event.data));
      } catch (error) {
        this.#protocolError(conn, error);
      }
    });
    es.addEventListener('error', () => {
      if (this.#conn !== conn) return;
      // Close it before EventSource retries on its own with the old URL (and the old token).
      this.#detach();
      if (conn.connected) this.#retryAfterDrop(conn, DisconnectReason.NETWORK, {});
      else this.#retryAfterError(ErrorKind.HANDSHAKE, conn.transport, {}, !conn.opened);
    });
  }

  // ---- what arrives ---------------------------------------------------------------------------

  /**
   * @param {Connection} conn
   * @param {unknown} data
   */
  #onWebSocketMessage(conn, data) {
    if (!conn.v1) {
      // Plain mode: each message is one push, verbatim, without an id.
      const bytes = toBytes(data);
      if (typeof data === 'string') this.#onPush(conn, { id: undefined, data, binary: false });
      else if (bytes) this.#onPush(conn, { id: undefined, data: bytes, binary: true });
      else this.#protocolError(conn, new HeraldProtocolError('message of an unknown kind'));
      return;
    }
    if (typeof data !== 'string') {
      this.#protocolError(conn, new HeraldProtocolError('binary frame on a herald.v1 connection'));
      return;
    }
    let msg;
    try {
      msg = parseMessage(data);
    } catch (error) {
      this.#protocolError(conn, error);
      return;
    }
    if (msg === null) return; // an unknown type: ignored (forward compatibility)
    switch (msg.type) {
      case 'welcome':
        this.#device = msg.device;
        this.#onConnected(conn, { protocol: SUBPROTOCOL, device: msg.device, pingMs: msg.pingMs });
        break;
      case 'push':
        this.#onPush(conn, msg);
        break;
      case 'reconnect':
        this.#onAsked(conn, DisconnectReason.RECONNECT, { askReason: msg.reason, retryMs: msg.retryMs });
        break;
      case 'replaced':
        this.#stop(DisconnectReason.REPLACED, {});
        break;
      case 'recovery':
        this.#onRecovery(conn, msg);
        break;
    }
  }

  /**
   * @param {Connection} conn
   * @param {number} code
   */
  #onWebSocketClose(conn, code) {
    const reason = closeReason(code);
    if (reason === DisconnectReason.REPLACED) {
      this.#stop(DisconnectReason.REPLACED, { code });
      return;
    }
    if (conn.opened && (reason === DisconnectReason.RECONNECT || reason === DisconnectReason.SHUTDOWN)) {
      this.#onAsked(conn, reason, { code });
      return;
    }
    this.#detach(false);
    if (conn.connected) this.#retryAfterDrop(conn, reason, { code });
    else this.#retryAfterError(ErrorKind.HANDSHAKE, conn.transport, { code }, !conn.opened);
  }

  /**
   * @param {Connection} conn
   * @param {{ protocol: string, device?: string, pingMs?: number }} info
   */
  #onConnected(conn, { protocol, device, pingMs }) {
    if (conn.connected) return;
    conn.connected = true;
    this.#state = State.CONNECTED;
    this.#setTimer('healthy', this.#healthyAfterMs, () => {
      if (this.#conn === conn) this.#backoff.reset();
    });
    /** @type {Record<string, unknown>} */
    const detail = { transport: conn.transport, protocol };
    if (device !== undefined) detail.device = device;
    if (pingMs !== undefined) detail.pingMs = pingMs;
    this.#emitter.emit('connected', detail);
  }

  /**
   * herald.v1 sends its welcome first; should an edge not, the first other message connects.
   * @param {Connection} conn
   */
  #ensureConnected(conn) {
    if (!conn.connected) this.#onConnected(conn, { protocol: conn.v1 ? SUBPROTOCOL : conn.transport === 'sse' ? 'sse' : 'plain' });
  }

  /**
   * @param {Connection} conn
   * @param {{ id: string | undefined, data: string | Uint8Array, binary: boolean, pos?: string }} push
   */
  #onPush(conn, { id, data, binary, pos }) {
    this.#ensureConnected(conn);
    if (id !== undefined && !this.#ids.add(id)) {
      this.#duplicates += 1;
      return;
    }
    // Only positions are resumable; a herald-id names a push the edge keeps no history of.
    if (isPosition(pos)) this.#lastEventId = pos;
    /** @type {Record<string, unknown>} */
    const detail = { id, data, binary, transport: conn.transport };
    if (pos !== undefined) detail.pos = pos;
    this.#emitter.emit('push', detail);
  }

  /**
   * The edge's answer to `last_event_id` (herald.v1 `recovery`, SSE `event: recovery`): it
   * comes before the replayed pushes (recovered) or before the live ones (not recovered).
   * @param {Connection} conn
   * @param {{ recovered: boolean, count?: number, reason?: string }} answer
   */
  #onRecovery(conn, { recovered, count, reason }) {
    this.#ensureConnected(conn);
    // A position the edge cannot parse (one given as the `lastEventId` option) never will be:
    // forget it rather than ask with it on every reconnect.
    if (!recovered && reason === 'malformed_position') this.#lastEventId = undefined;
    /** @type {Record<string, unknown>} */
    const detail = { recovered, transport: conn.transport };
    if (count !== undefined) detail.count = count;
    if (reason !== undefined) detail.reason = reason;
    this.#emitter.emit('recovery', detail);
  }

  /**
   * @param {Connection} conn
   * @param {unknown} error
   */
  #protocolError(conn, error) {
    this.#emitter.emit('error', { kind: ErrorKind.PROTOCOL, transport: conn.transport, error });
  }

  // ---- leaving ------------------------------------------------------------------------------

  /**
   * The edge asked the client to reconnect (message, close 4001/1001, SSE event): close the
   * socket from this side (so TIME_WAIT lands here, not on the edge) and come back after the
   * asked delay, or a jittered one below the backoff base when none was given. Not a failure.
   * @param {Connection} conn
   * @param {string} reason RECONNECT or SHUTDOWN
   * @param {{ askReason?: string, retryMs?: number, code?: number }} info
   */
  #onAsked(conn, reason, { askReason, retryMs, code }) {
    this.#ensureConnected(conn);
    this.#detach();
    const delay =
      retryMs !== undefined
        ? Math.min(Math.round(retryMs), MAX_ASKED_DELAY_MS)
        : this.#backoff.jitter(this.#backoff.baseMs);
    this.#schedule(delay);
    /** @type {Record<string, unknown>} */
    const detail = { reason, transport: conn.transport, willReconnect: true, retryInMs: delay };
    if (askReason !== undefined) detail.askReason = askReason;
    if (code !== undefined) detail.code = code;
    this.#emitter.emit('disconnected', detail);
  }

  /**
   * An established connection dropped: count a failure and back off.
   * @param {Connection} conn
   * @param {string} reason
   * @param {{ code?: number }} info
   */
  #retryAfterDrop(conn, reason, { code }) {
    const delay = this.#backoff.fail();
    this.#schedule(delay);
    /** @type {Record<string, unknown>} */
    const detail = { reason, transport: conn.transport, willReconnect: true, retryInMs: delay };
    if (code !== undefined) detail.code = code;
    this.#emitter.emit('disconnected', detail);
  }

  /**
   * An attempt failed before it was established: count a failure, move to the next transport
   * after `fallbackAfter` such failures before `open`, back off, and say so in an `error` event.
   * @param {string} kind one of ErrorKind
   * @param {'websocket' | 'sse'} transport
   * @param {{ code?: number, error?: unknown }} info
   * @param {boolean} beforeOpen the transport never opened (counts towards the fallback)
   */
  #retryAfterError(kind, transport, info, beforeOpen) {
    if (beforeOpen) {
      this.#preOpenFailures += 1;
      if (this.#preOpenFailures >= this.#fallbackAfter && this.#transports.length > 1) {
        this.#transportIndex = (this.#transportIndex + 1) % this.#transports.length;
        this.#preOpenFailures = 0;
      }
    }
    const delay = this.#backoff.fail();
    this.#schedule(delay);
    this.#emitter.emit('error', {
      kind,
      transport,
      ...info,
      failures: this.#backoff.failures,
      retryInMs: delay,
      nextTransport: this.#transports[this.#transportIndex],
    });
  }

  /**
   * Stops for good (close(), or replaced): no reconnect until start().
   * @param {string} reason CLOSED or REPLACED
   * @param {{ code?: number }} info
   */
  #stop(reason, { code }) {
    const conn = this.#detach();
    this.#generation += 1;
    this.#clearTimer('reconnect');
    this.#clearTimer('hidden');
    this.#listenToVisibility(false);
    this.#state = State.STOPPED;
    if (conn && (conn.connected || reason === DisconnectReason.REPLACED)) {
      /** @type {Record<string, unknown>} */
      const detail = { reason, transport: conn.transport, willReconnect: false };
      if (code !== undefined) detail.code = code;
      this.#emitter.emit('disconnected', detail);
    }
  }

  /**
   * Forgets the current connection and, unless it is already closed, closes its socket.
   * Returns the connection that was current.
   */
  #detach(closeSocket = true) {
    const conn = this.#conn;
    this.#clearTimer('healthy');
    if (!conn) return null;
    this.#conn = null;
    if (closeSocket) {
      try {
        if (conn.transport === 'sse') conn.socket.close();
        else if (WS_OPEN_OR_CONNECTING.has(conn.socket.readyState)) conn.socket.close(CloseCode.NORMAL);
      } catch {
        // Closing a socket that is already going away is not worth an error.
      }
    }
    return conn;
  }

  /**
   * Schedules the next attempt, on the next edge of `urls` (round robin: after a drain, a
   * reconnect ask, a drop or a failure the client moves on; with one URL it stays).
   * @param {number} delay
   */
  #schedule(delay) {
    this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
    this.#state = State.WAITING;
    this.#setTimer('reconnect', delay, () => this.#connect());
  }

  /**
   * @param {'reconnect' | 'healthy' | 'hidden'} which
   * @param {number} ms
   * @param {() => void} fn
   */
  #setTimer(which, ms, fn) {
    this.#clearTimer(which);
    this.#pending[which] = this.#timers.setTimeout(() => {
      this.#pending[which] = null;
      fn();
    }, ms);
  }

  /** @param {'reconnect' | 'healthy' | 'hidden'} which */
  #clearTimer(which) {
    const handle = this.#pending[which];
    this.#pending[which] = null;
    if (handle !== null) this.#timers.clearTimeout(handle);
  }

  // ---- page visibility -------------------------------------------------------------------------

  #hidden() {
    return this.#document?.visibilityState === 'hidden';
  }

  /** @param {boolean} on */
  #listenToVisibility(on) {
    const doc = this.#document;
    if (!this.#pauseWhenHidden || !doc || typeof doc.addEventListener !== 'function') return;
    if (on && !this.#visibilityListening) doc.addEventListener('visibilitychange', this.#onVisibilityChange);
    if (!on && this.#visibilityListening) doc.removeEventListener('visibilitychange', this.#onVisibilityChange);
    this.#visibilityListening = on;
  }

  #onVisibilityChange = () => {
    if (this.#state === State.IDLE || this.#state === State.STOPPED) return;
    if (this.#hidden()) {
      if (this.#state === State.PAUSED || this.#pending.hidden !== null) return;
      if (this.#hiddenGraceMs > 0) {
        this.#setTimer('hidden', this.#hiddenGraceMs, () => this.#pause());
      } else {
        this.#pause();
      }
      return;
    }
    this.#clearTimer('hidden');
    if (this.#state !== State.PAUSED) return;
    // Resume at once after a healthy stream; after failures, still respect the backoff window.
    const failures = this.#backoff.failures;
    if (failures === 0) this.#connect();
    else this.#schedule(this.#backoff.jitter(this.#backoff.bound(failures)));
  };

  #pause() {
    const conn = this.#detach();
    this.#generation += 1;
    this.#clearTimer('reconnect');
    this.#state = State.PAUSED;
    if (conn?.connected) {
      this.#emitter.emit('disconnected', {
        reason: DisconnectReason.PAUSED,
        transport: conn.transport,
        willReconnect: true,
      });
    }
  }
}

/**
 * Binary WebSocket data as bytes (ArrayBuffer, a typed array or a Node Buffer), else null.
 * @param {unknown} data
 * @returns {Uint8Array | null}
 */
function toBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}
