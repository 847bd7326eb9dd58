// A minimal typed event emitter: `on(type, fn)` returns a function that removes the listener,
// `off(type, fn)` removes it too. Event names are checked, so a typo fails loudly instead of
// never firing. A listener that throws does not break the client: the error is rethrown on a
// fresh task (where the host's unhandled-error reporting sees it) and the other listeners run.

export class Emitter {
  /** @type {Map<string, Set<Function>>} */ #listeners = new Map();

  /** @param {readonly string[]} types the event names this emitter fires */
  constructor(types) {
    for (const t of types) this.#listeners.set(t, new Set());
  }

  /**
   * @param {string} type
   * @param {Function} fn
   * @returns {() => void} removes the listener
   */
  on(type, fn) {
    const set = this.#set(type);
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * @param {string} type
   * @param {Function} fn
   */
  off(type, fn) {
    this.#set(type).delete(fn);
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  emit(type, detail) {
    for (const fn of [...this.#set(type)]) {
      try {
        fn(detail);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /** @param {string} type */
  #set(type) {
    const set = this.#listeners.get(type);
    if (!set) {
      throw new TypeError(`unknown event ${JSON.stringify(type)}; known: ${[...this.#listeners.keys()].join(', ')}`);
    }
    return set;
  }
}
