/**
 * warden's native addon (build/Release/warden_native.node, from native/warden_native.c, built by
 * `npm install` with node-gyp): posix_spawn, reaping by pid, prctl. Absent where it could not be
 * built (no compiler, another OS); every user of it has a fallback or says it is missing.
 */
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { isLinux } from '../signal/proc.js';

export interface NativeBinding {
  spawn(path: string, argv: string[], envp: string[], cwd: string | null, setsid: boolean, stdinPipe: boolean): number[];
  reap(pid: number): [number, number] | null;
  /** 0, or minus the errno. */
  setDumpable(on: boolean): number;
  spinReadable(fd: number, micros: number): number;
}

function load(): NativeBinding | undefined {
  if (!isLinux) return undefined;
  const require = createRequire(import.meta.url);
  // The package root's build/Release, seen from dist/lib/process/ (the package) or lib/process/
  // (the sources, under the spec runner).
  for (const path of ['../../../build/Release/warden_native.node', '../../build/Release/warden_native.node']) {
    try {
      return require(path) as NativeBinding;
    } catch {
      // not there: try the next
    }
  }
  return undefined;
}

/** The addon, when it was built and loads here. */
export const nativeBinding = load();

/**
 * The addon for starting tasks, unless WARDEN_SPAWNER=node or this is a worker thread: signals
 * reach the main thread only, so in a worker SIGCHLD (and so the children's exits) would never be
 * seen; workers start tasks through child_process.
 */
export const spawnBinding = process.env.WARDEN_SPAWNER === 'node' || !isMainThread ? undefined : nativeBinding;
