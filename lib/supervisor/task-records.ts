import type { EventEmitter } from 'eventemitter3';
import type { ResolvedSpec } from './options.js';
import { TaskLog } from './task-log.js';
import type { LogLevel, TaskEvents, WardenRecord } from './task-types.js';

/** Secrets kept per task for masking; more are ignored. */
const MAX_SECRETS = 1000;

/** Where a task's records go besides the task's own events. */
export interface RecordSinks {
  /** The supervisor's `record` listeners; called before the task's own. */
  onRecord(record: WardenRecord): void;
  /** Whether the supervisor has `record` listeners. */
  wantsRecords(): boolean;
  /** Backpressure from the log writer: pause / resume the task's logged pipes. */
  pause(): void;
  resume(): void;
}

/**
 * A task's records: its log (stdout, stderr and fd 3 split into lines, and warden's own records
 * about the task), masked with the task's secrets, appended to the log file and emitted.
 *
 * Invariants:
 * 1. A warden record reaches the log file, the task's `log` and `record` listeners and the
 *    supervisor's `record` listeners, masked, whenever any of them exists. When none does, it is
 *    not built at all (most tasks of a busy executor have no listener and no file).
 * 2. `secrets` holds at most MAX_SECRETS values; each reaches the masker before it is announced.
 */
export class TaskRecords {
  /** Values masked as `***` in the task's log records (registered by handlers and MaskSecret). */
  readonly secrets = new Set<string>();
  readonly log: TaskLog;

  /** Throws WardenError ERR_LOG_FILE when the spec's log file cannot be opened (a usage error). */
  constructor(
    private readonly task: EventEmitter<TaskEvents> & { readonly id: string },
    spec: ResolvedSpec,
    private readonly sinks: RecordSinks,
  ) {
    this.log = new TaskLog({
      path: spec.logFile,
      maxLineBytes: spec.maxLineBytes,
      onRecord: (r) => task.emit('log', r),
      onError: (e) => this.warden('error', e.message, { code: e.code }),
      pause: () => sinks.pause(),
      resume: () => sinks.resume(),
    });
  }

  /** Whether a warden record would reach anyone (invariant 1). */
  get wanted(): boolean {
    return this.log.hasFile || this.task.listenerCount('record') > 0 || this.task.listenerCount('log') > 0 || this.sinks.wantsRecords();
  }

  /** A supervisor-authored record about the task. */
  warden(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    if (!this.wanted) return;
    this.emit({ timestamp: new Date().toISOString(), level, logger: 'warden', event, task: this.task.id, ...fields });
  }

  /** A warden record built elsewhere (the exit diagnostic); `make` runs only when it is wanted. */
  wardenBuilt(make: () => WardenRecord): void {
    if (this.wanted) this.emit(make());
  }

  /** Registers a value masked as `***` in every record of this task's log. */
  maskSecret(value: string): void {
    if (typeof value !== 'string' || value.length === 0) return;
    if (this.secrets.size >= MAX_SECRETS) return;
    this.secrets.add(value);
    this.log.masker.add(value);
    this.task.emit('secret', value);
  }

  /**
   * Flushes and closes the log file. Returns undefined when there is nothing to wait for (no
   * file), so that the result can settle without a promise hop.
   */
  close(): Promise<void> | undefined {
    const closing = this.log.close();
    return this.log.hasFile ? closing : undefined;
  }

  private emit(record: WardenRecord): void {
    // Masked here too: `record` listeners see what the log shows, never a registered secret.
    const shown = this.log.masker.size > 0 ? (this.log.masker.maskRecord(record) as WardenRecord) : record;
    this.sinks.onRecord(shown);
    this.task.emit('record', shown);
    this.log.record(record);
  }
}
