/**
 * Request deadlines for the child side, with one timer for all of them. A burst of 200,000
 * requests would otherwise create 200,000 Timeout objects; here an entry costs four fields on the
 * request's own record, and adding or removing one is O(1).
 */

/** The fields a timed entry carries (initialise them to `0`/`undefined`, and leave them to this module). */
export interface DeadlineEntry {
  deadline: number;
  prev: DeadlineEntry | undefined;
  next: DeadlineEntry | undefined;
  list: DeadlineList | undefined;
}

interface DeadlineList {
  readonly timeoutMs: number;
  head: DeadlineEntry | undefined;
  tail: DeadlineEntry | undefined;
}

/**
 * Invariants:
 * - One list per timeout value; within a list, entries are in deadline order (same timeout,
 *   monotonic clock), so only list heads can be due. An emptied list is kept for the next entry
 *   with its timeout (one request at a time would otherwise make and drop a list per request);
 *   past MAX_LISTS lists, the empty ones are dropped.
 * - At most one timer, unref'd (whoever waits on an entry keeps the process alive, not this), armed
 *   no later than the earliest deadline while any entry is held. Emptying the set does not clear
 *   it: one request at a time would otherwise create and cancel a timer per request. It fires
 *   once for nothing, at most one timeout after the last entry left, and `clear()` cancels it.
 * - An entry is in at most one list; `onExpired` runs once per expired entry, after its removal.
 */
export class Deadlines<T extends DeadlineEntry> {
  readonly #onExpired: (entry: T) => void;
  readonly #lists = new Map<number, DeadlineList>();
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Infinity;
  #size = 0;

  constructor(onExpired: (entry: T) => void) {
    this.#onExpired = onExpired;
  }

  get size(): number {
    return this.#size;
  }

  /** Precondition: `entry` is in no list and `timeoutMs > 0`. */
  add(entry: T, timeoutMs: number): void {
    let list = this.#lists.get(timeoutMs);
    if (list === undefined) {
      if (this.#lists.size >= MAX_LISTS) this.#dropEmptyLists();
      list = { timeoutMs, head: undefined, tail: undefined };
      this.#lists.set(timeoutMs, list);
    }
    entry.deadline = performance.now() + timeoutMs;
    entry.list = list;
    entry.prev = list.tail;
    entry.next = undefined;
    if (list.tail === undefined) list.head = entry;
    else list.tail.next = entry;
    list.tail = entry;
    this.#size++;
    if (entry.deadline < this.#armedAt) this.#arm(entry.deadline);
  }

  /** Takes `entry` out of its list; a no-op for an entry in none. */
  remove(entry: T): void {
    const list = entry.list;
    if (list === undefined) return;
    if (entry.prev === undefined) list.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) list.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = entry.next = entry.list = undefined;
    this.#size--;
  }

  /** Drops every entry without expiring it. */
  clear(): void {
    for (const list of this.#lists.values()) {
      for (let entry = list.head; entry !== undefined;) {
        const next = entry.next;
        entry.prev = entry.next = entry.list = undefined;
        entry = next;
      }
    }
    this.#lists.clear();
    this.#size = 0;
    this.#disarm();
  }

  #dropEmptyLists(): void {
    for (const [timeoutMs, list] of this.#lists) if (list.head === undefined) this.#lists.delete(timeoutMs);
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(at - performance.now()))).unref();
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = performance.now();
    const due: DeadlineEntry[] = [];
    for (const list of this.#lists.values()) {
      for (let entry = list.head; entry !== undefined && entry.deadline <= now; entry = entry.next) due.push(entry);
    }
    for (const entry of due) {
      if (entry.list === undefined) continue; // settled by an earlier onExpired
      this.remove(entry as T);
      this.#onExpired(entry as T);
    }
    let earliest = Infinity;
    for (const list of this.#lists.values()) if (list.head !== undefined) earliest = Math.min(earliest, list.head.deadline);
    if (earliest < this.#armedAt) this.#arm(earliest);
  };
}

/** Distinct timeouts whose (possibly empty) lists are kept before empty ones are dropped. */
const MAX_LISTS = 16;
