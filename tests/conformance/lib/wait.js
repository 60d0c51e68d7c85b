// Await-with-timeout helpers. Timeouts here are failure guards only: every wait resolves as
// soon as the awaited event happens, and a timeout means the event never came.

export const DEFAULT_TIMEOUT_MS = 5_000

/**
 * Resolves like `promise`, or rejects once `ms` have passed without it settling.
 * `what` (a string, or a function called at timeout) describes the awaited event.
 */
export function withTimeout(promise, ms, what) {
  let timer
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const description = typeof what === 'function' ? what() : what
      reject(new Error(`timed out after ${ms} ms waiting for ${description}`))
    }, ms)
  })
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer))
}

/**
 * An append-only list of observed events that can be awaited:
 * `await rec.waitFor((item) => item.event === 'x', 'x')` resolves with the first matching
 * item, including items recorded before the call.
 */
export class Recorder {
  constructor(name = 'event') {
    this.name = name
    this.items = []
    this.waiters = new Set()
  }

  /** Bound, so it can be passed directly as a callback. */
  push = (item) => {
    this.items.push(item)
    for (const waiter of [...this.waiters]) waiter()
  }

  get length() {
    return this.items.length
  }

  /** Resolves with the first item matching `predicate`. */
  waitFor(predicate, what = `matching ${this.name}`, ms = DEFAULT_TIMEOUT_MS) {
    return this.waitUntil(() => this.items.find(predicate), what, ms)
  }

  /** Resolves once at least `n` items have been recorded, with the first `n`. */
  waitForCount(n, what = `${n} × ${this.name}`, ms = DEFAULT_TIMEOUT_MS) {
    return this.waitUntil(
      () => (this.items.length >= n ? this.items.slice(0, n) : undefined),
      what,
      ms
    )
  }

  /**
   * Resolves with the first truthy value of `check()`, evaluated now and after every new
   * item (useful when the condition is on other state that changes with the items).
   */
  waitUntil(check, what, ms = DEFAULT_TIMEOUT_MS) {
    const now = check()
    if (now) return Promise.resolve(now)
    let waiter
    const done = new Promise((resolve) => {
      waiter = () => {
        const value = check()
        if (value) {
          this.waiters.delete(waiter)
          resolve(value)
        }
      }
      this.waiters.add(waiter)
    })
    return withTimeout(done, ms, () => `${what} (seen ${this.name}s: ${this.describe()})`).finally(
      () => this.waiters.delete(waiter)
    )
  }

  describe() {
    const text = JSON.stringify(this.items, (_, v) =>
      v instanceof ArrayBuffer ? `<ArrayBuffer ${v.byteLength}>` : v
    )
    return text.length > 600 ? `${text.slice(0, 600)}…` : text
  }
}

/**
 * Waits until the wall clock reaches `epochMs`. Used only where the passage of time IS the
 * scenario (a token's expiry moment must have passed), never to synchronise with the server.
 */
export function waitUntilTime(epochMs) {
  const ms = Math.max(0, epochMs - Date.now())
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Runs `fn` synchronously with a setTimeout whose timers do not keep the process alive.
 *
 * realtime-js/phoenix.js start a timeout timer for every push, including pushes the server
 * never answers (broadcasts without ack, access_token), and `RealtimeClient.disconnect()`
 * starts a 10 s timer it never clears. Those timers still fire while the test runs (the
 * server child process keeps the event loop alive), but they must not hold the test file's
 * process open for 10 s after the last test.
 */
export function unrefTimersDuring(fn) {
  const original = globalThis.setTimeout
  globalThis.setTimeout = function unrefSetTimeout(...args) {
    const timer = original.apply(this, args)
    timer?.unref?.()
    return timer
  }
  try {
    return fn()
  } finally {
    globalThis.setTimeout = original
  }
}
