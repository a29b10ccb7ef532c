import type { HandlerRegistry } from '../comms/handlers.js';
import type { LogRecord } from '../logs/records.js';
import type { Reactor } from '../reactor/reactor.js';
import type { CgroupTier, TaskCgroup } from '../signal/cgroup.js';
import type { Signaller } from '../signal/signaller.js';
import type { SpawnLedger } from '../signal/spawn-ledger.js';
import type { CommsSettings, TaskHandlerContext } from './task-comms.js';
import type { ControlPlaneSettings } from './task-control-plane.js';
import type { Task } from './task.js';
import type { Containment, TaskResult, TeardownReport } from './types.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';

/** A record the supervisor writes about a task (DESIGN 7, `logger: 'warden'`). */
export interface WardenRecord {
  timestamp: string;
  level: LogLevel;
  logger: 'warden';
  event: string;
  [field: string]: unknown;
}

export interface TaskEvents {
  spawn: (info: { pid: number; pgid: number; containment: Containment; cookie: string }) => void;
  stdout: (chunk: Buffer) => void;
  stderr: (chunk: Buffer) => void;
  /** Every record of the task's log (stdout, stderr, fd 3 and warden's own), masked. */
  log: (record: LogRecord) => void;
  /** Warden's own records about the task (also in `log`). */
  record: (record: WardenRecord) => void;
  exit: (info: { exitCode: number | null; signal: NodeJS.Signals | null }) => void;
  teardown: (report: TeardownReport) => void;
  settled: (result: TaskResult) => void;
  /** The task's stdin (spec.stdin) took what `write()` could not: write more. */
  drain: () => void;
  /** A value registered for masking. */
  secret: (value: string) => void;
}

export interface TaskDeps {
  reactor: Reactor;
  signaller: Signaller;
  /** Start leaders through posix_spawn (the native spawner) rather than child_process. */
  nativeSpawn: boolean;
  /** The leaders this supervisor forked, in order: member scans skip the later ones. */
  ledger: SpawnLedger;
  cgroups: CgroupTier | undefined;
  /** warden-reaper's path when isolated tasks without a cgroup get the subreaper tier. */
  reaper: string | undefined;
  /** A task cgroup that could not be removed yet (retried later). */
  keepCgroup(cg: TaskCgroup): void;
  /** Called once the task has settled and released everything. */
  onSettled(task: Task): void;
  /** The supervisor's `record` listeners: every record of the task, before its own listeners. */
  onRecord(record: WardenRecord): void;
  /** Whether the supervisor has `record` listeners (a record nobody receives is not built). */
  wantsRecords(): boolean;
  handlers: HandlerRegistry<any, TaskHandlerContext>; // eslint-disable-line @typescript-eslint/no-explicit-any
  comms: CommsSettings;
  controlPlane: ControlPlaneSettings | undefined;
}

