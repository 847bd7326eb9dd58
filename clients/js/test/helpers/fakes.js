// Test doubles for the parts of the world the client touches: WebSocket and EventSource
// (driven by the test as if it were the edge), a virtual clock, a seeded random source and a
// page document. No network, no real time.

/** A small event target: addEventListener/removeEventListener/dispatch. */
class Target {
  /** @type {Map<string, Set<Function>>} */ listeners = new Map();

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  dispatch(type, event = {}) {
    for (const fn of [...(this.listeners.get(type) ?? [])]) fn({ type, ...event });
  }
}

/**
 * A WebSocket the test plays the edge for. Every instance is recorded in `FakeWebSocket.all`
 * (reset it per test with `FakeWebSocket.reset()`), or use `fakeWebSocketClass()` for a
 * class with its own list.
 */
export function fakeWebSocketClass() {
  return class FakeWebSocket extends Target {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    /** @type {FakeWebSocket[]} */
    static all = [];

    static get last() {
      return FakeWebSocket.all.at(-1);
    }

    constructor(url, protocols) {
      super();
      this.url = url;
      this.protocols = protocols;
      this.protocol = '';
      this.readyState = FakeWebSocket.CONNECTING;
      this.binaryType = 'blob';
      /** Calls of close() made by the client: [{code, reason}] */
      this.closeCalls = [];
      FakeWebSocket.all.push(this);
    }

    close(code, reason) {
      this.closeCalls.push({ code, reason });
      this.readyState = FakeWebSocket.CLOSING;
    }

    // ---- the edge's side ----

    /** The upgrade succeeded; `protocol` is the subprotocol the edge picked ('' = plain). */
    serverOpen(protocol = 'herald.v1') {
      this.protocol = protocol;
      this.readyState = FakeWebSocket.OPEN;
      this.dispatch('open');
    }

    /** Sends one message: an object is sent as JSON text. */
    serverSend(data) {
      const payload = typeof data === 'object' && !(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data) ? JSON.stringify(data) : data;
      this.dispatch('message', { data: payload });
    }

    serverClose(code, reason = '') {
      this.readyState = FakeWebSocket.CLOSED;
      this.dispatch('close', { code, reason, wasClean: code !== 1006 });
    }

    /** A failed handshake as a browser reports it (401/403/503 alike): error, then close 1006. */
    failHandshake() {
      this.readyState = FakeWebSocket.CLOSED;
      this.dispatch('error');
      this.dispatch('close', { code: 1006, reason: '', wasClean: false });
    }

    /** The client closed this socket itself. */
    get closedByClient() {
      return this.closeCalls.length > 0;
    }
  };
}

/** An EventSource the test plays the edge for; instances in `.all`. */
export function fakeEventSourceClass() {
  return class FakeEventSource extends Target {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 2;
    /** @type {FakeEventSource[]} */
    static all = [];

    static get last() {
      return FakeEventSource.all.at(-1);
    }

    constructor(url, init) {
      super();
      this.url = url;
      this.init = init;
      this.readyState = FakeEventSource.CONNECTING;
      this.closed = false;
      this.lastEventId = '';
      FakeEventSource.all.push(this);
    }

    close() {
      this.closed = true;
      this.readyState = FakeEventSource.CLOSED;
    }

    // ---- the edge's side ----

    serverOpen() {
      this.readyState = FakeEventSource.OPEN;
      this.dispatch('open');
    }

    /** One event; `id` sets the last event id as EventSource does (it persists). */
    serverEvent({ event = 'message', data = '', id } = {}) {
      if (id !== undefined) this.lastEventId = id;
      this.dispatch(event, { data, lastEventId: this.lastEventId });
    }

    /**
     * The connection failed. `gaveUp` mimics a non-200 answer (EventSource fails the
     * connection: readyState CLOSED); otherwise EventSource would retry on its own.
     */
    serverError({ gaveUp = false } = {}) {
      this.readyState = gaveUp ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING;
      this.dispatch('error');
    }
  };
}

/** A virtual clock: timers fire only when the test advances time. */
export class FakeClock {
  now = 0;
  #seq = 0;
  /** @type {Map<number, { at: number, fn: Function, ms: number }>} */
  #timers = new Map();
  /** Every delay passed to setTimeout, in order. */
  delays = [];

  setTimeout = (fn, ms) => {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.now + ms, fn, ms });
    this.delays.push(ms);
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  /** Pending timers, earliest first: [{id, at, ms}] */
  pending() {
    return [...this.#timers.entries()]
      .map(([id, t]) => ({ id, at: t.at, ms: t.ms }))
      .sort((a, b) => a.at - b.at || a.id - b.id);
  }

  /** Runs every timer due within `ms` from now, in order, moving the clock. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const next = this.pending().find((t) => t.at <= end);
      if (!next) break;
      const timer = this.#timers.get(next.id);
      this.#timers.delete(next.id);
      this.now = next.at;
      timer.fn();
    }
    this.now = end;
  }

  /** Runs the earliest pending timer; returns its delay (undefined when none). */
  runNext() {
    const next = this.pending()[0];
    if (!next) return undefined;
    const timer = this.#timers.get(next.id);
    this.#timers.delete(next.id);
    this.now = Math.max(this.now, next.at);
    timer.fn();
    return next.ms;
  }
}

/** mulberry32: a small seeded PRNG with a uniform output in [0, 1). */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A page document whose visibility the test switches. */
export class FakeDocument extends Target {
  visibilityState = 'visible';

  setVisibility(state) {
    this.visibilityState = state;
    this.dispatch('visibilitychange');
  }

  get listenerCount() {
    return this.listeners.get('visibilitychange')?.size ?? 0;
  }
}

/** Lets pending promise callbacks (an async getToken) run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Records every event of a client: `log.of('push')` lists the details of one type. */
export function recordEvents(client, types = ['connecting', 'connected', 'push', 'disconnected', 'error', 'recovery']) {
  const events = [];
  for (const type of types) client.on(type, (detail) => events.push({ type, detail }));
  return {
    events,
    of: (type) => events.filter((e) => e.type === type).map((e) => e.detail),
    types: () => events.map((e) => e.type),
  };
}

/** Query parameters of a URL as a plain object. */
export function query(url) {
  return Object.fromEntries(new URL(url).searchParams);
}
