import type { Writable } from 'node:stream';

/** Why a task ended. The first cause recorded wins; later causes do not overwrite it. */
export type TerminationReason =
  | 'exited'
  | 'timeout'
  | 'server-terminated'
  | 'heartbeat-lost'
  | 'overtime'
  | 'supervisor-stop'
  | 'spawn-failed'
  | 'cancelled';

/** Final task state, shaped like Airflow's terminal states plus warden's own `server-terminated`. */
export type TaskState =
  | 'success'
  | 'failed'
  | 'up_for_retry'
  | 'skipped'
  | 'deferred'
  | 'up_for_reschedule'
  | 'server-terminated';

/** How members of a task are contained and found; the strongest available is used per task. */
export type Containment = 'cgroup' | 'subreaper' | 'group+cookie' | 'pid+cookie';

export interface TaskSpec {
  /** Executable path or name looked up in PATH. No shell is involved. */
  command: string;
  args?: readonly string[];
  /** Task id; defaults to a random one. Used in the cookie, logs and results. */
  id?: string;
  /**
   * `'task'` (default) runs isolated in its own session and process group; any other kind
   * (a long-lived helper that handles its own signals) defaults to `isolate: false`.
   */
  kind?: string;
  /** Overrides the kind's default. False keeps the supervisor's process group: no group signal is ever sent. */
  isolate?: boolean;
  /** Working directory; must exist. Defaults to the supervisor's. */
  cwd?: string;
  /** Environment of the child; defaults to the supervisor's. `secretEnv` names are removed from it. */
  env?: NodeJS.ProcessEnv;
  /** Names of variables never passed to the child, on top of `WARDEN_TOKEN` which never is. */
  secretEnv?: readonly string[];
  /** Give the child a stdin pipe (`task.stdin`) instead of /dev/null. Default false. */
  stdin?: boolean;
  /**
   * pty mode: the task's fds 0-2 are a new terminal (its controlling terminal when isolated),
   * `{cols, rows}` default 80 x 24. Its output (stdout and stderr, which share the terminal)
   * arrives as `stdout`; `task.write()` types into it; `task.resize()` resizes it. The log and
   * comms channels stay fds 3 and 4. Needs the native spawner. Default false.
   */
  pty?: boolean | { cols?: number; rows?: number };
  /**
   * Where the child's stdout bytes go. Writes respect backpressure: reading pauses while the sink
   * is full. Without a sink the bytes arrive as `stdout` events only.
   */
  stdout?: Writable;
  /** As `stdout`, for stderr. */
  stderr?: Writable;
  /** End the whole tree after this many ms (reason `timeout`, `warden run` exit 124). 0 or absent: no limit. */
  timeoutMs?: number;
  /** Graceful signal -> SIGKILL delay. Default 5000. 0 skips the graceful signal: SIGKILL (scan + kill rounds) at once. */
  graceMs?: number;
  /**
   * Once the leader has exited and any teardown has finished, how long the pipes may stay open
   * (held by a grandchild) before they are force-closed (`pipesForceClosed: true`). Default 2000.
   */
  drainMs?: number;
  /** Graceful signal. Default SIGTERM. Always followed by SIGCONT so stopped members can act on it. */
  killSignal?: NodeJS.Signals | string;
  /** Bound on scan + SIGKILL rounds in the force step. Default 20. */
  maxKillRounds?: number;
  /** When the leader exits and members remain, tear them down. Default: true when isolated, else false. */
  killLeftovers?: boolean;
  /**
   * Append the task's JSON-lines log (stdout, stderr, fd 3 records and warden's own, masked) to
   * this file; earlier lines are kept. A file that cannot be opened makes start() throw
   * ERR_LOG_FILE. Without it the records are only emitted as `log` events.
   */
  logFile?: string;
  /** Longest log line (UTF-8 bytes) before it is split into records marked `part`/`more`. Default 65536. */
  maxLineBytes?: number;
  /** Interval of the backstop that notices a leader gone without an exit event. Default 1000. */
  exitCheckMs?: number;
  /**
   * The task instance this task runs as on the supervisor's control plane. With it, warden starts
   * the instance, heartbeats, and reports the final state; without it, no control-plane call is made.
   */
  ti?: import('./task-control-plane.js').TaskInstanceSpec;
}

export interface SignalRecord {
  /** Milliseconds since the teardown began. */
  atMs: number;
  signal: string;
  /** `-pgid` for a group, `cgroup` for a cgroup kill, else the pid. */
  target: string;
  escapee: boolean;
  outcome: 'sent' | 'gone' | 'eperm' | 'refused';
}

export interface TeardownStep {
  step: 'graceful' | 'grace-wait' | 'force' | 'drain';
  startedAtMs: number;
  durationMs: number;
  detail?: string;
}

export interface TeardownReport {
  reason: TerminationReason;
  containment: Containment;
  steps: TeardownStep[];
  signals: SignalRecord[];
  /** Distinct processes that received at least one signal (group members counted one by one). */
  signalled: number;
  /** Members found outside the task's process group (setsid children, double-forked daemons). */
  escapees: number;
  escapeePids: number[];
  /** Processes we were not allowed to signal. */
  epermPids: number[];
  killRounds: number;
  /** Members alive after the last round (0 unless EPERM or maxKillRounds stopped the ladder). */
  survivors: number;
  durationMs: number;
}

export interface TaskResult {
  taskId: string;
  state: TaskState;
  reason: TerminationReason;
  /** The leader's own exit code, or null when it died by a signal or its status is unknown. */
  exitCode: number | null;
  /** The signal that ended the leader, if any. */
  signal: NodeJS.Signals | null;
  /** Shell-style status: code, 128+n for a signal, 127 not found, 126 not executable. */
  status: number | null;
  pid: number | undefined;
  containment: Containment;
  durationMs: number;
  signalled: number;
  escapees: number;
  /** Members still alive when the result settled. 0 unless something could not be killed. */
  survivors: number;
  pipesForceClosed: boolean;
  teardown: TeardownReport | null;
  error: { code: string; message: string } | null;
  /** Failures of the log file after start (the task went on; records were still emitted). */
  logErrors?: string[];
  /** The task's life on the control plane, when it ran as a task instance. */
  controlPlane?: import('./task-control-plane.js').ControlPlaneReport;
}
