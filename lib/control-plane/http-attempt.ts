import { ControlPlaneError } from './errors.js';

/** Bytes of an error body read to build `ControlPlaneError.body`; the rest is cancelled unread. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;

export interface AttemptRequest {
  fetch: typeof globalThis.fetch;
  /** Absolute URL. */
  url: string;
  method: string;
  /** Path shown in errors (no origin, no query string secrets: ids and keys only). */
  path: string;
  headers: Record<string, string>;
  /** Serialized JSON, or undefined for no body. */
  body: string | undefined;
  /** > 0. Covers the whole attempt: connect, headers and body. */
  requestTimeoutMs: number;
  /** Bound on a success body; more is an error, not a truncation. */
  maxResponseBytes: number;
  signal: AbortSignal | undefined;
  attempt: number;
}

export interface AttemptResponse {
  status: number;
  /** Parsed JSON, text when it is not JSON, null for an empty body. */
  body: unknown;
}

/**
 * One HTTP exchange, start to end, with its own deadline.
 *
 * Precondition: `requestTimeoutMs > 0`. On return or throw, the attempt's timer is cleared, its
 * listener on the caller's signal is removed and the response body has been read to its end or
 * cancelled: nothing of the attempt remains.
 *
 * The caller's signal and the deadline are joined by hand rather than with `AbortSignal.any`: on
 * Node 20 a signal made by `AbortSignal.any` stays referenced by a long-lived parent (the task's
 * signal) while it has listeners, so one per heartbeat would grow memory for the task's whole life,
 * and `AbortSignal.timeout` cannot be cleared when the call ends early.
 */
export async function attempt(req: AttemptRequest): Promise<AttemptResponse> {
  const fail = (kind: 'network' | 'timeout' | 'aborted', cause: unknown): ControlPlaneError =>
    new ControlPlaneError({ kind, method: req.method, path: req.path, attempts: req.attempt, requestTimeoutMs: req.requestTimeoutMs, cause });

  if (req.signal?.aborted) throw fail('aborted', req.signal.reason);

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException(`no response within ${req.requestTimeoutMs} ms`, 'TimeoutError'));
  }, req.requestTimeoutMs);
  const onCallerAbort = (): void => controller.abort(req.signal?.reason);
  req.signal?.addEventListener('abort', onCallerAbort, { once: true });

  const classify = (err: unknown): ControlPlaneError => {
    if (err instanceof ControlPlaneError) return err;
    if (req.signal?.aborted) return fail('aborted', req.signal.reason);
    if (timedOut) return fail('timeout', err);
    return fail('network', err);
  };

  try {
    let response: Response;
    try {
      response = await req.fetch(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: controller.signal,
        redirect: 'error',
      });
    } catch (err) {
      throw classify(err);
    }
    const ok = response.status >= 200 && response.status < 300;
    const limit = ok ? req.maxResponseBytes : MAX_ERROR_BODY_BYTES;
    let read: { text: string; truncated: boolean };
    try {
      read = await readBounded(response, limit);
    } catch (err) {
      throw classify(err);
    }
    if (ok && read.truncated) {
      throw new ControlPlaneError({
        kind: 'http',
        status: response.status,
        method: req.method,
        path: req.path,
        attempts: req.attempt,
        body: `response body larger than maxResponseBytes (${req.maxResponseBytes}); not read past that`,
      });
    }
    const body = parseBody(read.text, read.truncated, response.headers.get('content-type'));
    if (!ok) {
      throw new ControlPlaneError({ kind: 'http', status: response.status, method: req.method, path: req.path, attempts: req.attempt, body });
    }
    return { status: response.status, body };
  } finally {
    clearTimeout(timer);
    req.signal?.removeEventListener('abort', onCallerAbort);
  }
}

/**
 * Reads at most `limit` bytes of the body. Postcondition: the body stream is finished, cancelled
 * or errored, so the connection is either reusable or released.
 */
async function readBounded(response: Response, limit: number): Promise<{ text: string; truncated: boolean }> {
  const stream = response.body;
  if (stream === null) return { text: '', truncated: false };
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      if (size + value.byteLength > limit) {
        chunks.push(value.subarray(0, limit - size));
        size = limit;
        truncated = true;
        break;
      }
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(chunks, size));
  return { text, truncated };
}

function parseBody(text: string, truncated: boolean, contentType: string | null): unknown {
  if (text === '') return null;
  const looksJson = (contentType ?? '').includes('json') || /^\s*[[{"]/.test(text);
  if (!looksJson || truncated) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
