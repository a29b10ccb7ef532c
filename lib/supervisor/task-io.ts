import { readSync } from 'node:fs';
import type { TaskChild } from '../process/spawn-task.js';
import type { Readable } from 'node:stream';
import { OutputPump } from '../process/output-pump.js';
import type { Reactor, StreamReg } from '../reactor/reactor.js';
import type { ResolvedSpec } from './options.js';
import type { TaskLog } from './task-log.js';
import type { Task } from './task.js';
import { REAPER_STREAM } from './task-leader.js';

/** The pipes of one task, as the task sees them. */
export interface TaskIO {
  /** Output pipes (stdout, stderr, log, comms) that have not reached EOF. */
  openPipes(): number;
  /** Releases everything the task holds in the reactor; returns the streams that were still open. */
  release(): string[];
  writeStdin(chunk: Buffer | string): boolean;
  endStdin(): void;
  /** The comms channel socket (fd 4), for the comms layer. */
  comms: StreamReg | undefined;
  /** Backpressure from the log writer: pause / resume stdout, stderr and fd 3. */
  pauseLogged(): void;
  resumeLogged(): void;
}

/** The consumers of the channels: the task's log (stdout, stderr, fd 3) and comms (fd 4). */
export interface ChannelHooks {
  log: TaskLog;
  comms?: { data(chunk: Buffer): void; end(): void; drain(): void };
}

const OUTPUT = ['stdout', 'stderr', 'log', 'comms'] as const;

/** Most bytes `drainTerminal` reads at the end: well over what a terminal buffers. */
const MAX_TERMINAL_DRAIN_BYTES = 1024 * 1024;

/**
 * pty mode, at the terminal's end of file: reads what the kernel still holds for the master.
 * libuv ends a stream whose poll says the other side hung up after a read that did not fill its
 * buffer (right for a pipe, whose last bytes that read took), but a terminal hands its output
 * over in pieces of a line discipline's size, so bytes can remain: without this, the end of a
 * task's output was lost about half the time (spec). The master is non-blocking; EIO (every
 * slave closed, nothing left) or EAGAIN ends the loop.
 */
function drainTerminal(fd: number, onData: (chunk: Buffer) => void): void {
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (let total = 0; total < MAX_TERMINAL_DRAIN_BYTES;) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch {
      return;
    }
    if (n <= 0) return;
    total += n;
    onData(Buffer.from(buf.subarray(0, n)));
  }
}

/**
 * Registers the child's stdio and channel sockets with the reactor and routes their bytes:
 * stdout and stderr to events, the spec's sinks and the task's log; fd 3 to the log; fd 4 to the
 * comms channel (read and discarded when there is none).
 */
export function wireTaskIO(task: Task, reactor: Reactor, child: TaskChild, spec: ResolvedSpec, onClosed: () => void, hooks: ChannelHooks): TaskIO {
  const regs = new Map<string, StreamReg>();
  const pumps: OutputPump[] = [];
  const streams = child.stdio;
  /** Logged streams whose last partial line was handed to the log (EOF, error or release). */
  const flushed = new Set<'stdout' | 'stderr' | 'log'>();
  const flush = (name: 'stdout' | 'stderr' | 'log'): void => {
    if (flushed.has(name)) return;
    flushed.add(name);
    hooks.log.end(name);
  };

  const out = (name: 'stdout' | 'stderr', stream: Readable | null, sinkOpt: NodeJS.WritableStream | undefined): void => {
    if (!stream) return;
    const pump = sinkOpt ? new OutputPump(reactor, sinkOpt as never) : undefined;
    if (pump) pumps.push(pump);
    const onData = (chunk: Buffer): void => {
      task.emit(name, chunk);
      pump?.push(chunk);
      hooks.log[name](chunk);
    };
    const terminalFd = spec.pty && name === 'stdout' ? (child as { terminalFd?: number }).terminalFd ?? -1 : -1;
    const reg = reactor.addStream(task.id, name, stream as never, {
      data: onData,
      // pty mode: the terminal also takes what task.write() types; it reports when it drained.
      ...(terminalFd >= 0 ? { drain: () => task.emit('drain') } : {}),
      end: () => {
        if (terminalFd >= 0) drainTerminal(terminalFd, onData);
        flush(name);
        onClosed();
      },
      error: (err) => {
        if (terminalFd >= 0) drainTerminal(terminalFd, onData);
        flush(name);
        // A terminal's master reads EIO once every holder of its slave side has closed it:
        // that is its end of file, not a failure.
        if (!(spec.pty && (err as NodeJS.ErrnoException).code === 'EIO')) task.log('warning', `${name} pipe failed: ${err.message}`);
        queueMicrotask(onClosed);
      },
    });
    pump?.attach(reg);
    regs.set(name, reg);
  };
  out('stdout', streams[1] as Readable | null, spec.stdoutSink);
  out('stderr', streams[2] as Readable | null, spec.stderrSink);

  const logStream = streams[3] as Readable | null;
  if (logStream) {
    regs.set(
      'log',
      reactor.addStream(task.id, 'log', logStream as never, {
        data: (chunk) => hooks.log.channel(chunk),
        end: () => {
          flush('log');
          onClosed();
        },
        error: () => {
          flush('log');
          queueMicrotask(onClosed);
        },
      }),
    );
  }

  const commsStream = streams[4] as Readable | null;
  if (commsStream) {
    regs.set(
      'comms',
      reactor.addStream(task.id, 'comms', commsStream as never, {
        data: hooks.comms?.data ?? ((): void => {}),
        ...(hooks.comms ? { drain: hooks.comms.drain } : {}),
        end: () => {
          hooks.comms?.end();
          onClosed();
        },
        error: () => {
          hooks.comms?.end();
          queueMicrotask(onClosed);
        },
      }),
    );
  }

  const stdin = streams[0];
  if (stdin && spec.stdin) {
    regs.set('stdin', reactor.addStream(task.id, 'stdin', stdin as never, { error: () => {}, drain: () => task.emit('drain') }));
  }

  return {
    comms: regs.get('comms'),
    pauseLogged: () => {
      for (const n of ['stdout', 'stderr', 'log']) {
        const reg = regs.get(n);
        if (reg) reactor.pause(reg, 'log');
      }
    },
    resumeLogged: () => {
      for (const n of ['stdout', 'stderr', 'log']) {
        const reg = regs.get(n);
        if (reg) reactor.resume(reg, 'log');
      }
    },
    openPipes: () => OUTPUT.reduce((n, name) => {
      const reg = regs.get(name);
      return n + (reg && !reg.released && !reg.ended ? 1 : 0);
    }, 0),
    release: () => {
      for (const p of pumps) p.detach();
      // warden-reaper's status socket is the leader's, not a task pipe: it is not reported.
      const forced = reactor.releaseTask(task.id).filter((name) => name !== REAPER_STREAM);
      // A pipe force-closed after drainMs (or one that failed) may hold a partial last line: it
      // is a record too (DESIGN 7: nothing dropped), written before warden's own records of the end.
      for (const name of ['stdout', 'stderr', 'log'] as const) if (regs.has(name)) flush(name);
      return forced;
    },
    // pty mode: the terminal is the task's stdin; what is written is typed into it, and the end
    // of input is the terminal's EOF character (^D), as at a keyboard.
    writeStdin: (chunk) => {
      const reg = regs.get(spec.pty ? 'stdout' : 'stdin');
      return reg && !reg.released ? reactor.write(reg, chunk) : false;
    },
    endStdin: () => {
      if (spec.pty) {
        const reg = regs.get('stdout');
        if (reg && !reg.released) reactor.write(reg, '\x04');
        return;
      }
      const reg = regs.get('stdin');
      if (reg) reactor.endWritable(reg);
    },
  };
}
