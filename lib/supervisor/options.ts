import type { Writable } from 'node:stream';
import { WardenError } from '../errors.js';
import { normalizeSignal } from '../signal/signals.js';
import type { TaskInstanceSpec } from './task-control-plane.js';
import type { TaskSpec } from './types.js';

/** Defaults in one place (DESIGN 9). */
export const DEFAULTS = {
  graceMs: 5000,
  drainMs: 2000,
  maxKillRounds: 20,
  maxLineBytes: 64 * 1024,
  exitCheckMs: 1000,
  killSignal: 'SIGTERM' as NodeJS.Signals,
} as const;

export interface ResolvedSpec {
  id: string;
  command: string;
  args: string[];
  kind: string;
  isolate: boolean;
  cwd: string | undefined;
  env: NodeJS.ProcessEnv;
  secretEnv: string[];
  stdin: boolean;
  pty: { cols: number; rows: number } | undefined;
  stdoutSink: Writable | undefined;
  stderrSink: Writable | undefined;
  timeoutMs: number;
  graceMs: number;
  drainMs: number;
  killSignal: NodeJS.Signals;
  maxKillRounds: number;
  killLeftovers: boolean;
  maxLineBytes: number;
  exitCheckMs: number;
  ti: TaskInstanceSpec | undefined;
  logFile: string | undefined;
}

function invalid(message: string): never {
  throw new WardenError('ERR_INVALID_OPTION', message);
}

/** A non-negative integer option, or its default when absent. */
export function msOption(name: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    invalid(`${name} must be an integer >= ${min} (milliseconds or a count), got ${JSON.stringify(value)}. Pass e.g. ${name}: ${fallback}.`);
  }
  return value;
}

let seq = 0;

/** Validates a task spec at the public boundary; throws TypeError/WardenError with what to fix. */
export function resolveSpec(spec: TaskSpec): ResolvedSpec {
  if (spec === null || typeof spec !== 'object') throw new TypeError('warden: a task spec must be an object with at least `command`.');
  if (typeof spec.command !== 'string' || spec.command.length === 0) {
    throw new TypeError('warden: spec.command must be a non-empty string (the program to run; no shell is used).');
  }
  if (spec.args !== undefined && (!Array.isArray(spec.args) || spec.args.some((a) => typeof a !== 'string'))) {
    throw new TypeError('warden: spec.args must be an array of strings.');
  }
  if (spec.id !== undefined && (typeof spec.id !== 'string' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(spec.id))) {
    invalid(`spec.id must be 1-128 characters of [A-Za-z0-9_.:-], got ${JSON.stringify(spec.id)}.`);
  }
  const kind = spec.kind ?? 'task';
  if (typeof kind !== 'string') throw new TypeError('warden: spec.kind must be a string.');
  const isolate = spec.isolate ?? kind === 'task';
  if (typeof isolate !== 'boolean') throw new TypeError('warden: spec.isolate must be a boolean.');
  let killSignal: NodeJS.Signals = DEFAULTS.killSignal;
  if (spec.killSignal !== undefined) {
    const s = typeof spec.killSignal === 'string' ? normalizeSignal(spec.killSignal) : undefined;
    if (!s) invalid(`killSignal ${JSON.stringify(spec.killSignal)} is not a signal name this platform knows. Use e.g. 'SIGTERM', 'SIGINT' or 'SIGHUP'.`);
    killSignal = s!;
  }
  if (spec.secretEnv !== undefined && (!Array.isArray(spec.secretEnv) || spec.secretEnv.some((a) => typeof a !== 'string'))) {
    throw new TypeError('warden: spec.secretEnv must be an array of variable names.');
  }
  return {
    id: spec.id ?? `task-${process.pid}-${++seq}-${Date.now().toString(36)}`,
    command: spec.command,
    args: [...(spec.args ?? [])],
    kind,
    isolate,
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    secretEnv: [...(spec.secretEnv ?? [])],
    stdin: spec.stdin === true,
    pty: resolvePty(spec.pty),
    stdoutSink: spec.stdout,
    stderrSink: spec.stderr,
    timeoutMs: msOption('timeoutMs', spec.timeoutMs, 0),
    graceMs: msOption('graceMs', spec.graceMs, DEFAULTS.graceMs),
    drainMs: msOption('drainMs', spec.drainMs, DEFAULTS.drainMs),
    killSignal,
    maxKillRounds: msOption('maxKillRounds', spec.maxKillRounds, DEFAULTS.maxKillRounds, 1),
    killLeftovers: spec.killLeftovers ?? isolate,
    maxLineBytes: msOption('maxLineBytes', spec.maxLineBytes, DEFAULTS.maxLineBytes, 1024),
    exitCheckMs: msOption('exitCheckMs', spec.exitCheckMs, DEFAULTS.exitCheckMs, 10),
    ti: resolveTi(spec.ti),
    logFile: spec.logFile === undefined ? undefined : nonEmpty('logFile', spec.logFile),
  };
}

/** Terminal sizes: what TIOCSWINSZ takes. */
const MAX_TERMINAL_SIZE = 65535;

function resolvePty(pty: TaskSpec['pty']): { cols: number; rows: number } | undefined {
  if (pty === undefined || pty === false) return undefined;
  if (pty === true) return { cols: 80, rows: 24 };
  if (pty === null || typeof pty !== 'object') throw new TypeError('warden: spec.pty must be a boolean or {cols, rows}.');
  return { cols: terminalSize('pty.cols', pty.cols, 80), rows: terminalSize('pty.rows', pty.rows, 24) };
}

/** Checks a terminal size (cols or rows): an integer from 1 to 65535. */
export function terminalSize(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_TERMINAL_SIZE) {
    throw new TypeError(`warden: ${name} must be an integer from 1 to ${MAX_TERMINAL_SIZE}, got ${JSON.stringify(value)}.`);
  }
  return value as number;
}

function resolveTi(ti: TaskSpec['ti']): TaskInstanceSpec | undefined {
  if (ti === undefined) return undefined;
  if (ti === null || typeof ti !== 'object' || typeof ti.id !== 'string' || ti.id === '') {
    throw new TypeError('warden: spec.ti must be an object with a non-empty string id (the task instance id).');
  }
  if (ti.tryNumber !== undefined) msOption('ti.tryNumber', ti.tryNumber, 1, 1);
  return { ...ti };
}

function nonEmpty(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`warden: spec.${name} must be a non-empty string.`);
  return value;
}
