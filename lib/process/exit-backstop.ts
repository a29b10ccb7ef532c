import type { Reactor } from '../reactor/reactor.js';
import { readStat } from '../signal/proc.js';

/**
 * Notices a leader that is gone without its `exit` event ever coming (reaped elsewhere, as in
 * Airflow #70117), so a task can never wait forever for an exit.
 *
 * `nativeGone` (the native spawner's children, which this process reaps by pid itself): says
 * whether the child is no longer live, reaping it if its exit was missed (its exit event then
 * settles the task); at most one waitpid per native child per half second for the whole
 * process (native-spawn.ts). Without it the check reads /proc/<pid>/stat: child_process cannot
 * tell that another waitpid took the status.
 *
 * Invariants:
 * 1. It reports at most once, and only after two checks in a row found the process gone (a
 *    missing /proc entry, or the pid now naming a process with another start time), or once
 *    `nativeGone` said so without an exit event.
 * 2. Its timer is a task timer of the reactor: it never runs after the task is released.
 * 3. Checks fall due on a grid of `everyMs` shared by every task (see onGrid).
 */
export function watchExit(reactor: Reactor, taskId: string, pid: number, startTime: number, everyMs: number, exited: () => boolean, onGone: () => void, nativeGone?: () => boolean): void {
  let strikes = 0;
  const check = (): void => {
    if (exited()) return;
    if (nativeGone !== undefined) {
      if (nativeGone()) {
        if (!exited()) onGone();
        return;
      }
    } else {
      const st = readStat(pid);
      strikes = st === undefined || st.startTime !== startTime ? strikes + 1 : 0;
      if (strikes >= 2) {
        onGone();
        return;
      }
    }
    reactor.timer(taskId, onGrid(everyMs), check);
  };
  reactor.timer(taskId, onGrid(everyMs), check);
}

/**
 * The delay to the next multiple of `everyMs` on this process's clock, so that the checks of
 * every task with the same period fall due together: the timer wheel then wakes once per period
 * for all of them, not once per task (200 idle tasks cost a third of the CPU they did with a
 * phase each; bench/idle.ts). A check is never more than one period late.
 */
function onGrid(everyMs: number): number {
  return Math.max(1, everyMs - (performance.now() % everyMs));
}
