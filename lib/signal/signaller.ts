import { WardenError, errnoCode } from '../errors.js';
import { readStat, isAliveStat } from './proc.js';

export type SignalOutcome = 'sent' | 'gone' | 'eperm';

/** A process named by pid and start time: together they survive pid reuse. */
export interface ProcessRef {
  pid: number;
  /** /proc start time (clock ticks); when given it is re-checked right before the signal. */
  startTime?: number;
}

/**
 * The only code in warden that sends a signal (`process.kill`).
 *
 * Invariants:
 * 1. It never signals pid <= 1, its own pid, or its own process group, whatever it is asked:
 *    such a request throws a WardenError `ERR_SELF_SIGNAL`, which is also passed to `onRefused`.
 * 2. A pid marked reaped is never signalled again.
 * 3. A process named with a start time is signalled only if the pid still has that start time
 *    (re-read right before the signal), so a reused pid is never hit.
 * 4. "Already gone" (ESRCH, or a zombie) is the return value `'gone'`, never an error; EPERM is
 *    the return value `'eperm'` and the caller goes on with the other targets.
 */
export class Signaller {
  readonly ownPid = process.pid;
  readonly ownPgid: number;
  private readonly reaped = new Set<number>();

  constructor(private readonly onRefused: (err: WardenError) => void = () => {}) {
    const self = readStat('self');
    // Without /proc we cannot know our group; -1 makes every group request fail the guard check below.
    this.ownPgid = self?.pgid ?? -1;
  }

  /** Marks a pid as reaped by us (its exit was observed): it is never signalled again. */
  markReaped(pid: number): void {
    this.reaped.add(pid);
    // Bounded: a long-lived supervisor reaps many pids; the set only needs recent ones, because
    // every other signal is start-time checked.
    if (this.reaped.size > 4096) this.reaped.delete(this.reaped.values().next().value as number);
  }

  isReaped(pid: number): boolean {
    return this.reaped.has(pid);
  }

  /** Signals one process. See the invariants for the outcomes. */
  kill(target: ProcessRef, signal: NodeJS.Signals): SignalOutcome {
    const { pid } = target;
    this.guardPid(pid);
    if (this.reaped.has(pid)) return 'gone';
    if (target.startTime !== undefined) {
      const st = readStat(pid);
      if (!isAliveStat(st) || st.startTime !== target.startTime) return 'gone';
    }
    return this.send(pid, signal);
  }

  /**
   * Signals a whole process group. The caller must know the group is not empty (a live member was
   * seen): POSIX does not reuse a group id while the group has members, so that is what makes
   * `kill(-pgid)` safe from reuse.
   */
  killGroup(pgid: number, signal: NodeJS.Signals): SignalOutcome {
    this.guardGroup(pgid);
    return this.send(-pgid, signal);
  }

  /** Throws ERR_SELF_SIGNAL for pids warden must never signal. */
  guardPid(pid: number): void {
    if (!Number.isInteger(pid) || pid <= 1) this.refuse(`pid ${pid}`, 'pid <= 1 is init or a group/broadcast address');
    if (pid === this.ownPid) this.refuse(`pid ${pid}`, 'it is the supervisor itself');
  }

  guardGroup(pgid: number): void {
    if (!Number.isInteger(pgid) || pgid <= 1) this.refuse(`group ${pgid}`, 'group ids <= 1 address init or every process');
    if (pgid === this.ownPgid || this.ownPgid === -1) this.refuse(`group ${pgid}`, "it is the supervisor's own process group");
  }

  private refuse(what: string, why: string): never {
    const err = new WardenError(
      'ERR_SELF_SIGNAL',
      `warden refused to signal ${what}: ${why}. Run the task isolated (isolate: true) so it has a group of its own, or signal its pid.`,
      { detail: { what } },
    );
    this.onRefused(err);
    throw err;
  }

  private send(target: number, signal: NodeJS.Signals): SignalOutcome {
    try {
      process.kill(target, signal);
      return 'sent';
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ESRCH') return 'gone';
      if (code === 'EPERM') return 'eperm';
      throw err;
    }
  }
}
