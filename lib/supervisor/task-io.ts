import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { OutputPump } from '../process/output-pump.js';
import type { Reactor, StreamReg } from '../reactor/reactor.js';
import type { ResolvedSpec } from './options.js';
import type { Task } from './task.js';

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
}

/** Hooks later layers (logs, comms) use to take over a channel instead of the defaults here. */
export interface ChannelHooks {
  log?: { data(chunk: Buffer): void; end(): void };
  comms?: { data(chunk: Buffer): void; end(): void };
}

const OUTPUT = ['stdout', 'stderr', 'log', 'comms'] as const;

/**
 * Registers the child's stdio and channel sockets with the reactor and routes their bytes.
 * fd 3 lines are emitted as `logline` events; fd 4 bytes are read and discarded until the comms
 * layer takes the channel (`hooks.comms`).
 */
export function wireTaskIO(task: Task, reactor: Reactor, child: ChildProcess, spec: ResolvedSpec, onClosed: () => void, hooks: ChannelHooks = {}): TaskIO {
  const regs = new Map<string, StreamReg>();
  const pumps: OutputPump[] = [];
  const streams = child.stdio;

  const out = (name: 'stdout' | 'stderr', stream: Readable | null, sinkOpt: NodeJS.WritableStream | undefined): void => {
    if (!stream) return;
    const pump = sinkOpt ? new OutputPump(reactor, sinkOpt as never) : undefined;
    if (pump) pumps.push(pump);
    const reg = reactor.addStream(task.id, name, stream as never, {
      data: (chunk) => {
        task.emit(name, chunk);
        pump?.push(chunk);
      },
      end: onClosed,
      error: (err) => {
        task.log('warning', `${name} pipe failed: ${err.message}`);
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
    let pending = '';
    const max = spec.maxLineBytes;
    const onData =
      hooks.log?.data ??
      ((chunk: Buffer): void => {
        pending += chunk.toString('utf8');
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          task.emit('logline', pending.slice(0, nl).replace(/\r$/, ''));
          pending = pending.slice(nl + 1);
        }
        // Bounded: an endless line is cut into pieces of maxLineBytes characters.
        while (pending.length > max) {
          task.emit('logline', pending.slice(0, max));
          pending = pending.slice(max);
        }
      });
    regs.set(
      'log',
      reactor.addStream(task.id, 'log', logStream as never, {
        data: onData,
        end: () => {
          if (hooks.log) hooks.log.end();
          else if (pending) task.emit('logline', pending);
          pending = '';
          onClosed();
        },
        error: () => queueMicrotask(onClosed),
      }),
    );
  }

  const commsStream = streams[4] as Readable | null;
  if (commsStream) {
    regs.set(
      'comms',
      reactor.addStream(task.id, 'comms', commsStream as never, {
        data: hooks.comms?.data ?? ((): void => {}),
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
    regs.set('stdin', reactor.addStream(task.id, 'stdin', stdin as never, { error: () => {} }));
  }

  return {
    comms: regs.get('comms'),
    openPipes: () => OUTPUT.reduce((n, name) => {
      const reg = regs.get(name);
      return n + (reg && !reg.released && !reg.ended ? 1 : 0);
    }, 0),
    release: () => {
      for (const p of pumps) p.detach();
      return reactor.releaseTask(task.id);
    },
    writeStdin: (chunk) => {
      const reg = regs.get('stdin');
      return reg ? reactor.write(reg, chunk) : false;
    },
    endStdin: () => {
      const reg = regs.get('stdin');
      if (reg) reactor.endWritable(reg);
    },
  };
}
