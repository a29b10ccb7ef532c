import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { randomFillSync } from 'node:crypto';
import { statSync } from 'node:fs';
import { WardenError, errnoCode } from '../errors.js';
import { nativeSpawn, nativeSpawnAvailable } from './native-spawn.js';

/** The environment cookie's name: fixed, so any tool can find a task's processes by it. */
export const COOKIE_NAME = 'WARDEN_TASK';
/** Variables that never reach a child, whatever the spec says. */
export const ALWAYS_SECRET = ['WARDEN_TOKEN', 'WARDEN_TOKEN_FILE'];

export interface SpawnRequest {
  taskId: string;
  command: string;
  args: readonly string[];
  cwd: string | undefined;
  env: NodeJS.ProcessEnv;
  secretEnv: readonly string[];
  isolate: boolean;
  stdin: boolean;
  /** Runs the synchronous spawn; the cgroup tier wraps it to fork inside the task's cgroup. */
  wrap?: <T>(fork: () => T) => T;
  /** Start through posix_spawn when the native spawner is built (default true). */
  native?: boolean;
  /** Start warden-reaper (this path) as the leader, the command as its child (native spawner only). */
  reaper?: string;
  /** pty mode (native spawner only): fds 0-2 are a terminal of this size. */
  pty?: { cols: number; rows: number };
}

/**
 * What a task needs of its leader's process object; both child_process's ChildProcess and the
 * native spawner's NativeChild provide it.
 */
export interface TaskChild {
  readonly pid?: number | undefined;
  readonly stdio: ReadonlyArray<Readable | Writable | null | undefined>;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
  kill(signal?: NodeJS.Signals | number): boolean;
}

/** Random bytes of a cookie. */
const COOKIE_RANDOM_BYTES = 6;
/**
 * Random bytes drawn for many cookies at once (one call into the CSPRNG per 256 cookies instead
 * of one per task). Each cookie takes fresh bytes; none is handed out twice.
 */
const cookiePool = Buffer.alloc(COOKIE_RANDOM_BYTES * 256);
let cookiePoolAt = cookiePool.length;

/** A cookie value unique per task attempt: `<task id>.<random>` (12 hex digits). */
export function makeCookie(taskId: string): string {
  if (cookiePoolAt + COOKIE_RANDOM_BYTES > cookiePool.length) {
    randomFillSync(cookiePool);
    cookiePoolAt = 0;
  }
  const at = cookiePoolAt;
  cookiePoolAt += COOKIE_RANDOM_BYTES;
  return `${taskId}.${cookiePool.toString('hex', at, at + COOKIE_RANDOM_BYTES)}`;
}

/**
 * The child's environment: `req.env` without the secret names, plus the task's variables.
 *
 * Built without copying `req.env`: the result is an object whose prototype is `req.env`, with
 * the task's variables as its own properties and every secret name present in `req.env`
 * shadowed by an own `undefined`. `child_process.spawn` reads an env object with `for...in`
 * (inherited keys included, documented in Node's own tests) and skips undefined values, so the
 * child sees exactly the copy it used to get, read from `req.env` at the moment of the spawn.
 * Node also copies its own NODE_V8_COVERAGE into an env that lacks it as an own key, so
 * req.env's value is made an own key. Precondition: used only as `spawn`'s `env` option (other
 * readers may take own keys only).
 */
export function childEnv(req: SpawnRequest, cookie: string): NodeJS.ProcessEnv {
  const env = Object.create(req.env) as NodeJS.ProcessEnv;
  for (const name of ALWAYS_SECRET) if (name in req.env) env[name] = undefined;
  for (const name of req.secretEnv) if (name in req.env) env[name] = undefined;
  // Node copies its own NODE_V8_COVERAGE into an env that lacks it as an own key: keep req.env's.
  if (env.NODE_V8_COVERAGE !== undefined) env.NODE_V8_COVERAGE = req.env.NODE_V8_COVERAGE;
  env[COOKIE_NAME] = cookie;
  env.WARDEN_TASK_ID = req.taskId;
  env.WARDEN_LOG_FD = '3';
  env.WARDEN_COMMS_FD = '4';
  return env;
}

/**
 * Spawns the task: fd 0 /dev/null (or a pipe), fd 1 and 2 pipes, fd 3 the log channel, fd 4 the
 * comms channel. Isolated tasks are `detached`, so the child is a session and group leader before
 * it execs: there is no window in which its group is the supervisor's.
 *
 * Never throws for an OS failure: a missing command, a command that is not executable or a bad
 * cwd comes back as a WardenError with the shell's status (127 / 126).
 */
export function spawnTask(req: SpawnRequest, cookie: string): { child: TaskChild } | { error: WardenError; status: number } {
  if (req.cwd !== undefined) {
    let isDir = false;
    try {
      isDir = statSync(req.cwd).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) {
      return {
        status: 127,
        error: new WardenError('ERR_SPAWN_CWD', `cannot start ${req.command}: working directory ${req.cwd} does not exist or is not a directory. Create it or pass another cwd.`),
      };
    }
  }
  const native = req.native !== false && nativeSpawnAvailable;
  if (req.pty && !native) {
    return {
      status: 126,
      error: new WardenError('ERR_UNSUPPORTED', `cannot start ${req.command} in pty mode: it needs warden's native spawner, and tasks start through child_process here (spawner 'node', WARDEN_SPAWNER=node, a worker thread, or the addon was not built). Run it without pty, or with the native spawner.`),
    };
  }
  const fork = (): TaskChild =>
    native
      ? nativeSpawn({
          command: req.command, args: req.args, cwd: req.cwd, env: childEnv(req, cookie), setsid: req.isolate, stdin: req.stdin,
          ...(req.reaper !== undefined ? { reaper: req.reaper } : {}),
          ...(req.pty ? { pty: req.pty } : {}),
        })
      : spawn(req.command, req.args as string[], {
          cwd: req.cwd,
          env: childEnv(req, cookie),
          detached: req.isolate,
          stdio: [req.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
          windowsHide: true,
        });
  let child: TaskChild;
  try {
    child = req.wrap ? req.wrap(fork) : fork();
  } catch (err) {
    return spawnFailure(req.command, err);
  }
  return { child };
}

/** Maps a spawn error to the shell's status and a message that says what to do. */
export function spawnFailure(command: string, err: unknown): { error: WardenError; status: number } {
  const code = errnoCode(err);
  if (code === 'ENOENT') {
    return {
      status: 127,
      error: new WardenError('ERR_SPAWN_ENOENT', `cannot start ${command}: command not found. Check the name, or pass an absolute path; PATH is searched for bare names.`, { cause: err }),
    };
  }
  if (code === 'EACCES' || code === 'EISDIR' || code === 'ENOEXEC') {
    return {
      status: 126,
      error: new WardenError('ERR_SPAWN_EACCES', `cannot start ${command}: it is not an executable file (${code}). Check that it is a file with the execute bit set, not a directory.`, { cause: err }),
    };
  }
  return {
    status: 126,
    error: new WardenError('ERR_SPAWN_FAILED', `cannot start ${command}: ${(err as Error)?.message ?? String(err)}.`, { cause: err }),
  };
}
