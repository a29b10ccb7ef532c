import type { WardenError } from '../errors.js';
import { exitRecord, type LogRecord } from '../logs/records.js';
import type { TaskResult, TaskState, TeardownReport } from './types.js';

/** What the result is made of: its own fields, less those derived from the teardown report. */
export type ResultInput = Pick<TaskResult, 'taskId' | 'reason' | 'exitCode' | 'signal' | 'status' | 'pid' | 'containment' | 'durationMs' | 'survivors' | 'pipesForceClosed'> & {
  report: TeardownReport | null;
  error: WardenError | null;
};

/**
 * The result without a control plane: success only when the leader exited on its own with 0;
 * a task that exits 0 after warden's SIGTERM is not a success.
 */
export function buildResult(i: ResultInput): TaskResult {
  const state: TaskState = i.reason === 'exited' && i.status === 0 ? 'success' : 'failed';
  return {
    taskId: i.taskId,
    state,
    reason: i.reason,
    exitCode: i.exitCode,
    signal: i.signal,
    status: i.status,
    pid: i.pid,
    containment: i.containment,
    durationMs: Math.round(i.durationMs * 100) / 100,
    signalled: i.report?.signalled ?? 0,
    escapees: i.report?.escapees ?? 0,
    survivors: i.survivors,
    pipesForceClosed: i.pipesForceClosed,
    teardown: i.report,
    error: i.error ? i.error.toJSON() : null,
  };
}

/** The exit diagnostic in plain words; a signal warden sent itself is no mystery (no "likely OOM"). */
export function exitDiagnostic(
  exitCode: number | null,
  signal: NodeJS.Signals | null,
  report: TeardownReport | null,
  pipesForceClosed: boolean,
  drainMs: number,
): LogRecord {
  const signalledByWarden = report !== null && report.signals.some((x) => x.outcome === 'sent' && x.signal === signal);
  return exitRecord({ exitCode, signal, signalledByWarden, pipesForceClosed, drainMs });
}
