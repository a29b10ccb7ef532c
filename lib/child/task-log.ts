/**
 * The task's structured log: one JSON record per line on the fd named by `WARDEN_LOG_FD` (fd 3),
 * read by the supervisor (DESIGN.md section 7).
 */
import { writeSync, fstatSync } from 'node:fs';
import { LOG_FD_ENV } from '../comms/protocol.js';

export type TaskLogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';

/** Each call writes `{timestamp, level, logger: 'task', event, ...fields}` as one line. Never throws. */
export interface TaskLog {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warning(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  critical(event: string, fields?: Record<string, unknown>): void;
  /** Writes what this tick buffered now (it is written on the next tick, and at exit, anyway). */
  flush(): void;
}

const STDERR_FD = 2;
/** Above this many buffered bytes a record is written at once instead of at the end of the tick. */
const MAX_BUFFERED_BYTES = 64 * 1024;
/** How long a full non-blocking fd may stall a write before records go to stderr instead. */
const MAX_STALL_MS = 5000;
const stall = new Int32Array(new SharedArrayBuffer(4));

/**
 * Buffers the lines of one tick and writes them with one synchronous write: synchronous so that a
 * record logged right before `process.exit()` or a crash is not lost (the 'exit' listener flushes).
 *
 * Invariants:
 * - At most `MAX_BUFFERED_BYTES` (plus one record) are held; lines keep their order.
 * - A write failure moves the sink to stderr once, with one notice; records are never dropped
 *   silently and logging never throws.
 */
class LineSink {
  #fd: number;
  #lines: string[] = [];
  #bytes = 0;
  #scheduled = false;

  constructor(fd: number) {
    this.#fd = fd;
    process.on('exit', this.flush);
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#bytes += line.length;
    if (this.#bytes > MAX_BUFFERED_BYTES) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      process.nextTick(this.flush);
    }
  }

  readonly flush = (): void => {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const data = Buffer.from(this.#lines.join(''));
    this.#lines = [];
    this.#bytes = 0;
    let offset = 0;
    let stalledMs = 0;
    while (offset < data.length) {
      try {
        offset += writeSync(this.#fd, data, offset, data.length - offset);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' && stalledMs < MAX_STALL_MS && this.#fd !== STDERR_FD) {
          Atomics.wait(stall, 0, 0, 1); // the fd is non-blocking and full: let the supervisor read
          stalledMs++;
          continue;
        }
        if (this.#fd === STDERR_FD) return; // nowhere left to report to
        notice(`writing to ${LOG_FD_ENV} (fd ${this.#fd}) failed (${code ?? String(err)}); task log records go to stderr from now on`);
        this.#fd = STDERR_FD;
      }
    }
  };
}

const sinks = new Map<number, LineSink>();
let noticed = false;

function notice(text: string): void {
  if (noticed) return;
  noticed = true;
  try {
    writeSync(STDERR_FD, `warden/child: ${text}\n`);
  } catch {
    // stderr is gone too; nothing left to tell.
  }
}

function sinkFor(fd: number): LineSink {
  let sink = sinks.get(fd);
  if (sink === undefined) {
    sink = new LineSink(fd);
    sinks.set(fd, sink);
  }
  return sink;
}

/** Picks the fd from `WARDEN_LOG_FD`, or stderr (with a one-time notice) when it is missing or not open. */
function resolveFd(env: NodeJS.ProcessEnv): number {
  const raw = env[LOG_FD_ENV];
  if (raw === undefined || raw === '') {
    notice(`${LOG_FD_ENV} is not set, so this task is not running under warden; task log records go to stderr`);
    return STDERR_FD;
  }
  const fd = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(fd)) {
    notice(`${LOG_FD_ENV}=${JSON.stringify(raw)} is not an fd number; task log records go to stderr`);
    return STDERR_FD;
  }
  try {
    fstatSync(fd);
  } catch {
    notice(`${LOG_FD_ENV}=${fd} is not an open fd; task log records go to stderr`);
    return STDERR_FD;
  }
  return fd;
}

/** The task log for this process (records for one fd share one buffer, whoever created them). */
export function createTaskLog(options: { env?: NodeJS.ProcessEnv } = {}): TaskLog {
  const sink = sinkFor(resolveFd(options.env ?? process.env));
  const at = (level: TaskLogLevel) => (event: string, fields?: Record<string, unknown>): void => {
    sink.write(formatRecord(level, event, fields));
  };
  return {
    debug: at('debug'), info: at('info'), warning: at('warning'), error: at('error'), critical: at('critical'),
    flush: sink.flush,
  };
}

/** One record as one line. Fields that JSON cannot express become a `fieldsError` note, never a throw. */
export function formatRecord(level: TaskLogLevel, event: unknown, fields?: Record<string, unknown>): string {
  const head = { timestamp: new Date().toISOString(), level, logger: 'task', event: typeof event === 'string' ? event : String(event) };
  try {
    return `${JSON.stringify(fields === undefined ? head : { ...head, ...fields }, bigintAsString)}\n`;
  } catch (err) {
    return `${JSON.stringify({ ...head, fieldsError: `fields could not be written as JSON: ${err instanceof Error ? err.message : String(err)}` })}\n`;
  }
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
