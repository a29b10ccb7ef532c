import pRetry from 'p-retry';
import { WardenError } from '../errors.js';
import { invalid, number, checkProcess, integer, segment, xcomPath, isoDate } from './client-args.js';
import { ControlPlaneError } from './errors.js';
import { attempt, type AttemptResponse } from './http-attempt.js';
import type {
  ConnectionResponse, FinishBody, HeartbeatBody, PutVariableBody, RunContext, StartTaskBody,
  VariableResponse, XComResponse,
} from './types.js';

export interface ControlPlaneClientOptions {
  /** Base URL under which `/execution/...` lives, e.g. `http://127.0.0.1:8080`. http or https. */
  baseUrl: string;
  /** Bearer token sent with every call. Never logged, never put in an error. */
  token: string;
  /**
   * Deadline of one attempt (connect, headers and body), in ms. Default 5000. Must be > 0. A retried
   * call gets a fresh deadline per attempt; `maxRetryTimeMs` bounds the whole.
   */
  requestTimeoutMs?: number;
  /**
   * Retries after the first attempt of every call except `heartbeat`, on network errors, timeouts
   * and 5xx only (4xx never). Default 5. 0 means one attempt.
   */
  retries?: number;
  /**
   * Backoff before the first retry, in ms. Default 500. Each next wait doubles, capped at
   * `maxRetryMs`, and is multiplied by a random factor in [1, 2) (jitter), so the default waits are
   * 0.5-1, 1-2, 2-4, 4-8 and 8-16 s: about 15-30 s of waiting in all, like Airflow's client.
   */
  minRetryMs?: number;
  /** Longest single backoff wait, in ms. Default 16000. Must be >= `minRetryMs`. */
  maxRetryMs?: number;
  /**
   * Bound on a retried call from its first attempt, in ms: no retry starts after it, and a backoff
   * wait is cut to fit it. Default 30000. 0 means no bound other than `retries`.
   */
  maxRetryTimeMs?: number;
  /** Largest success body read (run context, variable, XCom), in bytes. Default 16 MiB. */
  maxResponseBytes?: number;
  /** The fetch to use. Default: Node's global `fetch`. */
  fetch?: typeof globalThis.fetch;
  /**
   * Called before each retry wait, e.g. to log it. Must not throw; an exception is ignored.
   */
  onRetry?: (info: { error: ControlPlaneError; attempt: number; retriesLeft: number }) => void;
}

/** Options of one call. */
export interface CallOptions {
  signal?: AbortSignal;
}

interface Call {
  method: 'GET' | 'PUT' | 'PATCH' | 'POST';
  /** Path under `/execution/`, segments already encoded. */
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  retry: boolean;
  signal: AbortSignal | undefined;
  /** Set for GETs whose 404 means "no such key": turned into `ERR_NOT_FOUND`. */
  notFound?: string;
}

/**
 * HTTP client of the control plane's Execution API (paths and bodies as Airflow 3's).
 *
 * Invariants:
 * - Every call sends `Authorization: Bearer <token>` and is bounded: `requestTimeoutMs` per attempt,
 *   `retries` and `maxRetryTimeMs` per call; `heartbeat` makes exactly one attempt.
 * - Only network errors, timeouts and 5xx are retried; a 4xx fails at once, typed.
 * - The caller's signal ends a call at once, in an attempt or in a backoff wait, with kind `aborted`.
 * - A settled call leaves nothing behind: no timer, no listener, no unread body.
 * - Failures reject with `ControlPlaneError` (`ERR_CONTROL_PLANE`), except a 404 on a variable,
 *   connection or XCom read, which rejects with `WardenError` `ERR_NOT_FOUND` (cause: the HTTP error).
 */
export class ControlPlaneClient {
  readonly baseUrl: string;
  readonly requestTimeoutMs: number;
  readonly retries: number;
  readonly #token: string;
  readonly #minRetryMs: number;
  readonly #maxRetryMs: number;
  readonly #maxRetryTimeMs: number;
  readonly #maxResponseBytes: number;
  readonly #fetch: typeof globalThis.fetch;
  readonly #onRetry: ControlPlaneClientOptions['onRetry'];

  constructor(options: ControlPlaneClientOptions) {
    const opts = options ?? ({} as ControlPlaneClientOptions);
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw invalid(`baseUrl must be an absolute http(s) URL, got ${JSON.stringify(opts.baseUrl)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`baseUrl must use http or https, got ${url.protocol}`);
    if (typeof opts.token !== 'string' || opts.token === '') throw invalid('token must be a non-empty string');
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.#token = opts.token;
    this.requestTimeoutMs = number('requestTimeoutMs', opts.requestTimeoutMs, 5000, 1);
    this.retries = number('retries', opts.retries, 5, 0);
    this.#minRetryMs = number('minRetryMs', opts.minRetryMs, 500, 0);
    this.#maxRetryMs = number('maxRetryMs', opts.maxRetryMs, Math.max(16_000, this.#minRetryMs), this.#minRetryMs);
    this.#maxRetryTimeMs = number('maxRetryTimeMs', opts.maxRetryTimeMs, 30_000, 0);
    this.#maxResponseBytes = number('maxResponseBytes', opts.maxResponseBytes, 16 * 1024 * 1024, 1);
    if (opts.fetch !== undefined && typeof opts.fetch !== 'function') throw invalid('fetch must be a function');
    this.#fetch = opts.fetch ?? globalThis.fetch;
    this.#onRetry = opts.onRetry;
  }

  /** `PATCH task-instances/{id}/run` with `{state: 'running', ...body}`: 200 with the run context. Retried. */
  startTask(tiId: string, body: StartTaskBody, signal?: AbortSignal): Promise<RunContext> {
    const path = `task-instances/${segment('tiId', tiId)}/run`;
    checkProcess(body, ['hostname', 'unixname']);
    const payload = { state: 'running', hostname: body.hostname, unixname: body.unixname, pid: body.pid, start_date: isoDate(body.start_date) };
    return this.#call({ method: 'PATCH', path, body: payload, retry: true, signal }).then((r) => r.body as RunContext);
  }

  /**
   * `PUT task-instances/{id}/heartbeat` with `{hostname, pid}`: 204. One attempt, never retried here:
   * the next tick is the retry. A rejection with `serverSaysStop` (404/409/410) means stop the task.
   */
  heartbeat(tiId: string, body: HeartbeatBody, signal?: AbortSignal): Promise<void> {
    const path = `task-instances/${segment('tiId', tiId)}/heartbeat`;
    checkProcess(body, ['hostname']);
    return this.#call({ method: 'PUT', path, body: { hostname: body.hostname, pid: body.pid }, retry: false, signal }).then(() => undefined);
  }

  /**
   * `PATCH task-instances/{id}/state` with `{state, end_date, ...extra}`: 204 (200 when the server
   * already holds that state). Retried. `end_date` defaults to now, except for `deferred`.
   */
  finish(tiId: string, body: FinishBody, signal?: AbortSignal): Promise<void> {
    const path = `task-instances/${segment('tiId', tiId)}/state`;
    if (body === null || typeof body !== 'object' || typeof body.state !== 'string') throw invalid('finish body must be an object with a string state');
    const payload: Record<string, unknown> = { ...body };
    if (body.state !== 'deferred') payload.end_date = isoDate(body.end_date ?? new Date());
    else if (body.end_date !== undefined) delete payload.end_date;
    return this.#call({ method: 'PATCH', path, body: payload, retry: true, signal }).then(() => undefined);
  }

  /** `PUT task-instances/{id}/rtif` with the rendered fields map: 201. Retried. */
  setRenderedFields(tiId: string, fields: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) throw invalid('rendered fields must be an object');
    const path = `task-instances/${segment('tiId', tiId)}/rtif`;
    return this.#call({ method: 'PUT', path, body: fields, retry: true, signal }).then(() => undefined);
  }

  /**
   * `GET task-instances/{id}/rtif`: 200 with the rendered fields map. A warden extension (Airflow has
   * no read of them on the Execution API); the reference control plane serves it.
   */
  getRenderedFields(tiId: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const path = `task-instances/${segment('tiId', tiId)}/rtif`;
    return this.#call({ method: 'GET', path, retry: true, signal, notFound: `task instance ${tiId}` }).then((r) => (r.body ?? {}) as Record<string, unknown>);
  }

  /** `GET variables/{key}`: `{key, value}`. Unknown key: `ERR_NOT_FOUND`. */
  getVariable(key: string, signal?: AbortSignal): Promise<VariableResponse> {
    const path = `variables/${segment('key', key)}`;
    return this.#call({ method: 'GET', path, retry: true, signal, notFound: `variable ${JSON.stringify(key)}` }).then((r) => r.body as VariableResponse);
  }

  /** `PUT variables/{key}` with `{value, description?}`: 201. */
  putVariable(key: string, body: PutVariableBody, signal?: AbortSignal): Promise<void> {
    const path = `variables/${segment('key', key)}`;
    if (body === null || typeof body !== 'object') throw invalid('variable body must be an object {value, description?}');
    const payload: Record<string, unknown> = { value: body.value };
    if (body.description !== undefined) payload.description = body.description;
    return this.#call({ method: 'PUT', path, body: payload, retry: true, signal }).then(() => undefined);
  }

  /** `GET connections/{connId}`: the connection. Unknown id: `ERR_NOT_FOUND`. */
  getConnection(connId: string, signal?: AbortSignal): Promise<ConnectionResponse> {
    const path = `connections/${segment('connId', connId)}`;
    return this.#call({ method: 'GET', path, retry: true, signal, notFound: `connection ${JSON.stringify(connId)}` }).then((r) => r.body as ConnectionResponse);
  }

  /** `GET xcoms/{dagId}/{runId}/{taskId}/{key}?map_index=N` (default -1): `{key, value}`. Absent: `ERR_NOT_FOUND`. */
  getXCom(dagId: string, runId: string, taskId: string, key: string, mapIndex = -1, signal?: AbortSignal): Promise<XComResponse> {
    const path = xcomPath(dagId, runId, taskId, key);
    const notFound = `XCom ${JSON.stringify(key)} of ${dagId}/${runId}/${taskId}[${mapIndex}]`;
    return this.#call({ method: 'GET', path, query: { map_index: integer('mapIndex', mapIndex) }, retry: true, signal, notFound }).then((r) => r.body as XComResponse);
  }

  /**
   * `POST xcoms/{dagId}/{runId}/{taskId}/{key}?map_index=N[&mapped_length=M]` with the JSON value as
   * the body: 201. `value` must be JSON-serializable (`undefined` is sent as null).
   */
  setXCom(
    dagId: string, runId: string, taskId: string, key: string, value: unknown,
    options: { mapIndex?: number; mappedLength?: number } = {}, signal?: AbortSignal,
  ): Promise<void> {
    const path = xcomPath(dagId, runId, taskId, key);
    const query = {
      map_index: integer('mapIndex', options.mapIndex ?? -1),
      mapped_length: options.mappedLength === undefined ? undefined : integer('mappedLength', options.mappedLength),
    };
    return this.#call({ method: 'POST', path, query, body: value ?? null, retry: true, signal }).then(() => undefined);
  }

  async #call(call: Call): Promise<AttemptResponse> {
    let search = '';
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) search += `${search ? '&' : '?'}${name}=${encodeURIComponent(String(value))}`;
    }
    const path = `/execution/${call.path}`;
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}`, accept: 'application/json' };
    let body: string | undefined;
    if (call.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(call.body);
    }
    let attempts = 0;
    const once = (attemptNumber: number): Promise<AttemptResponse> => (attempts = attemptNumber, attempt({
      fetch: this.#fetch, url: `${this.baseUrl}${path}${search}`, method: call.method, path: `${path}${search}`,
      headers, body, requestTimeoutMs: this.requestTimeoutMs, maxResponseBytes: this.#maxResponseBytes,
      signal: call.signal, attempt: attemptNumber,
    }));
    try {
      if (!call.retry || this.retries === 0) return await once(1);
      return await pRetry(once, {
        retries: this.retries,
        factor: 2,
        minTimeout: this.#minRetryMs,
        maxTimeout: this.#maxRetryMs,
        randomize: true,
        maxRetryTime: this.#maxRetryTimeMs === 0 ? Number.POSITIVE_INFINITY : this.#maxRetryTimeMs,
        signal: call.signal,
        shouldRetry: ({ error, attemptNumber, retriesLeft }) => {
          if (!(error instanceof ControlPlaneError) || !error.retryable) return false;
          try {
            this.#onRetry?.({ error, attempt: attemptNumber, retriesLeft });
          } catch {
            // A logging callback must not change the call's outcome.
          }
          return true;
        },
      });
    } catch (err) {
      throw this.#finalError(err, call, path, attempts);
    }
  }

  /** `attempts`: attempts started; an abort in a backoff wait comes after the last of them. */
  #finalError(err: unknown, call: Call, path: string, attempts: number): Error {
    let error: ControlPlaneError;
    if (err instanceof ControlPlaneError) error = err;
    else if (call.signal?.aborted) error = new ControlPlaneError({ kind: 'aborted', method: call.method, path, attempts: Math.max(1, attempts), cause: call.signal.reason });
    else error = new ControlPlaneError({ kind: 'network', method: call.method, path, attempts: Math.max(1, attempts), cause: err });
    if (call.notFound !== undefined && error.status === 404) {
      return new WardenError('ERR_NOT_FOUND', `The control plane has no ${call.notFound} (HTTP 404 on ${call.method} ${path}); create it or use another key.`, {
        cause: error,
        detail: { status: 404, body: error.body },
      });
    }
    return error;
  }
}
