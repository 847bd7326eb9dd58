// De-duplication of pushes by id over a bounded window.
//
// Delivery is at-least-once: a push may arrive twice (a processor retried after a timeout, the
// edge replayed missed pushes on resume, or the client moved to another edge while the push was
// in flight). The client remembers the ids of the last `size` pushes, in order of first arrival,
// and drops a push whose id it still remembers. Memory is bounded: the oldest id is forgotten
// when a new one arrives in a full window.

/** A first-in-first-out set of the most recent `size` ids. */
export class IdWindow {
  /** @type {number} */ #size;
  /** @type {Set<string>} */ #ids = new Set();
  /** Ring of ids in arrival order; `#next` is the slot the next id overwrites. */
  /** @type {string[]} */ #ring = [];
  #next = 0;

  /** @param {number} size how many ids to remember; 0 disables de-duplication */
  constructor(size = 1000) {
    if (!(Number.isInteger(size) && size >= 0)) {
      throw new RangeError(`dedupWindow must be a whole number >= 0, got ${size}`);
    }
    this.#size = size;
  }

  /** Capacity of the window. */
  get capacity() {
    return this.#size;
  }

  /** Ids currently remembered. */
  get size() {
    return this.#ids.size;
  }

  /** @param {string} id */
  has(id) {
    return this.#ids.has(id);
  }

  /**
   * Remembers `id`. Returns true when it is new, false when it is still in the window (a
   * duplicate). Seeing a duplicate does not move it: ids leave in order of first arrival.
   * @param {string} id
   */
  add(id) {
    if (this.#size === 0) return true;
    if (this.#ids.has(id)) return false;
    if (this.#ring.length < this.#size) {
      this.#ring.push(id);
    } else {
      this.#ids.delete(this.#ring[this.#next]);
      this.#ring[this.#next] = id;
      this.#next = (this.#next + 1) % this.#size;
    }
    this.#ids.add(id);
    return true;
  }
}
