/**
 * The child's requests waiting for a response, by id. Ids come from RequestIdAllocator in
 * increasing order, and responses mostly come back in about that order, so the common case is a
 * window: an array indexed by `id - base`, with no hashing. A Map takes what does not fit the
 * window (ids after a wrap, or entries moved out when the window got sparse). A burst of 200,000
 * requests costs an array push and an array store each instead of a hash-table insert and delete.
 */

/**
 * Invariants:
 * - `size` = entries in the window + entries in the map; an id is in at most one of them.
 * - The window is `#slots[#head ..]`, holding ids `#base ..` in order; its first slot, when it
 *   has any, is occupied (taken slots at the front are dropped at once).
 * - The window's length stays below `4 * entries + MIN_WINDOW` (past that, its entries move to the
 *   map and the window restarts), so a request that never gets an answer cannot make the table
 *   grow with the requests sent after it.
 */
export class PendingTable<T> {
  #slots: Array<T | undefined> = [];
  #head = 0;
  #base = 0;
  #inWindow = 0;
  readonly #map = new Map<number, T>();

  get size(): number {
    return this.#inWindow + this.#map.size;
  }

  /** Slots the window spans (taken ones included): what its array holds. For tests and diagnostics. */
  get windowSlots(): number {
    return this.#slots.length - this.#head;
  }

  has(id: number): boolean {
    return this.#slot(id) !== undefined || this.#map.has(id);
  }

  /** Precondition: `id` is not in the table. */
  set(id: number, value: T): void {
    const length = this.#slots.length - this.#head;
    if (length === 0) {
      this.#slots = [];
      this.#head = 0;
      this.#base = id;
    } else if (id !== this.#base + length) {
      this.#map.set(id, value);
      return;
    }
    this.#slots.push(value);
    this.#inWindow++;
    if (length + 1 >= 4 * this.#inWindow + MIN_WINDOW) this.#spill();
  }

  /** Removes and returns the entry for `id`, if there is one. */
  take(id: number): T | undefined {
    const at = this.#index(id);
    if (at < 0) {
      const value = this.#map.get(id);
      if (value !== undefined) this.#map.delete(id);
      return value;
    }
    const value = this.#slots[at];
    if (value === undefined) return undefined;
    this.#slots[at] = undefined;
    this.#inWindow--;
    if (at === this.#head) this.#dropTakenFront();
    return value;
  }

  /** Every entry, window first; then the table is empty. */
  drain(): T[] {
    const all: T[] = [];
    for (let i = this.#head; i < this.#slots.length; i++) {
      const value = this.#slots[i];
      if (value !== undefined) all.push(value);
    }
    for (const value of this.#map.values()) all.push(value);
    this.#slots = [];
    this.#head = 0;
    this.#inWindow = 0;
    this.#map.clear();
    return all;
  }

  #index(id: number): number {
    const offset = id - this.#base;
    return offset >= 0 && offset < this.#slots.length - this.#head ? this.#head + offset : -1;
  }

  #slot(id: number): T | undefined {
    const at = this.#index(id);
    return at < 0 ? undefined : this.#slots[at];
  }

  #dropTakenFront(): void {
    const slots = this.#slots;
    let head = this.#head;
    while (head < slots.length && slots[head] === undefined) head++;
    this.#base += head - this.#head;
    this.#head = head;
    if (head === slots.length) {
      this.#slots = [];
      this.#head = 0;
    } else if (head > 1024 && head * 2 > slots.length) {
      // Let go of the dead front now and then, so the array does not keep it.
      this.#slots = slots.slice(head);
      this.#head = 0;
    }
  }

  /** The window got sparse (an early request is still unanswered): move its entries to the map. */
  #spill(): void {
    for (let i = this.#head; i < this.#slots.length; i++) {
      const value = this.#slots[i];
      if (value !== undefined) this.#map.set(this.#base + i - this.#head, value);
    }
    this.#slots = [];
    this.#head = 0;
    this.#inWindow = 0;
  }
}

/** Window slack: below this length the window is never spilled. */
const MIN_WINDOW = 1024;
