import type { CommsChannel } from '../comms/channel.js';
import type { WardenError } from '../errors.js';
import { shellStatus } from '../process/exit-status.js';
import type { ResolvedSpec } from './options.js';
import type { TaskHandlerContext } from './task-comms.js';
import type { TaskControlPlane } from './task-control-plane.js';
import type { TaskIO } from './task-io.js';
import type { TaskLeader } from './task-leader.js';
import type { TaskRecords } from './task-records.js';
import { buildResult, exitDiagnostic } from './task-result.js';
import type { TaskTeardown } from './task-teardown.js';
import type { LogLevel, TaskDeps, WardenRecord } from './task-types.js';
import type { TaskResult, TerminationReason } from './types.js';

/** What settling needs of its task, read once when the task settles. */
export interface SettleHost {
  id: string;
  spec: ResolvedSpec;
  deps: TaskDeps;
  leader: TaskLeader;
  teardown: TaskTeardown;
  io: TaskIO | undefined;
  records: TaskRecords;
  channel: CommsChannel<TaskHandlerContext> | undefined;
  control: TaskControlPlane | undefined;
  reason: TerminationReason | undefined;
  error: WardenError | null;
  /** The shell status of a failed spawn (127, 126), null when it spawned. */
  spawnStatus: number | null;
  /** performance.now() when the task was created. */
  startedAt: number;
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
  /** Aborts the task's AbortSignal, if one was ever made. */
  abortSignal(): void;
  /** The last step: the task is gone from its supervisor and its result resolves with `result`. */
  done(result: TaskResult): void;
}

/**
 * The end of a task, in order: release every handle (force-closing pipes past the drain bound),
 * count survivors, give the cgroup back, build the result, end the comms channel and the task's
 * signal, write the exit diagnostic, let the control plane report the final state, close the
 * log file, resolve. Precondition: called once, when the leader is gone and no teardown runs.
 */
export function settleTask(h: SettleHost): void {
  const { deps, leader, spec } = h;
  const forced = h.io ? h.io.release() : deps.reactor.releaseTask(h.id);
  const pipesForceClosed = forced.some((n) => n !== 'stdin');
  if (pipesForceClosed) h.log('warning', `pipes force-closed ${spec.drainMs} ms after the leader exited (held open by a process outside warden's reach)`, { pipes: forced });
  leader.detach();
  const survivors = h.teardown.countSurvivors();
  const cg = leader.cgroup;
  if (cg && (survivors > 0 || !(deps.cgroups?.recycle(cg) ?? cg.remove()))) deps.keepCgroup(cg);
  const report = h.teardown.report;
  const result = buildResult({
    taskId: h.id,
    reason: h.reason ?? 'exited',
    exitCode: leader.exitCode,
    signal: leader.exitSignal,
    status: h.spawnStatus ?? shellStatus(leader.exitCode, leader.exitSignal),
    pid: leader.pid,
    containment: leader.containment,
    durationMs: performance.now() - h.startedAt,
    survivors,
    pipesForceClosed,
    report,
    error: h.error,
  });
  // The channel ends with the task (the task's signal is not handed to it, so that a task nobody
  // asks the signal of never makes one), before anything else waiting on the signal.
  h.channel?.close('task-aborted');
  h.abortSignal();
  if (leader.pid !== undefined) {
    h.records.wardenBuilt(() => ({ ...exitDiagnostic(leader.exitCode, leader.exitSignal, report, pipesForceClosed, spec.drainMs), task: h.id }) as WardenRecord);
  }
  const finish = (final: TaskResult): void => {
    const done = (): void => {
      const logErrors = h.records.log.errors.map((e) => e.message);
      h.done(logErrors.length > 0 ? { ...final, logErrors } : final);
    };
    // Without a log file there is nothing to wait for: the result resolves in this turn.
    const closing = h.records.close();
    if (closing) void closing.then(done);
    else done();
  };
  if (h.control) {
    void h.control.finalize(result).then(finish, () => finish(result));
  } else finish(result);
}
