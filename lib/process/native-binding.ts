/**
 * warden's native addon (build/Release/warden_native.node, from native/warden_native.c, built by
 * `npm install` with node-gyp): posix_spawn, reaping by pid, prctl. Absent where it could not be
 * built (no compiler, another OS); every user of it has a fallback or says it is missing.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { isLinux } from '../signal/proc.js';

export interface NativeBinding {
  reap(pid: number): [number, number] | null;
  /** 0, or minus the errno. */
  setDumpable(on: boolean): number;
  /**
   * With `statusFd`, a sixth socket is the child's fd 5 (warden-reaper's status). With `pty`
   * ([cols, rows]) fds 0-2 are a new terminal's slave side and fd0's slot returns its master.
   */
  spawn(path: string, argv: string[], envp: string[], cwd: string | null, setsid: boolean, stdinPipe: boolean, statusFd?: boolean, pty?: [number, number] | null): number[];
  /** TIOCSWINSZ on a pty master: 0, or minus the errno. */
  setWinsize(fd: number, cols: number, rows: number): number;
  spinReadable(fd: number, micros: number): number;
}

/** The package root's build/Release, seen from dist/lib/process/ (the package) or lib/process/ (the sources). */
const RELEASE_DIRS = ['../../../build/Release/', '../../build/Release/'];

function load(): NativeBinding | undefined {
  if (!isLinux) return undefined;
  const require = createRequire(import.meta.url);
  // The package root's build/Release, seen from dist/lib/process/ (the package) or lib/process/
  // (the sources, under the spec runner).
  for (const dir of RELEASE_DIRS) {
    try {
      return require(`${dir}warden_native.node`) as NativeBinding;
    } catch {
      // not there: try the next
    }
  }
  return undefined;
}

/** The addon, when it was built and loads here. */
export const nativeBinding = load();

function findReaper(): string | undefined {
  if (!isLinux) return undefined;
  for (const dir of RELEASE_DIRS) {
    const path = fileURLToPath(new URL(`${dir}warden-reaper`, import.meta.url));
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // not there: try the next
    }
  }
  return undefined;
}

/**
 * warden-reaper (native/warden_reaper.c, built with the addon): the leader of a task under the
 * subreaper tier. Undefined where it was not built.
 */
export const reaperPath = findReaper();

/**
 * The addon for starting tasks, unless WARDEN_SPAWNER=node or this is a worker thread: signals
 * reach the main thread only, so in a worker SIGCHLD (and so the children's exits) would never be
 * seen; workers start tasks through child_process.
 */
export const spawnBinding = process.env.WARDEN_SPAWNER === 'node' || !isMainThread ? undefined : nativeBinding;
