import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WardenError } from '../../lib/errors.js';
import { HandlerRegistry } from '../../lib/comms/handlers.js';
import type { DefaultRequests } from '../../lib/comms/protocol.js';
import { attachChannel, expectNoLeaks, REPO, resources } from '../fixtures/comms/harness.js';

/** Runs examples/python-task.py (stdlib msgpack, raw fds) against a real channel. */
async function runPythonTask(variables: Record<string, string>) {
  const child = spawn('python3', [join(REPO, 'examples/python-task.py')], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'], WARDEN_COMMS_FD: '4', WARDEN_LOG_FD: '3' },
  });
  const text = { stdout: '', stderr: '', log: '' };
  child.stdout!.on('data', (c: Buffer) => { text.stdout += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { text.stderr += c.toString(); });
  (child.stdio[3] as Socket).on('data', (c: Buffer) => { text.log += c.toString(); });
  for (const stream of child.stdio) stream?.on('error', () => {});
  const handlers = new HandlerRegistry<DefaultRequests>().handle('GetVariable', ({ key }) => {
    if (!(key in variables)) throw new WardenError('ERR_NOT_FOUND', `variable ${key} is not set`, { detail: { key } });
    return { key, value: variables[key] };
  });
  const attached = attachChannel(child.stdio[4] as Socket, { taskId: 't-py', handlers });
  attached.channel.sendStartup({ taskId: 't-py', attempt: 1 });
  const code = await new Promise<number | null>((done) => child.once('close', (c) => done(c)));
  await attached.socketClosed;
  return { code, ...text, channel: attached.channel };
}

describe('examples/python-task.py', () => {
  let baseline: string[];
  beforeEach(() => { baseline = resources(); });
  afterEach(async () => { await expectNoLeaks(baseline); });

  it('reads the startup frame, gets a variable, prints it and logs one JSON record', async () => {
    const run = await runPythonTask({ greeting: 'hello from warden, ünïcode and all' });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('hello from warden, ünïcode and all\n');
    const lines = run.log.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', logger: 'task', event: 'greeted', task: 't-py', value: 'hello from warden, ünïcode and all' });
    expect(run.channel.stats).toMatchObject({ requests: 1, responses: 1, errors: {} });
    expect(run.channel.endReason).toBe('eof');
  });

  it('decodes an error response (ERR_NOT_FOUND) and fails with its code', async () => {
    const run = await runPythonTask({});
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('GetVariable failed: ERR_NOT_FOUND: variable greeting is not set\n');
    expect(run.channel.stats.errors).toEqual({ ERR_NOT_FOUND: 1 });
  });
});
