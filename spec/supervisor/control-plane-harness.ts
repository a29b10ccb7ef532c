/**
 * A real reference control plane on 127.0.0.1:0 and a real Supervisor pointed at it, for the
 * specs of a task's life against the control plane. Nothing is mocked: calls go over HTTP, the
 * task is a real process tree, and the server's store is only read (and its admin API used) to
 * force what a scheduler or a user would.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { CallRecord, ReferenceStore } from '../../lib/control-plane/reference-store.js';
import { startReferenceControlPlane, type ReferenceControlPlane } from '../../lib/control-plane/reference-server.js';
import { Supervisor, type ControlPlaneOptions } from '../../lib/supervisor/supervisor.js';
import type { Task } from '../../lib/supervisor/task.js';
import type { TaskResult, TaskSpec } from '../../lib/supervisor/types.js';
import { fixture } from '../helpers/paths.js';

export const CP_TASK = fixture('control-plane/cp-task.mjs');

/** Short intervals so each spec takes well under a second of heartbeats. */
export const FAST: Omit<ControlPlaneOptions, 'url' | 'token'> = {
  heartbeatIntervalMs: 100,
  maxFailedHeartbeats: 3,
  requestTimeoutMs: 2000,
  startRetries: 2,
  minRetryMs: 20,
  overtimeMs: 2000,
};

export type CallEvent = CallRecord & { tiId: string | undefined; t: number };

export interface Rig {
  cp: ReferenceControlPlane;
  store: ReferenceStore;
  sup: Supervisor;
  token: string;
  /** Every Execution API call the server answered (or faulted), in order, with `performance.now()`. */
  calls: CallEvent[];
  /** Calls on one task instance. */
  callsOf(tiId: string): CallEvent[];
  /** Resolves with the first call from now on that matches. */
  nextCall(match: (c: CallEvent) => boolean): Promise<CallEvent>;
  /** Closes the server (its port then refuses connections). */
  stopServer(): Promise<void>;
  /** Starts it again on the same port with the same store and token. */
  restartServer(): Promise<void>;
  /** An admin API call over HTTP, as a scheduler or a user would make it. */
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * Runs `body` with a fresh server and supervisor; closes both at the end, so no socket of either
 * outlives the test (the leak guard checks handles right after).
 */
export async function withRig(options: Partial<ControlPlaneOptions>, body: (rig: Rig) => Promise<void>): Promise<void> {
  const token = `cp-secret-${randomBytes(12).toString('hex')}`;
  let cp = await startReferenceControlPlane({ token });
  const store = cp.store;
  const port = Number(new URL(cp.url).port);
  const calls: CallEvent[] = [];
  const onCall = (c: CallRecord & { tiId: string | undefined }): void => {
    calls.push({ ...c, t: performance.now() });
  };
  store.on('call', onCall);
  const sup = new Supervisor({ controlPlane: { url: cp.url, token, ...FAST, ...options } });
  let serverUp = true;
  const rig: Rig = {
    get cp() {
      return cp;
    },
    store,
    sup,
    token,
    calls,
    callsOf: (tiId) => calls.filter((c) => c.tiId === tiId),
    nextCall: (match) => new Promise((resolve) => {
      const on = (c: CallRecord & { tiId: string | undefined }): void => {
        const event = { ...c, t: performance.now() };
        if (!match(event)) return;
        store.off('call', on);
        resolve(event);
      };
      store.on('call', on);
    }),
    stopServer: async () => {
      serverUp = false;
      await cp.close();
    },
    restartServer: async () => {
      cp = await startReferenceControlPlane({ token, port, store });
      serverUp = true;
    },
    admin: async (method, path, payload) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (payload !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${cp.url}/admin/${path}`, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
      const text = await res.text();
      return { status: res.status, body: text === '' ? null : JSON.parse(text) };
    },
  };
  try {
    await body(rig);
  } finally {
    await sup.close();
    store.off('call', onCall);
    if (serverUp) await cp.close();
  }
}

/** Creates a queued task instance and starts a task as it. */
export function startTi(
  rig: Rig,
  spec: Omit<TaskSpec, 'ti'>,
  ti: { id?: string; state?: 'queued' | 'success'; create?: boolean } = {},
): { task: Task; tiId: string; out: () => string; err: () => string } {
  const id = ti.id ?? `ti-${randomBytes(4).toString('hex')}`;
  if (ti.create !== false) rig.store.createTaskInstance({ id, dag_id: 'dag', run_id: 'run', task_id: 'step', state: ti.state ?? 'queued' });
  const task = rig.sup.start({ ...spec, ti: { id, dagId: 'dag', runId: 'run', taskId: 'step' } });
  let out = '';
  let err = '';
  task.on('stdout', (b) => (out += b.toString()));
  task.on('stderr', (b) => (err += b.toString()));
  return { task, tiId: id, out: () => out, err: () => err };
}

/** A Node task using warden/child (spec/fixtures/control-plane/cp-task.mjs). */
export function cpTask(scenario: string, env: NodeJS.ProcessEnv, args: string[] = [], extra: Partial<TaskSpec> = {}): Omit<TaskSpec, 'ti'> {
  return { command: process.execPath, args: [CP_TASK, scenario, ...args], env, graceMs: 2000, ...extra };
}

/** Resolves when a warden record about the task matches. */
export function recordAt(task: Task, pattern: RegExp): Promise<number> {
  return new Promise((resolve) => {
    const on = (r: { event: string }): void => {
      if (!pattern.test(r.event)) return;
      task.off('record', on);
      resolve(performance.now());
    };
    task.on('record', on);
  });
}

/** JSON lines the task printed. */
export function lines(text: string): any[] { // eslint-disable-line @typescript-eslint/no-explicit-any
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

/**
 * Proves the supervisor still serves: a new task instance starts, reports success over comms,
 * exits 0, and the server holds its final state.
 */
export async function servesAnother(rig: Rig, env: NodeJS.ProcessEnv): Promise<TaskResult> {
  const { task, tiId } = startTi(rig, cpTask('succeed', env));
  const r = await task.result;
  expect(r).toMatchObject({ state: 'success', reason: 'exited', status: 0, survivors: 0 });
  expect(r.controlPlane).toMatchObject({ startAccepted: true, reportedState: 'success', finalStateReported: true });
  expect(rig.store.getTaskInstance(tiId)).toMatchObject({ state: 'success', state_reports: 1 });
  return r;
}

/** The PATCH .../state calls among `calls`. */
export const stateCalls = (calls: CallEvent[]): CallEvent[] => calls.filter((c) => c.method === 'PATCH' && c.path.endsWith('/state'));
export const heartbeatCalls = (calls: CallEvent[]): CallEvent[] => calls.filter((c) => c.method === 'PUT' && c.path.endsWith('/heartbeat'));
