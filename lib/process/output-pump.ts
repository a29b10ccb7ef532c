import type { Writable } from 'node:stream';
import type { Reactor, StreamReg } from '../reactor/reactor.js';

/**
 * Moves a child's output into a sink with backpressure: when the sink's buffer is full the pipe
 * is paused (the child blocks on write, memory stays bounded) until the sink drains.
 *
 * Invariants:
 * 1. At most one `drain` listener of ours is on the sink, and none after `detach()`.
 * 2. A released pipe is never resumed (the reactor ignores it).
 */
export class OutputPump {
  private waiting = false;
  private reg: StreamReg | undefined;

  constructor(
    private readonly reactor: Reactor,
    private readonly sink: Writable,
  ) {}

  attach(reg: StreamReg): void {
    this.reg = reg;
  }

  push(chunk: Buffer): void {
    if (this.sink.destroyed || this.sink.writableEnded) return;
    if (!this.sink.write(chunk) && !this.waiting && this.reg) {
      this.waiting = true;
      this.reactor.pause(this.reg, 'sink');
      this.sink.once('drain', this.onDrain);
    }
  }

  detach(): void {
    if (this.waiting) this.sink.removeListener('drain', this.onDrain);
    this.waiting = false;
  }

  private onDrain = (): void => {
    this.waiting = false;
    if (this.reg) this.reactor.resume(this.reg, 'sink');
  };
}
