/**
 * The one error class warden throws or reports. `code` is stable and documented in the README;
 * `message` says what failed, why, and what to do.
 */
export type WardenErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_SPAWN_ENOENT'
  | 'ERR_SPAWN_EACCES'
  | 'ERR_SPAWN_FAILED'
  | 'ERR_SELF_SIGNAL'
  | 'ERR_SIGNAL_EPERM'
  | 'ERR_SUPERVISOR_CLOSED'
  | 'ERR_EXIT_UNOBSERVED'
  | 'ERR_UNSUPPORTED_PLATFORM'
  | 'ERR_UNSUPPORTED'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_BAD_REQUEST'
  | 'ERR_UNKNOWN_REQUEST'
  | 'ERR_HANDLER'
  | 'ERR_HANDLER_TIMEOUT'
  | 'ERR_BUSY'
  | 'ERR_NOT_FOUND'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_NOT_UNDER_WARDEN'
  | 'ERR_REQUEST_TIMEOUT'
  | 'ERR_BAD_RESPONSE'
  | 'ERR_CONTROL_PLANE'
  | 'ERR_LOG_FILE'
  | (string & {});

export class WardenError extends Error {
  readonly code: WardenErrorCode;
  readonly detail: unknown;

  constructor(code: WardenErrorCode, message: string, options: { cause?: unknown; detail?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WardenError';
    this.code = code;
    this.detail = options.detail;
  }

  toJSON(): { code: string; message: string; detail?: unknown } {
    return this.detail === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Node's system errors carry `code`; everything else is treated as having none. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/**
 * Builds an error without capturing a stack trace: for errors made on every task as a matter of
 * course (an abort reason at settle), where the stack says nothing and capturing it is the cost.
 */
export function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
