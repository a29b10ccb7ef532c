/**
 * One OS timer for every deadline of every task (heartbeats, timeouts, grace and drain bounds,
 * exit backstops). Idle supervisors hold no timer at all, so an embedding process can exit.
 *
 * Invariants:
 * 1. At most one Node timer is armed, for the earliest live entry; none when there is no entry.
 * 2. A cancelled entry never runs, even if it was due in the same tick.
 * 3. Callbacks run in deadline order; one that throws does not stop the others (the error goes
 *    to `onError`).
 */
export type TimerId = number;

interface Entry {
  id: TimerId;
  at: number;
  cb: () => void;
}

export class TimerWheel {
  private readonly heap: Entry[] = [];
  private readonly live = new Map<TimerId, Entry>();
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;

  constructor(private readonly onError: (err: unknown) => void = () => {}) {}

  /** Number of pending entries. */
  get size(): number {
    return this.live.size;
  }

  /** Runs `cb` once after `delayMs` (>= 0). Returns an id for `cancel`. */
  schedule(delayMs: number, cb: () => void): TimerId {
    const entry: Entry = { id: this.nextId++, at: performance.now() + Math.max(0, delayMs), cb };
    this.live.set(entry.id, entry);
    this.push(entry);
    this.arm();
    return entry.id;
  }

  /** Harmless for an unknown, fired or already cancelled id. */
  cancel(id: TimerId | undefined): void {
    if (id === undefined || !this.live.delete(id)) return;
    if (this.live.size === 0) this.disarm();
  }

  /** Cancels everything (supervisor shutdown). */
  clear(): void {
    this.live.clear();
    this.heap.length = 0;
    this.disarm();
  }

  private fire = (): void => {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = performance.now();
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > now + 0.5) break;
      this.pop();
      if (!this.live.delete(top.id)) continue;
      try {
        top.cb();
      } catch (err) {
        this.onError(err);
      }
    }
    this.arm();
  };

  private arm(): void {
    // Drop cancelled entries sitting at the top so the timer is armed for a live one.
    while (this.heap.length > 0 && !this.live.has(this.heap[0]!.id)) this.pop();
    const top = this.heap[0];
    if (!top) {
      this.disarm();
      return;
    }
    if (this.timer !== undefined && top.at >= this.armedAt) return;
    this.disarm();
    this.armedAt = top.at;
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(top.at - performance.now())));
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
    if (this.live.size === 0) this.heap.length = 0;
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= e.at) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      let mAt = last.at;
      if (l < h.length && h[l]!.at < mAt) {
        m = l;
        mAt = h[l]!.at;
      }
      if (r < h.length && h[r]!.at < mAt) m = r;
      if (m === i) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = last;
  }
}
