import { constants } from 'node:os';

/**
 * The task log's records: one JSON object per line, `{timestamp, level, logger, event, ...fields}`.
 * Builders for the four sources (stdout, stderr, the fd 3 channel, warden itself) and the one
 * serializer the writer falls back to.
 */

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';

export interface LogRecord {
  /** ISO 8601. Warden's own clock, or the child's string when an fd 3 record carried one. */
  timestamp: string;
  level: LogLevel;
  /** `task.stdout`, `task.stderr`, the child's logger (default `task`), or `warden`. */
  logger: string;
  event: string;
  [field: string]: unknown;
}

/** fd 3 records nested deeper than this are kept as malformed text (no recursion on child data). */
export const MAX_FIELD_DEPTH = 32;

let lastMs = -1;
let lastIso = '';

/**
 * The current time as ISO 8601. The string is reused within one millisecond: a burst of lines
 * shares it, which saves the date formatting and lets the writer reuse its encoded prefix.
 */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/**
 * A record for one stdout line (or one part of a long line, `part` from 1; 0 means whole).
 * Whole lines always have the same four keys in the same order, the shape the writer encodes
 * without JSON.stringify. `timestamp` defaults to `isoNow()`; a caller splitting a pipe chunk may
 * take one `isoNow()` per chunk and pass it to every line of it (they arrived together), which
 * saves a clock read per line.
 */
export function stdoutRecord(text: string, part = 0, more = false, timestamp = isoNow()): LogRecord {
  if (part === 0) return { timestamp, level: 'info', logger: 'task.stdout', event: text };
  return withPart({ timestamp, level: 'info', logger: 'task.stdout', event: text }, part, more);
}

/** As `stdoutRecord`, for stderr: level `error`, logger `task.stderr`. */
export function stderrRecord(text: string, part = 0, more = false, timestamp = isoNow()): LogRecord {
  if (part === 0) return { timestamp, level: 'error', logger: 'task.stderr', event: text };
  return withPart({ timestamp, level: 'error', logger: 'task.stderr', event: text }, part, more);
}

/** A line of the fd 3 channel that is not one JSON object: kept as text, never dropped. */
export function malformedRecord(text: string, part = 0, more = false): LogRecord {
  const record: LogRecord = { timestamp: isoNow(), level: 'warning', logger: 'task', event: text, malformed: true };
  return part === 0 ? record : withPart(record, part, more);
}

function withPart(record: LogRecord, part: number, more: boolean): LogRecord {
  record.part = part;
  if (more) record.more = true;
  return record;
}

const LEVEL_NAMES: Readonly<Record<string, LogLevel>> = {
  debug: 'debug',
  info: 'info',
  warning: 'warning',
  warn: 'warning',
  error: 'error',
  exception: 'error',
  critical: 'critical',
  fatal: 'critical',
};

/** Python's logging numbers, which some JSON formatters write instead of names. */
const LEVEL_NUMBERS: Readonly<Record<number, LogLevel>> = { 10: 'debug', 20: 'info', 30: 'warning', 40: 'error', 50: 'critical' };

/** The level a child wrote, or undefined when it is not one warden knows. Case-insensitive. */
export function normalizeLevel(value: unknown): LogLevel | undefined {
  if (typeof value === 'string') {
    const name = value.toLowerCase();
    return Object.hasOwn(LEVEL_NAMES, name) ? LEVEL_NAMES[name] : undefined;
  }
  if (typeof value === 'number') return Object.hasOwn(LEVEL_NUMBERS, value) ? LEVEL_NUMBERS[value] : undefined;
  return undefined;
}

/**
 * A record from one line of the fd 3 channel. A line that is one JSON object keeps its fields at
 * the top level, in its order, after the four standard keys:
 * - `timestamp`: kept when it is a string, else warden's clock;
 * - `level`: debug/info/warning/error/critical, case-insensitive, with `warn` read as warning,
 *   `fatal` as critical, `exception` as error, Python's 10..50 as their names; absent -> info;
 * - `logger`: a non-empty string, else `task`; a child's `warden` or `warden.*` becomes
 *   `task.warden...` so that a task cannot pass its records off as the supervisor's;
 * - `event`: a string, else "".
 * A standard key whose value is present but unusable (an unknown level, a numeric timestamp) is
 * replaced as above and its value kept as `<key>Raw` (`levelRaw`, `timestampRaw`...), so nothing
 * the child wrote is lost. Anything else (not JSON, not an object, nested deeper than
 * MAX_FIELD_DEPTH, half a record at EOF, a part of an over-long line) becomes `malformedRecord`.
 */
export function channelRecord(text: string, part = 0, more = false): LogRecord {
  if (part !== 0 || !startsLikeObject(text)) return malformedRecord(text, part, more);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return malformedRecord(text);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !withinDepth(parsed, 1)) {
    return malformedRecord(text);
  }
  const source = parsed as Record<string, unknown>;
  const { timestamp, level, logger, event } = source;
  const record: LogRecord = {
    timestamp: typeof timestamp === 'string' ? timestamp : isoNow(),
    level: normalizeLevel(level) ?? 'info',
    logger: typeof logger === 'string' && logger.length > 0 ? childLogger(logger) : 'task',
    event: typeof event === 'string' ? event : '',
  };
  for (const key of Object.keys(source)) {
    switch (key) {
      case 'timestamp':
      case 'logger':
      case 'event':
        if (source[key] !== undefined && source[key] !== null && typeof source[key] !== 'string') setField(record, `${key}Raw`, source[key]);
        break;
      case 'level':
        if (level !== undefined && level !== null && normalizeLevel(level) === undefined) setField(record, 'levelRaw', level);
        break;
      default:
        setField(record, key, source[key]);
    }
  }
  return record;
}

function childLogger(name: string): string {
  return name === 'warden' || name.startsWith('warden.') ? `task.${name}` : name;
}

function startsLikeObject(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) return true; // {
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return false;
}

function withinDepth(value: object, depth: number): boolean {
  if (depth > MAX_FIELD_DEPTH) return false;
  for (const child of Array.isArray(value) ? value : Object.values(value)) {
    if (typeof child === 'object' && child !== null && !withinDepth(child, depth + 1)) return false;
  }
  return true;
}

/** Sets a field by definition, so a key such as `__proto__` is data, never a prototype change. */
export function setField(record: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  else record[key] = value;
}

/**
 * A record written by the supervisor itself (logger `warden`). `fields` follow the four standard
 * keys; a field named like a standard key is ignored rather than allowed to replace it.
 */
export function wardenRecord(level: LogLevel, event: string, fields?: Record<string, unknown>): LogRecord {
  const record: LogRecord = { timestamp: isoNow(), level, logger: 'warden', event };
  if (fields !== undefined) {
    for (const key of Object.keys(fields)) {
      if (key !== 'timestamp' && key !== 'level' && key !== 'logger' && key !== 'event') setField(record, key, fields[key]);
    }
  }
  return record;
}

/**
 * One record as one JSON line (with its `\n`). A record that JSON cannot represent (a BigInt, a
 * cycle in supervisor-supplied fields) is replaced by a warden error record that says so and
 * keeps its event, so one bad field never stops the log.
 */
export function serializeRecord(record: LogRecord): string {
  try {
    return JSON.stringify(record) + '\n';
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return JSON.stringify(wardenRecord('error', `a log record could not be written as JSON (${why}); its event follows`, {
      originalLogger: String(record.logger),
      originalEvent: String(record.event),
    })) + '\n';
  }
}

export interface ExitInfo {
  /** The leader's exit code, or null when a signal ended it. */
  exitCode: number | null;
  signal: NodeJS.Signals | string | null;
  /** True when warden itself sent this signal (timeout, teardown): then it is no mystery. */
  signalledByWarden: boolean;
  /** The drain bound expired and the pipes were closed while something still held them. */
  pipesForceClosed: boolean;
  /** The drain bound in force, for the message. */
  drainMs?: number;
}

/** What each signal usually means when it ends a process, in the words a person would search for. */
const SIGNAL_MEANINGS: Readonly<Record<string, string>> = {
  SIGSEGV: 'segmentation fault',
  SIGBUS: 'bus error: bad memory access',
  SIGFPE: 'arithmetic error, such as an integer division by zero',
  SIGILL: 'illegal instruction',
  SIGABRT: 'aborted: abort() or a failed assertion',
  SIGTRAP: 'trace or breakpoint trap',
  SIGSYS: 'bad system call',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGPIPE: 'wrote to a pipe that nobody reads',
  SIGTERM: 'asked to terminate',
  SIGINT: 'interrupted',
  SIGHUP: 'hang-up',
  SIGQUIT: 'quit',
  SIGALRM: 'alarm clock',
  SIGUSR1: 'user-defined signal 1',
  SIGUSR2: 'user-defined signal 2',
};

const SHELL_EXIT_MEANINGS: Readonly<Record<number, string>> = {
  126: 'a shell reports this when a command was found but could not be executed',
  127: 'a shell reports this when a command was not found',
};

/**
 * How a task's leader ended, in plain words for the task log, e.g. "exited with code 3",
 * "killed by SIGSEGV (segmentation fault)", "killed by SIGKILL that warden did not send: likely
 * out of memory ...". A SIGKILL warden did not send is almost always the kernel's OOM killer.
 */
export function describeExit(info: ExitInfo): string {
  let text: string;
  if (info.signal !== null && info.signal !== undefined && info.signal !== '') {
    const sig = String(info.signal);
    if (info.signalledByWarden) {
      text = `killed by ${sig}, sent by warden`;
    } else if (sig === 'SIGKILL') {
      text = 'killed by SIGKILL that warden did not send: likely out of memory (the kernel\'s OOM killer), or another process killed it';
    } else {
      const meaning = Object.hasOwn(SIGNAL_MEANINGS, sig) ? SIGNAL_MEANINGS[sig] : undefined;
      text = meaning === undefined ? `killed by ${sig}` : `killed by ${sig} (${meaning})`;
    }
  } else if (info.exitCode !== null && info.exitCode !== undefined) {
    const code = info.exitCode;
    const shellMeaning = Object.hasOwn(SHELL_EXIT_MEANINGS, code) ? SHELL_EXIT_MEANINGS[code] : undefined;
    const signalName = code > 128 && code < 128 + 65 ? signalNameOf(code - 128) : undefined;
    if (shellMeaning !== undefined) text = `exited with code ${code} (${shellMeaning})`;
    else if (signalName !== undefined) text = `exited with code ${code} (128+${code - 128}: how a shell reports a command killed by ${signalName})`;
    else text = `exited with code ${code}`;
  } else {
    text = 'ended with an unknown status';
  }
  if (info.pipesForceClosed) {
    const after = info.drainMs === undefined ? 'drainMs' : `${info.drainMs} ms (drainMs)`;
    text += `; its output pipes were force-closed after ${after} because a process it started still held them open`;
  }
  return text;
}

function signalNameOf(n: number): string | undefined {
  for (const [name, value] of Object.entries(constants.signals)) if (value === n) return name;
  return undefined;
}

/**
 * The warden record for a leader's end: `describeExit` as the event, the facts as fields. Level
 * `info` for exit 0, `warning` for an end warden caused or forced pipes, `error` otherwise.
 */
export function exitRecord(info: ExitInfo): LogRecord {
  const level: LogLevel =
    info.signal === null && info.exitCode === 0 && !info.pipesForceClosed ? 'info'
    : info.signalledByWarden || (info.signal === null && info.exitCode === 0) ? 'warning'
    : 'error';
  return wardenRecord(level, describeExit(info), {
    exitCode: info.exitCode,
    signal: info.signal,
    signalledByWarden: info.signalledByWarden,
    pipesForceClosed: info.pipesForceClosed,
  });
}
