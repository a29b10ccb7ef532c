/**
 * The native spawner: tasks start through posix_spawn(3) (build/Release/warden_native.node,
 * built from native/warden_native.c at install) instead of child_process.spawn.
 *
 * Why: libuv forks. A fork copies the page tables of the whole supervisor, and the parent then
 * waits while the child tears that copy down in exec, so every spawn costs in proportion to the
 * supervisor's memory and blocks its event loop meanwhile. glibc's posix_spawn starts the child
 * with CLONE_VM | CLONE_VFORK: nothing is copied and the child execs at once (bench/spawn.ts
 * measures both). Where the addon is missing (no compiler at install, another OS), in a worker
 * thread, or with WARDEN_SPAWNER=node, tasks start through child_process as before; both paths
 * give the child the same fds, environment, session and signal state.
 *
 * The child's exit is learnt from SIGCHLD: while native children live, a SIGCHLD listener
 * reaps each of them by pid (waitpid(pid, WNOHANG)), never with waitpid(-1), so the statuses
 * of children started elsewhere in the process (child_process, other libraries) are left alone.
 */
import { EventEmitter } from 'node:events';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { ReadStream as TtyStream } from 'node:tty';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import { DATA_SINK, type DataSinkHolder } from '../reactor/data-sink.js';
import { spawnBinding } from './native-binding.js';
import { Signaller } from '../signal/signaller.js';
import { normalizeSignal, signalName } from '../signal/signals.js';

const binding = spawnBinding;

/** Whether tasks can start through posix_spawn here (the addon built and loaded). */
export const nativeSpawnAvailable = binding !== undefined;

export interface NativeSpawnRequest {
  command: string;
  args: readonly string[];
  cwd: string | undefined;
  /** Read with `for...in` (inherited keys too); undefined values are left out, as child_process does. */
  env: NodeJS.ProcessEnv;
  setsid: boolean;
  stdin: boolean;
  /**
   * warden-reaper's path: start it as the leader, with the command as its child and its status
   * socket as fd 5 (`stdio[5]`). The command is resolved and checked here first, so a missing or
   * unexecutable command fails the spawn as it does without the reaper.
   */
  reaper?: string;
  /** pty mode: fds 0-2 are a new terminal of this size; `stdio[1]` is its master (read and write). */
  pty?: { cols: number; rows: number };
}

/** An error of the kind child_process gives for a failed spawn: `code` is the errno name. */
export class NativeSpawnError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    command: string,
  ) {
    super(`spawn ${command} ${code}`);
    this.name = 'Error';
  }
}

/**
 * The part of a ChildProcess a task uses: `pid`, `stdio` (fd 0 is null unless stdin is a pipe),
 * `exit(code, signal)` once, and `kill(signal)`.
 */
export class NativeChild extends EventEmitter {
  readonly stdio: Array<Socket | null>;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;

  /** pty mode: the terminal's master fd (else -1). */
  readonly terminalFd: number;

  constructor(
    readonly pid: number,
    fds: number[],
    pty = false,
  ) {
    super();
    this.terminalFd = pty ? fds[0]! : -1;
    this.stdio = fds.map((fd, i) => {
      if (pty && i <= 2) return null;
      if (fd < 0) return null;
      return i === COMMS_FD ? commsSocket(fd) : new Socket({ fd, readable: i !== 0, writable: i === 0 || i >= 3 });
    });
    // The terminal's master carries the task's stdin and its stdout (and stderr, which shares
    // the terminal): a TTY stream, both readable and writable, in stdout's place.
    if (pty) this.stdio[1] = new TtyStream(this.terminalFd) as unknown as Socket;
  }

  /** pty mode: resizes the terminal (the task gets SIGWINCH). Returns 0 or minus the errno. */
  resize(cols: number, rows: number): number {
    if (this.terminalFd < 0 || this.stdio[1]?.destroyed !== false) return -osConstants.errno.EBADF;
    return binding!.setWinsize(this.terminalFd, cols, rows);
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }

  /** Sends `signal` to the child through the signaller, unless it was reaped already. True when sent. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const name = normalizeSignal(signal);
    if (name === undefined || !live.has(this.pid)) return false;
    return signaller.kill({ pid: this.pid }, name) === 'sent';
  }

  /** Called by the reaper. */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.exitCode = code;
    this.signalCode = signal;
    this.emit('exit', code, signal);
  }
}

const COMMS_FD = 4;
/** The comms socket's read buffer: a request, or a burst of them, fits. */
const COMMS_READ_BYTES = 64 * 1024;

/**
 * The comms channel's socket reads into one buffer of its own (net.Socket's `onread`) and hands
 * the bytes to its DATA_SINK: no buffer allocated per read and no stream 'data' machinery on the
 * path of every request. pause()/resume() stop and restart reading as usual. Only the comms
 * channel reads this way: it copies what it keeps (the channel's ChunkReader and decoder), while
 * stdout and stderr chunks go on to user listeners that may keep them.
 */
function commsSocket(fd: number): Socket {
  const buffer = Buffer.allocUnsafe(COMMS_READ_BYTES);
  const socket = new Socket({
    fd,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (bytes: number, buf: Uint8Array) => {
        (socket as unknown as DataSinkHolder)[DATA_SINK]?.((buf as Buffer).subarray(0, bytes));
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  (socket as unknown as DataSinkHolder)[DATA_SINK] = undefined;
  return socket;
}

/** Signals a native child on behalf of `kill()`; a task's teardown uses its supervisor's own. */
const signaller = new Signaller();

/** Native children not reaped yet, by pid. */
const live = new Map<number, NativeChild>();

function reapAll(): void {
  for (const [pid, child] of live) {
    const st = binding!.reap(pid);
    if (st === null) continue;
    live.delete(pid);
    // [-1, -1]: not our child any more (reaped elsewhere): no status to report; the task's
    // exit backstop notices the pid is gone.
    if (st[0] === -1 && st[1] === -1) continue;
    child.exited(st[1] > 0 ? null : st[0], st[1] > 0 ? (signalName(st[1]) as NodeJS.Signals) : null);
  }
  if (live.size === 0) process.removeListener('SIGCHLD', reapAll);
}

/**
 * Starts `req.command` through posix_spawn. Throws a NativeSpawnError (code ENOENT, EACCES,
 * ENOEXEC, ...) when it cannot start, as child_process.spawn reports through 'error'.
 * Precondition: nativeSpawnAvailable.
 */
export function nativeSpawn(req: NativeSpawnRequest): NativeChild {
  const path = resolveCommand(req.command, req.env);
  const envp: string[] = [];
  for (const key in req.env) {
    const value = req.env[key];
    if (value !== undefined) envp.push(`${key}=${value}`);
  }
  const argv = [req.command, ...req.args];
  // C strings end at a NUL: refuse what would be cut short, as child_process does.
  for (const s of [...argv, ...envp, req.cwd ?? '']) {
    if (s.includes('\0')) throw new TypeError(`spawn ${req.command}: arguments, environment and cwd must be strings without null bytes`);
  }
  if (req.reaper !== undefined) checkExecutable(path, req.command, req.cwd);
  if (live.size === 0) process.on('SIGCHLD', reapAll);
  const pty: [number, number] | null = req.pty ? [req.pty.cols, req.pty.rows] : null;
  let out = req.reaper !== undefined
    ? binding!.spawn(req.reaper, [req.reaper, path, ...argv], envp, req.cwd ?? null, req.setsid, req.stdin, true, pty)
    : binding!.spawn(path, argv, envp, req.cwd ?? null, req.setsid, req.stdin, false, pty);
  if (req.reaper === undefined && out.length === 1 && -out[0]! === osConstants.errno.ENOEXEC) {
    // An executable file the kernel cannot run (a script without `#!`): run it with /bin/sh, as
    // execvp (and so child_process) does.
    out = binding!.spawn('/bin/sh', ['/bin/sh', path, ...req.args], envp, req.cwd ?? null, req.setsid, req.stdin, false, pty);
  }
  if (out.length === 1) {
    if (live.size === 0) process.removeListener('SIGCHLD', reapAll);
    const errno = -out[0]!;
    throw new NativeSpawnError(errnoName(errno), errno, req.command);
  }
  const child = new NativeChild(out[0]!, out.slice(1), pty !== null);
  live.set(child.pid, child);
  return child;
}

/**
 * The exit backstop's check for a native child: true once `child` is no longer a live native
 * child (its exit was reported, or it was reaped elsewhere and `reap` said so). By the object,
 * not the pid: the pid may already name a newer child.
 *
 * While this module's SIGCHLD listener is in place every exit is normally seen through it: a
 * SIGCHLD is sent whoever reaps the child, and each one reaps every live native child, so signals
 * merged by the kernel lose nothing. Two things can still hide an exit: the listener taken away
 * (say, by `process.removeAllListeners('SIGCHLD')` elsewhere in the process), which this puts
 * back, and native code that replaced the process's SIGCHLD handler, so that no signal reaches
 * Node at all. For those it reaps every live native child itself, as a SIGCHLD would, at most
 * once per BACKSTOP_REAP_MS for the whole process, however many tasks ask (their checks fall due
 * together): one waitpid per native child per second, instead of a /proc read per task.
 */
export function nativeChildGone(child: NativeChild): boolean {
  if (live.size > 0) {
    if (!process.listeners('SIGCHLD').includes(reapAll)) process.on('SIGCHLD', reapAll);
    const t = performance.now();
    if (t - lastBackstopReap >= BACKSTOP_REAP_MS) {
      lastBackstopReap = t;
      reapAll();
    }
  }
  return live.get(child.pid) !== child;
}

/** Least time between two reaps made by exit backstops (nativeChildGone). */
const BACKSTOP_REAP_MS = 500;
let lastBackstopReap = -Infinity;

/** Native children not reaped yet (specs). */
export function nativeChildrenAlive(): number {
  return live.size;
}

/**
 * What exec would say about `path` before the reaper tries it: ENOENT when it is missing, EACCES
 * when it is not an executable file (a directory, no execute bit). Relative paths are taken from
 * `cwd`, as the child would.
 */
function checkExecutable(path: string, command: string, cwd: string | undefined): void {
  const full = cwd !== undefined && !path.startsWith('/') ? join(cwd, path) : path;
  let isFile: boolean;
  try {
    isFile = statSync(full).isFile();
  } catch {
    throw new NativeSpawnError('ENOENT', osConstants.errno.ENOENT, command);
  }
  try {
    if (!isFile) throw new Error('not a file');
    accessSync(full, fsConstants.X_OK);
  } catch {
    throw new NativeSpawnError('EACCES', osConstants.errno.EACCES, command);
  }
}

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/**
 * The file to execute: `command` itself when it holds a '/', else the first executable file
 * named so in the child's PATH (as libuv does: the child's environment, not the supervisor's;
 * glibc's default path when PATH is unset). Throws ENOENT when there is none, EACCES when the
 * only files found are not executable.
 */
function resolveCommand(command: string, env: NodeJS.ProcessEnv): string {
  if (command.includes('/')) return command;
  if (command === '') throw new NativeSpawnError('ENOENT', osConstants.errno.ENOENT, command);
  const pathVar = env.PATH ?? '/bin:/usr/bin';
  let denied = false;
  for (const dir of pathVar.split(delimiter)) {
    const candidate = join(dir === '' ? '.' : dir, command);
    try {
      if (!statSync(candidate).isFile()) continue;
    } catch {
      continue;
    }
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      denied = true;
    }
  }
  const code = denied ? 'EACCES' : 'ENOENT';
  throw new NativeSpawnError(code, osConstants.errno[code], command);
}
