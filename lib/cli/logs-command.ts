import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { errnoCode } from '../errors.js';
import { LineSplitter } from '../logs/line-splitter.js';
import { RecordFormatter, shouldColor } from '../logs/pretty.js';

export interface LogsCommandIo {
  /** Where the formatted lines go; colours are used when it is a TTY (`isTTY`) and NO_COLOR is unset. */
  stdout: Writable & { isTTY?: boolean };
  /** Where usage and file errors go. */
  stderr: Writable;
  /** Environment read for NO_COLOR. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Ends `--follow` (as SIGINT does); the command then resolves 0. */
  signal?: AbortSignal;
  /** With `--follow`, end on SIGINT/SIGTERM (listeners removed afterwards). Default true. */
  handleSignals?: boolean;
}

const USAGE = 'usage: warden logs PATH [--follow] [--no-color]\n';
/** A record longer than this is shown as malformed pieces; real records are far smaller. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const READ_BYTES = 64 * 1024;
/** How much of a piece of an over-long line is shown. */
const PREVIEW_CHARS = 200;

/**
 * `warden logs PATH [--follow] [--no-color]`: prints a JSON-lines task log for a person. `argv`
 * is what follows the word `logs`. Resolves the exit status: 0 when the log was shown (malformed
 * lines are shown marked `[malformed]`, never fatal; `--follow` ended by SIGINT, SIGTERM or the
 * `signal` also ends 0), 2 for a usage error or a log that cannot be opened, 1 when reading
 * fails midway. A reader that goes away (EPIPE, as with `| head`) ends the command quietly with 0.
 *
 * `--follow` prints what is there, then watches the file (fs.watch) and prints each appended
 * line from the last offset read; a partial last line waits for its newline (and is printed as
 * it is when following ends). If the file shrinks (truncated), reading restarts at its beginning;
 * a file replaced by another (rotation) is not followed, since task logs are only ever appended
 * to. On the end it closes the watcher and
 * the file and removes its signal listeners, so the process can exit on its own.
 */
export async function runLogsCommand(argv: string[], io: LogsCommandIo): Promise<number> {
  let follow = false;
  let color: boolean | undefined;
  const paths: string[] = [];
  let optionsDone = false;
  for (const arg of argv) {
    if (!optionsDone && arg.startsWith('-') && arg !== '-') {
      if (arg === '--') optionsDone = true;
      else if (arg === '--follow' || arg === '-f') follow = true;
      else if (arg === '--no-color') color = false;
      else if (arg === '--color') color = true;
      else if (arg === '--help' || arg === '-h') return writeAll(io.stdout, USAGE).then(() => 0);
      else return usageError(io, `unknown option ${arg}`);
    } else {
      paths.push(arg);
    }
  }
  if (paths.length !== 1) return usageError(io, paths.length === 0 ? 'the log file PATH is missing' : `one log file at a time (got ${paths.length})`);
  const path = paths[0];

  let handle: FileHandle;
  try {
    handle = await fs.promises.open(path, 'r');
    if ((await handle.stat()).isDirectory()) {
      await handle.close();
      return usageError(io, `${path} is a directory; pass the log file written with --log-file`);
    }
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file' : err instanceof Error ? err.message : String(err);
    return usageError(io, `cannot open the log file ${path}: ${why}; pass the path given to --log-file`);
  }

  const viewer = new LogViewer(handle, path, io, color ?? shouldColor(io.stdout, io.env ?? process.env));
  return follow ? viewer.follow(io.signal, io.handleSignals ?? true) : viewer.printOnce();
}

async function usageError(io: LogsCommandIo, message: string): Promise<number> {
  await writeAll(io.stderr, `warden logs: ${message}\n${USAGE}`);
  return 2;
}

/** Resolves once `text` is accepted (after a drain if the stream is full), or the stream failed. */
function writeAll(stream: Writable, text: string): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableEnded) return resolve();
    if (stream.write(text)) return resolve();
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

/**
 * Reads one log file from an offset and prints it formatted.
 *
 * Invariants:
 * 1. One read pass at a time; a change seen during a pass schedules exactly one more.
 * 2. After the returned promise settles, the file is closed and no watcher, signal listener or
 *    abort listener of this viewer remains.
 */
class LogViewer {
  private position = 0;
  private readonly buffer = Buffer.allocUnsafe(READ_BYTES);
  private readonly formatter: RecordFormatter;
  private splitter: LineSplitter;
  private out: string[] = [];
  /** Set when stdout failed (a closed pipe): nothing more is worth printing. */
  private outputBroken = false;
  private readonly onOutputError = (): void => {
    this.outputBroken = true;
  };

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly io: LogsCommandIo,
    color: boolean,
  ) {
    this.formatter = new RecordFormatter({ color });
    this.splitter = this.newSplitter();
    io.stdout.on('error', this.onOutputError);
  }

  async printOnce(): Promise<number> {
    let status = await this.readToEnd();
    status = Math.max(status, await this.finish());
    return status;
  }

  follow(signal: AbortSignal | undefined, handleSignals: boolean): Promise<number> {
    return new Promise<number>((resolve) => {
      let reading = false;
      let again = false;
      let stopped = false;
      let status = 0;
      const watcher = fs.watch(this.path, { persistent: true }, () => pass());
      const stop = (code: number): void => {
        if (stopped) return;
        stopped = true;
        status = Math.max(status, code);
        watcher.close();
        if (handleSignals) {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
        signal?.removeEventListener('abort', onSignal);
        if (!reading) void this.finish().then((s) => resolve(Math.max(status, s)));
      };
      const onSignal = (): void => stop(0);
      const pass = (): void => {
        if (stopped) return;
        if (reading) {
          again = true;
          return;
        }
        reading = true;
        void this.readToEnd().then((code) => {
          reading = false;
          if (stopped) void this.finish().then((s) => resolve(Math.max(status, s, code)));
          else if (code !== 0 || this.outputBroken) stop(code);
          else if (again) {
            again = false;
            pass();
          }
        });
      };
      watcher.on('error', (err) => {
        void writeAll(this.io.stderr, `warden logs: stopped following ${this.path}: ${err.message}\n`).then(() => stop(1));
      });
      if (handleSignals) {
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      }
      signal?.addEventListener('abort', onSignal, { once: true });
      // Lines appended before the watcher started are caught by this first pass, which also
      // runs to the end when the signal was aborted already.
      pass();
      if (signal?.aborted === true) stop(0);
    });
  }

  /** Prints from the current offset to the end of the file. Resolves 0, or 1 after a read error. */
  private async readToEnd(): Promise<number> {
    try {
      if ((await this.handle.stat()).size < this.position) {
        this.splitter.end();
        this.out.push(`[${this.path} was truncated; reading it again from the start]`);
        this.position = 0;
        this.splitter = this.newSplitter();
      }
      for (;;) {
        const { bytesRead } = await this.handle.read(this.buffer, 0, this.buffer.length, this.position);
        if (bytesRead === 0) break;
        this.position += bytesRead;
        this.splitter.push(this.buffer.subarray(0, bytesRead));
        await this.print();
        if (this.outputBroken) return 0;
      }
      await this.print();
      return 0;
    } catch (err) {
      await writeAll(this.io.stderr, `warden logs: reading ${this.path} failed: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }

  /** Prints the partial last line, closes the file, detaches from stdout. */
  private async finish(): Promise<number> {
    this.splitter.end();
    await this.print();
    if (this.outputBroken) this.io.stdout.on('error', () => {}); // the stream is dead; later errors are expected
    this.io.stdout.off('error', this.onOutputError);
    try {
      await this.handle.close();
      return 0;
    } catch {
      return 1;
    }
  }

  private async print(): Promise<void> {
    if (this.out.length === 0) return;
    const text = this.out.join('\n') + '\n';
    this.out = [];
    if (!this.outputBroken) await writeAll(this.io.stdout, text);
  }

  private newSplitter(): LineSplitter {
    return new LineSplitter({
      maxLineBytes: MAX_RECORD_BYTES,
      onLine: (text, part) => {
        this.out.push(this.formatter.format(part === 0 ? text : `${text.slice(0, PREVIEW_CHARS)} …(part ${part} of a line over ${MAX_RECORD_BYTES} bytes)`));
      },
    });
  }
}
