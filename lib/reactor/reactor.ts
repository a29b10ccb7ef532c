import { writeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { DATA_SINK, hasDataSink } from './data-sink.js';
import { TimerWheel, type TimerId } from './timer-wheel.js';

/** What a registered stream reports to its task. None of these runs after the stream is released. */
export interface StreamHandlers {
  data?(chunk: Buffer): void;
  /** EOF: the other side closed. The reactor releases the stream right after this returns. */
  end?(): void;
  /** Read or write failure (EPIPE, ECONNRESET...). The reactor releases the stream after this returns. */
  error?(err: Error): void;
  /** The stream was writable and its buffer drained. */
  drain?(): void;
}

type Stream = (Readable | Writable) & { destroy(err?: Error): unknown; destroyed: boolean };

/** A handle as the reactor knows it. Returned by `addStream`; pass it back to pause/resume/write/release. */
export interface StreamReg {
  readonly taskId: string;
  readonly name: string;
  readonly stream: Stream;
  released: boolean;
  /** True once EOF was seen (released as a normal end, not forced). */
  ended: boolean;
  /** Who holds the stream paused (a sink, the log writer, the comms queue); it flows when empty. */
  readonly pausedBy: Set<string>;
}

interface TaskHandles {
  streams: Map<string, StreamReg & { listeners: Array<[string, (...a: any[]) => void]>; fail: (err: Error) => void }>;
  timers: Set<TimerId>;
}

/**
 * The one owner of every handle of every task's children: stdio pipes, the fd 3 and fd 4 channel
 * sockets, and the task's timers (on the supervisor's single TimerWheel).
 *
 * Invariants:
 * 1. Only the reactor destroys a registered stream or cancels a registered timer.
 * 2. Release is unregister, then close: every listener of ours is removed and reading stops
 *    before `destroy()`; a no-op error sink stays attached until the stream's `close`, so no
 *    `error` event is ever unhandled (EPIPE, ECONNRESET from a child that died mid-write).
 * 3. No callback registered for a task (stream handler or timer) runs after that handle or task
 *    was released, even if the event was already queued.
 * 4. Releasing twice, or releasing an unknown task or handle, is harmless.
 * 5. A released task holds no handle: `openHandles(task)` is 0 and the event loop holds nothing
 *    of it once the streams' `close` events have fired.
 */
export class Reactor {
  readonly wheel: TimerWheel;
  private readonly tasks = new Map<string, TaskHandles>();

  constructor(onError: (err: unknown) => void = () => {}) {
    this.wheel = new TimerWheel(onError);
  }

  /** Registers a child stream under a task. Readable streams start flowing at once. */
  addStream(taskId: string, name: string, stream: Stream, handlers: StreamHandlers): StreamReg {
    const handles = this.handlesOf(taskId);
    if (handles.streams.has(name)) throw new Error(`reactor: stream ${name} already registered for ${taskId}`);
    const fail = (err: Error): void => {
      if (reg.released) return;
      handlers.error?.(err);
      this.release(reg);
    };
    const reg = { taskId, name, stream, released: false, ended: false, pausedBy: new Set<string>(), listeners: [] as Array<[string, (...a: any[]) => void]>, fail };
    const on = (event: string, fn: (...a: any[]) => void): void => {
      reg.listeners.push([event, fn]);
      stream.on(event, fn);
    };
    // The error sink is attached first and never removed by us: it outlives release (invariant 2).
    stream.on('error', noop);
    on('error', fail);
    if (handlers.data) {
      const data = handlers.data;
      const deliver = (chunk: Buffer): void => {
        if (!reg.released) data(chunk);
      };
      if (hasDataSink(stream)) {
        // Reads into its own buffer: bytes come through the sink, 'end' still through the stream.
        stream[DATA_SINK] = deliver;
        (stream as Readable).resume();
      } else {
        on('data', deliver);
      }
    }
    on('end', () => {
      if (reg.released) return;
      reg.ended = true;
      handlers.end?.();
      this.release(reg);
    });
    if (handlers.drain) {
      const drain = handlers.drain;
      on('drain', () => {
        if (!reg.released) drain();
      });
    }
    handles.streams.set(name, reg);
    return reg;
  }

  /** Stops reading on behalf of `by`; reading resumes only when every pauser has resumed. */
  pause(reg: StreamReg, by = 'owner'): void {
    if (reg.released) return;
    reg.pausedBy.add(by);
    (reg.stream as Readable).pause();
  }

  resume(reg: StreamReg, by = 'owner'): void {
    if (reg.released) return;
    reg.pausedBy.delete(by);
    if (reg.pausedBy.size === 0) (reg.stream as Readable).resume();
  }

  /**
   * Writes to a registered writable stream; false when released or when the buffer is full.
   *
   * A buffer written while the stream holds nothing queued goes straight to its descriptor with
   * one write(2): the bytes cannot overtake earlier ones, and the stream machinery (a write
   * request, its callback, the afterWrite tick) is skipped on the path every comms answer takes.
   * What the socket does not take at once (EAGAIN, a short write) goes through the stream as
   * before. A failure (EPIPE, ECONNRESET) is reported as the stream's `error` handler would be,
   * on a later microtask (never inside the caller's write), and the stream is released.
   */
  write(reg: StreamReg, chunk: Buffer | string): boolean {
    if (reg.released || reg.stream.destroyed) return false;
    const w = reg.stream as Writable;
    const fd = typeof chunk === 'string' || w.writableLength !== 0 || w.writableEnded ? -1 : fdOf(w);
    if (fd < 0) return w.write(chunk);
    let written: number;
    try {
      written = writeSync(fd, chunk as Buffer);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        const fail = this.tasks.get(reg.taskId)?.streams.get(reg.name)?.fail;
        if (fail) queueMicrotask(() => fail(err as Error));
        else w.destroy(err as Error);
        return false;
      }
      written = 0;
    }
    if (written === chunk.length) return true;
    return w.write(written === 0 ? chunk : (chunk as Buffer).subarray(written));
  }

  /** Ends the writable side (stdin) without releasing the handle's reading side. */
  endWritable(reg: StreamReg): void {
    if (!reg.released && !reg.stream.destroyed) (reg.stream as Writable).end();
  }

  /** Schedules a task timer on the shared wheel. It never runs after the task is released. */
  timer(taskId: string, delayMs: number, cb: () => void): TimerId {
    const handles = this.handlesOf(taskId);
    const id = this.wheel.schedule(delayMs, () => {
      if (!handles.timers.delete(id)) return;
      cb();
    });
    handles.timers.add(id);
    return id;
  }

  cancelTimer(taskId: string, id: TimerId | undefined): void {
    if (id === undefined) return;
    const handles = this.tasks.get(taskId);
    if (handles?.timers.delete(id)) this.wheel.cancel(id);
  }

  /** Open (registered, unreleased) streams of a task, by name. */
  openStreams(taskId: string): string[] {
    const handles = this.tasks.get(taskId);
    if (!handles) return [];
    return [...handles.streams.values()].filter((r) => !r.released).map((r) => r.name);
  }

  openHandles(taskId: string): number {
    const handles = this.tasks.get(taskId);
    if (!handles) return 0;
    return this.openStreams(taskId).length + handles.timers.size;
  }

  /** Unregister, then close, one stream. Returns true when this call released it. */
  release(reg: StreamReg): boolean {
    if (reg.released) return false;
    reg.released = true;
    const full = this.tasks.get(reg.taskId)?.streams.get(reg.name);
    if (full) {
      for (const [event, fn] of full.listeners) reg.stream.removeListener(event, fn);
      full.listeners.length = 0;
    }
    if (hasDataSink(reg.stream)) reg.stream[DATA_SINK] = undefined;
    const s = reg.stream as Readable;
    if (typeof s.pause === 'function' && 'readable' in s) s.pause();
    const sink = (): void => {
      reg.stream.removeListener('error', noop);
    };
    if (!reg.stream.destroyed) {
      reg.stream.once('close', sink);
      reg.stream.destroy();
    } else if ((reg.stream as unknown as { closed?: boolean }).closed === false) {
      reg.stream.once('close', sink);
    } else {
      sink();
    }
    return true;
  }

  /** Releases every stream and timer of a task. Returns the names of streams that were still open. */
  releaseTask(taskId: string): string[] {
    const handles = this.tasks.get(taskId);
    if (!handles) return [];
    this.tasks.delete(taskId);
    const forced: string[] = [];
    for (const reg of handles.streams.values()) if (this.release(reg) && !reg.ended) forced.push(reg.name);
    for (const id of handles.timers) this.wheel.cancel(id);
    handles.timers.clear();
    return forced;
  }

  /** Tasks that still hold handles. */
  get taskCount(): number {
    return this.tasks.size;
  }

  private handlesOf(taskId: string): TaskHandles {
    let h = this.tasks.get(taskId);
    if (!h) {
      h = { streams: new Map(), timers: new Set() };
      this.tasks.set(taskId, h);
    }
    return h;
  }
}

function noop(): void {}

/**
 * The descriptor under a stream created by child_process (a libuv pipe handle), or -1 when it
 * has none to write to directly (no handle yet, closed, or not a libuv stream).
 */
function fdOf(stream: Writable): number {
  const fd = (stream as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}
