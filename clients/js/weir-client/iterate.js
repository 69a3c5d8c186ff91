// @ts-check
/**
 * Async iteration over a session's events: `for await (const ev of session)`.
 * @module weir-client/iterate
 */

/** @typedef {import('./session.js').WeirSession} WeirSession */
/** @typedef {import('./wire.js').WeirEvent} WeirEvent */
/** @typedef {import('./http.js').WeirError} WeirError */

/**
 * The events of `session` from now on. Starts the connection if it is idle. Ends after the
 * `end` event (or close()); throws the WeirError if the session fails. Leaving the loop early
 * (break) closes the session.
 * @param {WeirSession} session
 * @returns {AsyncIterableIterator<WeirEvent>}
 */
export function eventIterator(session) {
  /** @type {WeirEvent[]} */
  const queue = [];
  /** @type {{resolve: Function, reject: Function}|null} */
  let waiter = null;
  let finished = session.done;
  /** @type {WeirError|undefined} */
  let failure = session.state === 'failed' ? session.error : undefined;
  const sub = {
    /** @param {WeirEvent} ev */
    push: (ev) => {
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.resolve({ value: ev, done: false });
      } else queue.push(ev);
    },
    /** @param {WeirError} [err] */
    finish: (err) => {
      finished = true;
      failure = err;
      session._iterators.delete(sub);
      if (waiter && queue.length === 0) {
        const w = waiter;
        waiter = null;
        if (err) w.reject(err);
        else w.resolve({ value: undefined, done: true });
      }
    },
  };
  if (!finished) session._iterators.add(sub);
  if (session.state === 'idle') session.connect();
  /** @type {AsyncIterableIterator<WeirEvent>} */
  const it = {
    next: () => {
      if (queue.length) return Promise.resolve({ value: /** @type {WeirEvent} */ (queue.shift()), done: false });
      if (finished) {
        if (failure) {
          const e = failure;
          failure = undefined; // throw once, then done
          return Promise.reject(e);
        }
        return Promise.resolve({ value: undefined, done: true });
      }
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return: () => {
      session._iterators.delete(sub);
      queue.length = 0;
      finished = true;
      failure = undefined;
      if (!session.done) session.close();
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  return it;
}
