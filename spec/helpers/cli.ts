import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cliPath } from './paths.js';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

export interface CliOptions {
  env: NodeJS.ProcessEnv;
  /** Sees the stdout so far after each chunk (to act on `ready`, say). */
  onOut?: (out: string, child: ChildProcess) => void;
  /** Sees the stderr so far after each chunk. */
  onErr?: (err: string, child: ChildProcess) => void;
}

/** Runs `warden ...args` as a real process; resolves on `close` with its status and output. */
export function runWarden(args: readonly string[], { env, onOut, onErr }: CliOptions): Promise<CliRun> {
  const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b) => {
    out += b;
    onOut?.(out, child);
  });
  child.stderr!.on('data', (b) => {
    err += b;
    onErr?.(err, child);
  });
  return once(child, 'close').then(([code, signal]) => ({ code, signal, out, err }));
}
