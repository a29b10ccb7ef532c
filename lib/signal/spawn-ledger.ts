/**
 * The leaders one supervisor forked, in fork order.
 *
 * A member scan reads the stat of every pid allocated since its task's leader was forked. Under
 * load most of those pids are the supervisor's own later leaders (other tasks), which can never
 * be members of this task: each sits in a session of its own, its parent is the supervisor and
 * its cookie is its own. The ledger lets a scan skip them without a read.
 *
 * Why that is sound: a scan uses the ledger only when the pid range since its leader is known
 * (`statsSince`: fewer forks than the pid space since the leader, so no pid in the range was
 * handed out twice). A pid recorded with a later sequence number than the task's own was handed
 * to that later leader inside the range, so whatever holds it now is that leader or nothing.
 *
 * Invariants:
 * 1. Sequence numbers grow with every record; a pid recorded again takes the newer number.
 * 2. At most `limit` pids are kept; the oldest go first. Forgetting a pid only costs a read.
 */
export class SpawnLedger {
  #seq = 0;
  readonly #byPid = new Map<number, number>();

  constructor(private readonly limit = 4096) {}

  /** Records a leader just forked; returns its sequence number. */
  record(pid: number): number {
    const seq = ++this.#seq;
    this.#byPid.delete(pid);
    this.#byPid.set(pid, seq);
    if (this.#byPid.size > this.limit) {
      const oldest = this.#byPid.keys().next().value;
      if (oldest !== undefined) this.#byPid.delete(oldest);
    }
    return seq;
  }

  /** True when `pid` was last recorded for a leader forked after the one numbered `seq`. */
  forkedAfter(seq: number, pid: number): boolean {
    const at = this.#byPid.get(pid);
    return at !== undefined && at > seq;
  }

  get size(): number {
    return this.#byPid.size;
  }
}
