import { request } from 'node:http';
import { expect } from 'vitest';
import { startReferenceControlPlane, type ReferenceControlPlane, type ReferenceControlPlaneOptions } from '../../lib/control-plane/reference-server.js';

export const TOKEN = 'spec-token';

function snapshot(): string[] {
  return [...process.getActiveResourcesInfo()].sort();
}

/**
 * Runs `body` against a fresh reference control plane, closes it, and proves nothing leaked:
 * `process.getActiveResourcesInfo()` returns to what it was before the server started.
 *
 * The server's own handles are gone when `close()` resolves. The client side of a connection the
 * server ended (fetch's pooled socket) notices the FIN on a later turn of the event loop and has no
 * event we can wait on, so the check waits up to 200 loop turns (bounded, no timer) for it.
 */
export async function withControlPlane(body: (cp: ReferenceControlPlane) => Promise<void>, options: ReferenceControlPlaneOptions = {}): Promise<void> {
  const baseline = await settledBaseline();
  const cp = await startReferenceControlPlane({ token: TOKEN, ...options });
  try {
    await body(cp);
  } finally {
    await cp.close();
  }
  await expectBaseline(baseline);
}

export async function expectBaseline(baseline: string[]): Promise<void> {
  for (let turn = 0; turn < 200 && snapshot().join() !== baseline.join(); turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  expect(snapshot()).toEqual(baseline);
}

/**
 * The resources before a test acts. Vitest's runner reports a test's start through a 100 ms
 * throttle timer; nothing of this spec exists yet, so any timer now is the runner's: wait (at most
 * 500 ms) for it to fire, else it would vanish mid-test and hide a timer the test leaked.
 */
export async function settledBaseline(): Promise<string[]> {
  const deadline = Date.now() + 500;
  while (snapshot().includes('Timeout') && Date.now() < deadline) {
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
  return snapshot();
}

/** A raw call to the server with fetch, for status/body assertions the client would hide. */
export async function call(
  cp: ReferenceControlPlane, method: string, path: string,
  init: { body?: unknown; raw?: string; token?: string | null; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...init.headers };
  const token = init.token === undefined ? cp.token : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined = init.raw;
  if (init.body !== undefined) {
    payload = JSON.stringify(init.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${cp.url}${path}`, { method, headers, body: payload });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : JSON.parse(text), headers: res.headers };
}

export const START = { hostname: 'host-a', unixname: 'user', pid: 4242, start_date: '2025-01-01T00:00:00Z' };

export const HB = { hostname: START.hostname, pid: START.pid };
export const RUN = { state: 'running', ...START };

/** Creates task instance `id` and starts it (state running). */
export async function runningTi(cp: ReferenceControlPlane, id = 'ti-1', extra: Record<string, unknown> = {}): Promise<void> {
  expect((await call(cp, 'POST', '/admin/task-instances', { body: { id, ...extra } })).status).toBe(201);
  expect((await call(cp, 'PATCH', `/execution/task-instances/${id}/run`, { body: RUN })).status).toBe(200);
}

/** A raw request with node:http, for bodies fetch will not send (chunked, no content-length). */
export function rawRequest(cp: ReferenceControlPlane, method: string, path: string, chunks: string[]): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = request(`${cp.url}${path}`, { method, agent: false, headers: { authorization: `Bearer ${cp.token}`, 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
      res.on('error', reject);
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

/** The error a promise rejects with; throws when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
