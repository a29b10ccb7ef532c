import type { CommsLog, HandlerContext } from './handlers.js';

/**
 * One request being handled, and the context its handler sees.
 *
 * Invariants:
 * - `signal` is created on first use (most handlers never look at it), and is already aborted if
 *   `abort()` came first; `abort()` takes effect once, its first reason wins.
 * - `deadline` is on the `performance.now()` clock, set when the request enters an
 *   InflightTable (a handler that answers synchronously never does); requests of one table enter
 *   in deadline order, which lets it keep one timer for all of them.
 */
export class InflightRequest<C> implements HandlerContext<C> {
  readonly taskId: string;
  readonly requestId: number;
  readonly type: string;
  readonly context: C;
  readonly log: CommsLog;
  deadline = Infinity;
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  constructor(taskId: string, requestId: number, type: string, context: C, log: CommsLog) {
    this.taskId = taskId;
    this.requestId = requestId;
    this.type = type;
    this.context = context;
    this.log = log;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * A channel's requests in flight, with one timer for all their deadlines.
 *
 * Invariants:
 * - At most one timer, armed for the earliest deadline while any request is in flight and
 *   `timeoutMs > 0`; it is unref'd (a deadline alone must not keep the supervisor alive; the
 *   child's own handles do) and gone after `clear()`.
 * - A request leaves the table exactly once: by `settle`, by expiry (then `onExpired` runs for it,
 *   after it left), or by `clear`.
 */
export class InflightTable<C> {
  readonly timeoutMs: number;
  readonly #onExpired: (req: InflightRequest<C>) => void;
  readonly #requests = new Map<number, InflightRequest<C>>();
  readonly #timers: DeadlineTimers;
  #timer: unknown;
  #cleared = false;

  /**
   * `timeoutMs`: 0 = requests never expire. `onExpired` must not throw. `timers`: where the one
   * deadline timer lives (the supervisor passes its reactor's wheel); default an unref'd setTimeout.
   */
  constructor(timeoutMs: number, onExpired: (req: InflightRequest<C>) => void, timers: DeadlineTimers = unrefTimers) {
    this.timeoutMs = timeoutMs;
    this.#onExpired = onExpired;
    this.#timers = timers;
  }

  get size(): number {
    return this.#requests.size;
  }

  has(id: number): boolean {
    return this.#requests.has(id);
  }

  /** The deadline the next `add` gets: now + timeoutMs on the monotonic clock. */
  nextDeadline(): number {
    return this.timeoutMs > 0 ? performance.now() + this.timeoutMs : Infinity;
  }

  /** Sets `req.deadline` (now + timeoutMs) and adds it. Precondition: no request with this id is in flight. */
  add(req: InflightRequest<C>): void {
    if (this.#cleared) return;
    req.deadline = this.nextDeadline();
    this.#requests.set(req.requestId, req);
    this.#arm();
  }

  /** Takes `req` out if it is still in flight; false if it was already answered or cleared. */
  settle(req: InflightRequest<C>): boolean {
    if (this.#requests.get(req.requestId) !== req) return false;
    this.#requests.delete(req.requestId);
    return true;
  }

  /** Empties the table for good and returns what was in flight. */
  clear(): InflightRequest<C>[] {
    this.#cleared = true;
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timer = undefined;
    const all = [...this.#requests.values()];
    this.#requests.clear();
    return all;
  }

  #arm(): void {
    if (this.#timer !== undefined || this.timeoutMs === 0 || this.#cleared) return;
    // Insertion order is deadline order (same timeout, monotonic clock): the first is the earliest.
    const first = this.#requests.values().next();
    if (first.done) return;
    const delayMs = Math.max(1, Math.ceil(first.value.deadline - performance.now()));
    this.#timer = this.#timers.set(delayMs, this.#fire);
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    const expired: InflightRequest<C>[] = [];
    for (const req of this.#requests.values()) {
      if (req.deadline > now) break;
      expired.push(req);
    }
    for (const req of expired) {
      if (this.#cleared) return;
      this.#requests.delete(req.requestId);
      this.#onExpired(req);
    }
    this.#arm();
  };
}

/** A one-shot timer source for handler deadlines. */
export interface DeadlineTimers {
  set(delayMs: number, cb: () => void): unknown;
  clear(handle: unknown): void;
}

const unrefTimers: DeadlineTimers = {
  set: (delayMs, cb) => setTimeout(cb, delayMs).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
