import { hostname, userInfo } from 'node:os';
import type { ControlPlaneClient } from '../control-plane/client.js';
import { ControlPlaneError } from '../control-plane/errors.js';
import type { FinishBody, RunContext, TerminalStateName } from '../control-plane/types.js';
import { WardenError } from '../errors.js';
import type { Task } from './task.js';

/**
 * The startup gate: without a control plane (or without a task instance) the StartupDetails
 * frame goes out at once; with one, only after the start was accepted, with the run context.
 */
export function openStartupGate(task: Task, cp: ControlPlaneSettings | undefined): TaskControlPlane | undefined {
  const ti = task.spec.ti;
  if (!cp || !ti) {
    task.channel?.sendStartup({ taskId: task.id, tiId: ti?.id ?? null, tryNumber: ti?.tryNumber ?? 1 });
    return undefined;
  }
  const control = new TaskControlPlane(task, cp, ti, (runContext) => {
    for (const c of runContext.connections ?? []) {
      if (c.password) task.maskSecret(c.password);
      if (c.extra) task.maskSecret(c.extra);
    }
    task.channel?.sendStartup({ taskId: task.id, tiId: ti.id, tryNumber: ti.tryNumber ?? 1, runContext });
  });
  control.start();
  return control;
}
import type { TaskResult, TaskState } from './types.js';

/** The task instance a task runs as, on the control plane. */
export interface TaskInstanceSpec {
  /** The task instance id (Airflow's TI uuid). */
  id: string;
  dagId?: string;
  runId?: string;
  taskId?: string;
  mapIndex?: number;
  tryNumber?: number;
}

export interface ControlPlaneSettings {
  client: ControlPlaneClient;
  /**
   * One attempt, timeout under the heartbeat interval: a stuck request has failed before the next
   * tick, so it never delays the verdict. Also makes the one best-effort call after heartbeat-lost.
   */
  heartbeatClient: ControlPlaneClient;
  heartbeatIntervalMs: number;
  maxFailedHeartbeats: number;
  overtimeMs: number;
}

export interface ControlPlaneReport {
  tiId: string;
  startAccepted: boolean;
  heartbeats: number;
  failedHeartbeats: number;
  /** HTTP status of the heartbeat that ended the task (404/409/410), if one did. */
  stopStatus: number | null;
  reportedState: TerminalStateName | null;
  /** Whether the final state reached the control plane (null: no call was due, e.g. after 409). */
  finalStateReported: boolean | null;
  finalStateError: string | null;
}

/**
 * A task's life against the control plane: start, heartbeats, terminal state, final report.
 *
 * Invariants:
 * 1. At most one heartbeat is in flight; a tick that finds one in flight is skipped.
 * 2. No heartbeat is sent after a terminal state was reported, after a 404/409/410, or once the
 *    task is stopping or settled.
 * 3. No state call follows a 404/409/410 verdict.
 * 4. A terminal-state call that failed is replayed once, at the end; one still in flight at the
 *    end is waited for, never sent twice.
 * 5. After heartbeat-lost the final state gets one attempt, not the retried call.
 */
export class TaskControlPlane {
  readonly report: ControlPlaneReport;
  runContext: RunContext | undefined;
  private inFlight = false;
  private consecutiveFailures = 0;
  private terminalBody: FinishBody | undefined;
  private terminalDelivered = false;
  /** The start call; never rejects. */
  private startCall: Promise<void> | undefined;
  /** The terminal-state call made when the task reported it; never rejects. */
  private terminalCall: Promise<void> | undefined;
  private stopped = false;
  private overtimeArmed = false;

  constructor(
    private readonly task: Task,
    private readonly settings: ControlPlaneSettings,
    readonly ti: TaskInstanceSpec,
    private readonly onAccepted: (runContext: RunContext) => void,
  ) {
    this.report = {
      tiId: ti.id,
      startAccepted: false,
      heartbeats: 0,
      failedHeartbeats: 0,
      stopStatus: null,
      reportedState: null,
      finalStateReported: null,
      finalStateError: null,
    };
  }

  /**
   * Sends the start (retried by the client). Precondition: the task has a pid.
   *
   * The call is not tied to the task's signal: a task that does not use the channel may end
   * before the answer, and the server must still learn how it ended, so `finalize()` waits for
   * this call (bounded by the client's retries) and then reports the final state.
   */
  start(): void {
    const { task } = this;
    task.log('info', `starting task instance ${this.ti.id} on the control plane`);
    const body = { hostname: hostname(), unixname: safeUser(), pid: task.pid!, start_date: new Date() };
    this.startCall = this.settings.client.startTask(this.ti.id, body).then(
      (ctx) => {
        this.runContext = ctx;
        this.report.startAccepted = true;
        if (task.phase !== 'running') {
          task.log('info', 'start accepted by the control plane after the task had ended or begun to stop', { tiId: this.ti.id });
          return;
        }
        task.log('info', 'start accepted by the control plane', { tiId: this.ti.id });
        this.onAccepted(ctx);
        this.scheduleHeartbeat();
      },
      (err: unknown) => {
        const why = err instanceof WardenError ? err.message : String(err);
        if (task.phase === 'settled') {
          task.log('warning', `the control plane did not accept the start of task instance ${this.ti.id}, which had already ended: ${why}`);
          return;
        }
        const refused = new WardenError('ERR_START_REFUSED', `the control plane did not accept the start of task instance ${this.ti.id}: ${why}. The task was ended before any user code ran.`, { cause: err });
        task.log('error', refused.message);
        this.stopped = true;
        task.fail(refused, 'spawn-failed');
      },
    );
  }

  /** After a terminal state was reported: the task has overtimeMs to exit, then it is ended (`overtime`). Once. */
  private armOvertime(): void {
    if (this.overtimeArmed) return;
    this.overtimeArmed = true;
    const { task } = this;
    const ms = this.settings.overtimeMs;
    // A task timer: it never runs once the task has settled.
    task.timer(ms, () => {
      task.log('warning', `the task reported its final state but was still running ${ms} ms later`);
      task.terminate('overtime');
    });
  }

  /** A terminal state the task reported over comms: sent now; heartbeats stop; overtime starts. */
  async onTerminalState(state: TerminalStateName, body: FinishBody): Promise<void> {
    const { task } = this;
    this.report.reportedState = state;
    this.terminalBody = body;
    this.stopped = true;
    task.log('info', `the task reported state ${state}; heartbeats stop, it has ${this.settings.overtimeMs} ms to exit`);
    this.armOvertime();
    this.terminalCall = this.settings.client.finish(this.ti.id, body).then(
      () => {
        this.terminalDelivered = true;
      },
      (err: unknown) => {
        task.log('warning', `reporting state ${state} failed; it will be replayed once at the end: ${(err as Error).message}`);
      },
    );
    await this.terminalCall;
  }

  private scheduleHeartbeat(): void {
    this.task.timer(this.settings.heartbeatIntervalMs, () => this.tick());
  }

  private tick(): void {
    const { task } = this;
    if (this.stopped || task.phase !== 'running') return;
    this.scheduleHeartbeat();
    if (this.inFlight) return;
    this.inFlight = true;
    this.settings.heartbeatClient.heartbeat(this.ti.id, { hostname: hostname(), pid: task.pid! }, task.signal).then(
      () => {
        this.inFlight = false;
        this.report.heartbeats += 1;
        this.consecutiveFailures = 0;
      },
      (err: unknown) => {
        this.inFlight = false;
        if (this.stopped || task.phase === 'settled') return;
        if (err instanceof ControlPlaneError && err.serverSaysStop) {
          this.stopped = true;
          this.report.stopStatus = err.status;
          task.log('warning', `heartbeat answered ${err.status}: the control plane says the task is no longer running; ending its whole tree`, { status: err.status, body: err.body });
          task.terminate('server-terminated');
          return;
        }
        this.consecutiveFailures += 1;
        this.report.failedHeartbeats += 1;
        task.log('warning', `heartbeat failed (${this.consecutiveFailures}/${this.settings.maxFailedHeartbeats}): ${(err as Error).message}`);
        if (this.consecutiveFailures >= this.settings.maxFailedHeartbeats) {
          this.stopped = true;
          task.log('error', `${this.consecutiveFailures} heartbeats in a row failed: ending the task (heartbeat-lost)`);
          task.terminate('heartbeat-lost');
        }
      },
    );
  }

  /**
   * Final state: server-terminated > reported terminal state > exit 0 = success > failed (or
   * up_for_retry when the run context allows a retry). Reports it unless the server ended the
   * task or the reported state already reached it.
   */
  async finalize(result: TaskResult): Promise<TaskResult> {
    this.stopped = true;
    if (this.startCall) await this.startCall;
    const state = this.finalState(result);
    result.state = state;
    if (state === 'server-terminated' || !this.report.startAccepted) return { ...result, controlPlane: this.report };
    // A task may exit before the call of the state it reported has returned: wait for that call
    // rather than send the same state a second time.
    if (this.terminalCall) await this.terminalCall;
    if (this.terminalDelivered) {
      this.report.finalStateReported = true;
      return { ...result, controlPlane: this.report };
    }
    const body: FinishBody = this.terminalBody ?? { state: state as TerminalStateName, end_date: new Date() };
    // After heartbeat-lost the control plane just failed maxFailedHeartbeats calls in a row: one
    // best-effort attempt (DESIGN 6), so the result is not held up by the retries' ~30 s.
    const client = result.reason === 'heartbeat-lost' ? this.settings.heartbeatClient : this.settings.client;
    try {
      await client.finish(this.ti.id, body);
      this.report.finalStateReported = true;
      this.task.log('info', `final state ${body.state} reported to the control plane`);
    } catch (err) {
      this.report.finalStateReported = false;
      this.report.finalStateError = (err as Error).message;
      this.task.log('error', `could not report the final state ${body.state}: ${(err as Error).message}`);
    }
    return { ...result, controlPlane: this.report };
  }

  private finalState(result: TaskResult): TaskState {
    if (result.reason === 'server-terminated') return 'server-terminated';
    const reported = this.report.reportedState;
    if (reported) return reported === 'removed' ? 'failed' : reported;
    if (result.reason === 'exited' && result.status === 0) return 'success';
    return this.runContext?.should_retry ? 'up_for_retry' : 'failed';
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
