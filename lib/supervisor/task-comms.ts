import { CommsChannel } from '../comms/channel.js';
import type { HandlerRegistry } from '../comms/handlers.js';
import type { Reactor } from '../reactor/reactor.js';
import type { ChannelHooks, TaskIO } from './task-io.js';
import type { Task } from './task.js';

/** Bounds of every task's comms channel (DESIGN 5). */
export interface CommsSettings {
  /** Largest frame either way. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Requests handled at once per task; more are answered ERR_BUSY. Default 64. */
  maxInflightRequests?: number;
  /** Time a handler gets before ERR_HANDLER_TIMEOUT. Default 30000. */
  handlerTimeoutMs?: number;
  /** Response bytes queued for a child that does not read before reading pauses. Default 8 MiB. */
  maxQueuedWriteBytes?: number;
}

/** What a handler finds in `ctx.context`. */
export interface TaskHandlerContext {
  task: Task;
  /** Registers a value to mask as `***` in the task's log. */
  maskSecret(value: string): void;
}

/**
 * Creates the task's comms channel on fd 4. The reactor keeps owning the socket: the channel
 * gets an adapter that writes, pauses and releases through the reactor.
 */
export function createTaskChannel(
  task: Task,
  reactor: Reactor,
  handlers: HandlerRegistry<any, TaskHandlerContext>, // eslint-disable-line @typescript-eslint/no-explicit-any
  settings: CommsSettings,
  io: () => TaskIO | undefined,
  onClosed: () => void,
): { channel: CommsChannel<TaskHandlerContext>; hooks: ChannelHooks['comms'] } {
  const reg = () => io()?.comms;
  const channel = new CommsChannel<TaskHandlerContext>({
    io: {
      write: (buf) => {
        const r = reg();
        return r ? reactor.write(r, buf) : false;
      },
      pauseReading: () => {
        const r = reg();
        if (r) reactor.pause(r, 'comms');
      },
      resumeReading: () => {
        const r = reg();
        if (r) reactor.resume(r, 'comms');
      },
      close: (why) => {
        const r = reg();
        // The task's own end closes the channel too: that is no news (the channel logs comms.closed).
        const normal = why === 'task-aborted';
        task.log(normal ? 'debug' : 'warning', normal ? 'comms channel closed: the task ended' : `comms channel closed: ${why}; the task goes on without comms`);
        if (r && reactor.release(r)) queueMicrotask(onClosed);
      },
    },
    taskId: task.id,
    handlers,
    // No `signal`: the task closes the channel itself when it settles (reason `task-aborted`, as
    // an abort would), so that building the task's AbortSignal stays optional.
    ...settings,
    log: (level, event, fields) => task.log(level, event, fields),
    context: { task, maskSecret: (value: string) => task.maskSecret(value) },
    // Handler deadlines are task timers on the supervisor's wheel, released with the task.
    timers: {
      set: (delayMs, cb) => reactor.timer(task.id, delayMs, cb),
      clear: (id) => reactor.cancelTimer(task.id, id as number),
    },
  });
  return {
    channel,
    hooks: {
      data: (chunk) => channel.onData(chunk),
      end: () => channel.onEnd(),
      drain: () => channel.onDrain(),
    },
  };
}
