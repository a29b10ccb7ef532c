import { WardenError, withoutStack } from '../errors.js';

/**
 * A task's one AbortSignal, made when first asked for: most tasks never hand their signal to
 * anything (no control plane, no handler), and making, aborting and dispatching it is measurable
 * per task.
 *
 * Invariants:
 * 1. Once `abort()` was called, every signal handed out is aborted, with the same reason (a
 *    WardenError ERR_CHANNEL_CLOSED without a stack), whether it was made before or after.
 * 2. At most one AbortController is made.
 */
export class TaskSignal {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: WardenError | undefined;

  /** `why` names the end in the reason's message (the termination reason), read at abort. */
  constructor(
    private readonly taskId: string,
    private readonly why: () => string,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason());
    }
    return this.controller.signal;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort(this.abortReason());
  }

  private abortReason(): WardenError {
    return (this.reason ??= withoutStack(() => new WardenError('ERR_CHANNEL_CLOSED', `task ${this.taskId} ended (${this.why()})`)));
  }
}
