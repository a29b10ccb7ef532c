import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { WardenError } from '../errors.js';
import { ReferenceStore, type ReferenceStoreOptions } from './reference-store.js';
import { adminRoutes, executionRoutes, matchRoute } from './reference-routes.js';
import { jsonInvalid } from './reference-validate.js';
import type { FaultMode } from './reference-faults.js';

export interface ReferenceControlPlaneOptions {
  /** TCP port; default 0 (any free port, read it from `url`). */
  port?: number;
  /** Interface to listen on; default `127.0.0.1`. */
  host?: string;
  /** Bearer token every call but `GET /execution/health` must carry. Default: a random one. */
  token?: string;
  /** Largest accepted request body, in bytes; a larger one gets 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** A store to serve (to share or pre-seed one); default a new `ReferenceStore(storeOptions)`. */
  store?: ReferenceStore;
  storeOptions?: ReferenceStoreOptions;
}

export interface ReferenceControlPlane {
  /** `http://host:port`: the base URL to give `ControlPlaneClient` (`/execution/...` lives under it). */
  url: string;
  token: string;
  store: ReferenceStore;
  /**
   * Stops listening, ends every connection (`hang` and `hold` requests and idle keep-alive sockets
   * included; a held call is dropped unserved) and resolves once the server is closed. Idempotent.
   */
  close(): Promise<void>;
}

const BODY_METHODS = new Set(['PUT', 'PATCH', 'POST']);

/**
 * Starts the reference control plane: a real `node:http` server with Airflow 3's Execution API
 * semantics over an in-memory store, an admin API, and fault injection. See docs/control-plane.md.
 *
 * Invariants:
 * - Every answer is JSON (or 204 with no body); a bad request gets a 4xx, never a crash: an
 *   exception in a handler becomes `500 {detail}` and the server keeps serving.
 * - A request body is never buffered past `maxBodyBytes`.
 * - After `close()` resolves the server holds no socket, no held request and no timer.
 */
export function startReferenceControlPlane(options: ReferenceControlPlaneOptions = {}): Promise<ReferenceControlPlane> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) throw new WardenError('ERR_INVALID_OPTION', `port must be an integer in 0..65535, got ${String(port)}.`);
  const token = options.token ?? randomBytes(24).toString('base64url');
  if (typeof token !== 'string' || token === '') throw new WardenError('ERR_INVALID_OPTION', 'token must be a non-empty string.');
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) throw new WardenError('ERR_INVALID_OPTION', `maxBodyBytes must be an integer >= 1, got ${String(maxBodyBytes)}.`);
  const store = options.store ?? new ReferenceStore(options.storeOptions);
  return serve(host, port, token, maxBodyBytes, store);
}

/** Precondition: arguments validated by startReferenceControlPlane. */
async function serve(host: string, port: number, token: string, maxBodyBytes: number, store: ReferenceStore): Promise<ReferenceControlPlane> {
  const expected = digest(`Bearer ${token}`);
  // Resolved when close() starts, so calls held by a `hold` fault stop waiting and are dropped.
  let stopping = false;
  let stopHolding!: () => void;
  const stopped = new Promise<void>((resolve) => (stopHolding = resolve));

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // Last resort: the handler itself failed. Answer if still possible; never let it escape.
      if (!res.headersSent && !res.destroyed) send(res, 500, { detail: `Internal Server Error: ${err instanceof Error ? err.message : String(err)}` });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let url: URL;
    let segments: string[];
    try {
      url = new URL(req.url ?? '/', 'http://reference.invalid');
      segments = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    } catch {
      send(res, 400, { detail: 'Malformed request path' });
      return;
    }
    const path = url.pathname;
    const area = segments[0] === 'execution' ? 'execution' : segments[0] === 'admin' ? 'admin' : undefined;
    if (area === 'execution' && method === 'GET' && path === '/execution/health') {
      send(res, 200, { status: 'healthy' });
      return;
    }
    const tiId = area === 'execution' && segments[1] === 'task-instances' && segments.length > 2 ? segments[2] : undefined;
    let heldBy: FaultMode | undefined;
    const answer = (status: number, body?: unknown, headers?: Record<string, string>): void => {
      send(res, status, body, headers);
      if (area === 'execution') store.recordCall(tiId, { at: new Date().toISOString(), method, path, status, ...(heldBy ? { fault: heldBy } : {}) });
    };
    if (area === undefined) {
      answer(404, { detail: 'Not Found' });
      return;
    }
    if (!authorized(req.headers.authorization, expected)) {
      answer(401, { detail: { reason: 'unauthorized', message: 'Missing or invalid bearer token' } }, { 'www-authenticate': 'Bearer' });
      return;
    }

    let raw: Buffer | undefined;
    if (BODY_METHODS.has(method)) {
      const read = await readBody(req, maxBodyBytes);
      if (read === 'too-large') {
        answer(413, { detail: `Request body larger than ${maxBodyBytes} bytes` }, { connection: 'close' });
        return;
      }
      if (read === 'aborted') return;
      raw = read;
    }

    const fault = area === 'execution' ? store.faults.take(method, path) : undefined;
    if (fault === 'hold') {
      // Served normally once released; dropped unserved if the server closes first.
      heldBy = fault;
      const released = store.faults.hold();
      store.emit('fault', { method, path, mode: fault });
      await Promise.race([released, stopped]);
      if (stopping) return;
    } else if (fault !== undefined) {
      applyFault(fault, req, res);
      store.recordCall(tiId, { at: new Date().toISOString(), method, path, status: fault === '500' ? 500 : null, fault });
      store.emit('fault', { method, path, mode: fault });
      return;
    }

    let body: unknown;
    if (raw !== undefined && raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8')) as unknown;
      } catch (err) {
        answer(422, { detail: jsonInvalid(err) });
        return;
      }
    }

    const found = matchRoute(area === 'execution' ? executionRoutes : adminRoutes, method, segments.slice(1));
    if (!found.route) {
      answer(found.methodMismatch ? 405 : 404, { detail: found.methodMismatch ? 'Method Not Allowed' : 'Not Found' });
      return;
    }
    try {
      const result = found.route.handle({ params: found.params, query: url.searchParams, body, store });
      answer(result.status, result.body);
    } catch (err) {
      if (err instanceof WardenError) answer(400, { detail: err.message });
      else answer(500, { detail: `Internal Server Error: ${err instanceof Error ? err.message : String(err)}` });
    }
  }

  // Tracked so close() can wait for every socket's 'close' (its handle released), not only for the
  // listening handle: a test that checks process.getActiveResourcesInfo() right after close() sees none.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new WardenError('ERR_INVALID_OPTION', `Could not listen on ${host}:${port}: ${err.message}. Pick another port or host.`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // After listen, errors (e.g. EMFILE on accept) must not crash the embedding process.
  server.on('error', () => undefined);

  const address = server.address();
  const boundPort = typeof address === 'object' && address !== null ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopping = true;
      stopHolding();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const socketsClosed = [...sockets].map((socket) => new Promise<void>((resolve) => {
        if (socket.closed) resolve();
        else socket.once('close', () => resolve());
      }));
      // Ends held (`hang`) requests, in-flight ones and idle keep-alive sockets alike.
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await Promise.all([closed, ...socketsClosed]);
      // 'close' is emitted when the listening handle's close is requested; the handle is released in
      // the loop's close phase, which follows this turn's check phase: the second immediate runs
      // after it, so nothing of the server shows in process.getActiveResourcesInfo() any more.
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
    })();
    return closing;
  };

  return { url, token, store, close };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function authorized(header: string | undefined, expected: Buffer): boolean {
  return typeof header === 'string' && timingSafeEqual(digest(header), expected);
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined || status === 204) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function applyFault(mode: FaultMode, req: IncomingMessage, res: ServerResponse): void {
  if (mode === '500') send(res, 500, { detail: 'Injected fault: internal server error' });
  else if (mode === 'close') req.socket.destroy();
  // 'hang': never answer. The socket is ended by the client or by close() (closeAllConnections).
}

/**
 * Reads the body up to `limit` bytes. Precondition: nothing has read from `req` yet. On
 * `too-large` the rest is discarded as it arrives, never buffered.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large' | 'aborted'> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.resolve('too-large');
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onClose = (): void => {
      cleanup();
      resolve('aborted');
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
  });
}
