// Capped exponential backoff with full jitter.
//
// After the n-th consecutive failure (n >= 1) the client waits
//   delay = random(0, min(capMs, baseMs * 2^(n-1)))
// so a crowd of clients that failed together spreads uniformly over the whole window instead
// of coming back in lock-step waves. The failure count is reset once a connection has stayed
// healthy for a while (the client decides when; see client.js).

/** Capped exponential backoff with full jitter over a counter of consecutive failures. */
export class Backoff {
  /** @type {number} */ #baseMs;
  /** @type {number} */ #capMs;
  /** @type {() => number} */ #random;
  /** Consecutive failures since the last reset. */
  #failures = 0;

  /**
   * @param {{ baseMs?: number, capMs?: number, random?: () => number }} [options]
   */
  constructor({ baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
    if (!(Number.isFinite(baseMs) && baseMs > 0)) {
      throw new RangeError(`backoff.baseMs must be a positive number, got ${baseMs}`);
    }
    if (!(Number.isFinite(capMs) && capMs >= baseMs)) {
      throw new RangeError(`backoff.capMs must be a number >= baseMs (${baseMs}), got ${capMs}`);
    }
    if (typeof random !== 'function') throw new TypeError('random must be a function');
    this.#baseMs = baseMs;
    this.#capMs = capMs;
    this.#random = random;
  }

  /** Base delay: the bound after the first failure. */
  get baseMs() {
    return this.#baseMs;
  }

  /** Largest bound: the window never grows beyond it. */
  get capMs() {
    return this.#capMs;
  }

  /** Consecutive failures counted since the last reset. */
  get failures() {
    return this.#failures;
  }

  /**
   * Upper bound (exclusive) of the delay after the given number of consecutive failures.
   * @param {number} failures at least 1
   */
  bound(failures) {
    const n = Math.max(1, Math.floor(failures));
    // 2 ** n is Infinity for large n; min() then picks the cap.
    return Math.min(this.#capMs, this.#baseMs * 2 ** (n - 1));
  }

  /** Counts one more failure and returns the delay to wait before the next attempt, in ms. */
  fail() {
    this.#failures += 1;
    return this.jitter(this.bound(this.#failures));
  }

  /**
   * A uniformly random whole number of milliseconds in [0, bound).
   * @param {number} bound
   */
  jitter(bound) {
    const r = this.#random();
    // Guard against a random source that returns exactly 1 (or garbage).
    const u = r >= 0 && r < 1 ? r : 0;
    return Math.floor(u * bound);
  }

  /** Forgets the failures (called after a connection stayed healthy). */
  reset() {
    this.#failures = 0;
  }
}
