import type { Reactor } from '../reactor/reactor.js';
import { readStat } from '../signal/proc.js';

/**
 * Notices a leader that is gone without its `exit` event ever coming (reaped elsewhere, as in
 * Airflow #70117), so a task can never wait forever for an exit.
 *
 * Invariants:
 * 1. It reports at most once, and only after two checks in a row found the process gone (a
 *    missing /proc entry, or the pid now naming a process with another start time).
 * 2. Its timer is a task timer of the reactor: it never runs after the task is released.
 */
export function watchExit(reactor: Reactor, taskId: string, pid: number, startTime: number, everyMs: number, exited: () => boolean, onGone: () => void, poll?: () => void): void {
  let strikes = 0;
  const check = (): void => {
    // A child this process reaps itself (the native spawner's) is reaped here if its exit was
    // missed; its exit event then settles the task.
    poll?.();
    if (exited()) return;
    const st = readStat(pid);
    strikes = st === undefined || st.startTime !== startTime ? strikes + 1 : 0;
    if (strikes >= 2) {
      onGone();
      return;
    }
    reactor.timer(taskId, everyMs, check);
  };
  reactor.timer(taskId, everyMs, check);
}
