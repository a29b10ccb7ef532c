import { WardenError } from '../errors.js';

/**
 * Why a control-plane call failed:
 * - `http`: the server answered with a status that is not a success (`status` is set);
 * - `network`: no answer at all (refused, reset, DNS, TLS; `status` is null);
 * - `timeout`: no complete answer within `requestTimeoutMs` (`status` is null);
 * - `aborted`: the caller's AbortSignal ended the call (`status` is null).
 */
export type ControlPlaneErrorKind = 'http' | 'network' | 'timeout' | 'aborted';

export interface ControlPlaneErrorInit {
  kind: ControlPlaneErrorKind;
  method: string;
  /** Path under the base URL, e.g. `/execution/task-instances/abc/heartbeat`. */
  path: string;
  status?: number | null;
  body?: unknown;
  /** Attempts made, the failing one included. */
  attempts?: number;
  /** Only used to write the message of a `timeout`. */
  requestTimeoutMs?: number;
  cause?: unknown;
}

/**
 * A failed control-plane call. Code `ERR_CONTROL_PLANE`; `status`, `body`, `kind`, `method`, `path`
 * and `attempts` say what failed and how. `detail` (and so `toJSON()`) carries the same fields.
 *
 * Invariants:
 * - `status` is a number exactly when `kind === 'http'`.
 * - `body` is the parsed JSON error body when it parsed, else its text, else null; never more than
 *   64 KiB of the response was read to build it.
 * - `retryable` is true exactly for `network`, `timeout` and `http` with status >= 500.
 */
export class ControlPlaneError extends WardenError {
  readonly kind: ControlPlaneErrorKind;
  readonly status: number | null;
  readonly body: unknown;
  readonly method: string;
  readonly path: string;
  readonly attempts: number;

  constructor(init: ControlPlaneErrorInit) {
    const status = init.kind === 'http' ? (init.status ?? null) : null;
    const body = init.body ?? null;
    const attempts = init.attempts ?? 1;
    super('ERR_CONTROL_PLANE', describe(init, status, body, attempts), {
      cause: init.cause,
      detail: { kind: init.kind, status, method: init.method, path: init.path, attempts, body },
    });
    this.name = 'ControlPlaneError';
    this.kind = init.kind;
    this.status = status;
    this.body = body;
    this.method = init.method;
    this.path = init.path;
    this.attempts = attempts;
  }

  /** Network errors, timeouts and 5xx may succeed on a later attempt; 4xx and aborts never do. */
  get retryable(): boolean {
    return this.kind === 'network' || this.kind === 'timeout' || (this.status !== null && this.status >= 500);
  }

  /**
   * The server's way of saying "this task instance must stop now" on a heartbeat: 404 (unknown),
   * 409 (not running, or running elsewhere), 410 (archived: cleared while running).
   */
  get serverSaysStop(): boolean {
    return this.status === 404 || this.status === 409 || this.status === 410;
  }
}

/** Airflow error bodies are `{detail: string | {reason, message, ...} | [{msg, loc}, ...]}`. */
export function summarizeErrorBody(body: unknown): string {
  if (body === null || body === undefined || body === '') return '';
  const detail = typeof body === 'object' && !Array.isArray(body) && 'detail' in body ? (body as { detail: unknown }).detail : body;
  let text: string;
  if (typeof detail === 'string') {
    text = detail;
  } else if (Array.isArray(detail)) {
    text = detail
      .slice(0, 3)
      .map((item) => {
        if (item && typeof item === 'object') {
          const { msg, loc } = item as { msg?: unknown; loc?: unknown };
          return `${Array.isArray(loc) ? loc.join('.') + ': ' : ''}${String(msg ?? JSON.stringify(item))}`;
        }
        return String(item);
      })
      .join('; ');
  } else if (detail && typeof detail === 'object') {
    const { reason, message } = detail as { reason?: unknown; message?: unknown };
    const rest = Object.entries(detail).filter(([k]) => k !== 'reason' && k !== 'message');
    text = [reason, message].filter((v) => v !== undefined).map(String).join(': ');
    if (rest.length > 0) text += ` (${rest.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')})`;
    if (text === '') text = JSON.stringify(detail);
  } else {
    text = String(detail);
  }
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

function advice(status: number): string {
  if (status === 401 || status === 403) return 'check the token given to warden (WARDEN_TOKEN or --token-file)';
  if (status === 404) return 'the task instance or resource does not exist on the server; do not retry';
  if (status === 409) return 'the task instance is not in a state that allows this call (for a heartbeat: it was moved out of running); stop the task';
  if (status === 410) return 'the task instance was archived (cleared while running); stop the task';
  if (status === 413) return 'the request body is too large for the server; send less';
  if (status === 422 || status === 400) return 'the server rejected the request body; this is a warden bug or an API version mismatch, report it';
  if (status >= 500) return 'the server failed; check the control plane and its logs';
  return 'see the response body';
}

function describe(init: ControlPlaneErrorInit, status: number | null, body: unknown, attempts: number): string {
  const call = `Control plane call ${init.method} ${init.path}`;
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  switch (init.kind) {
    case 'http': {
      const summary = summarizeErrorBody(body);
      return `${call} failed with HTTP ${status}${summary ? ` (${summary})` : ''}${tries}: ${advice(status ?? 0)}.`;
    }
    case 'network': {
      const cause = init.cause as { cause?: { code?: unknown; message?: unknown }; message?: unknown } | undefined;
      const why = cause?.cause?.code ?? cause?.cause?.message ?? cause?.message ?? 'unknown network error';
      return `${call} got no answer${tries} (${String(why)}): check that the control plane is running and reachable at the configured URL.`;
    }
    case 'timeout':
      return `${call} got no complete answer within ${init.requestTimeoutMs ?? '?'} ms${tries}: the server is slow or hung; check it, or raise requestTimeoutMs.`;
    case 'aborted':
      return `${call} was cancelled by the caller's signal (the task is ending); nothing to do.`;
  }
}
