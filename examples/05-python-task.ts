// A task in another language: examples/python-task.py speaks the comms protocol with the Python
// standard library only (docs/protocol.md). The executor answers its GetVariable request.
// Run: npm run build && node dist/examples/05-python-task.js   (needs python3 on PATH)
import { fileURLToPath } from 'node:url';
import { Supervisor, WardenError } from 'warden';

const variables: Record<string, string> = { greeting: 'hello, Python, from the executor' };

const supervisor = new Supervisor();
supervisor.handle('GetVariable', ({ key }: { key: string }) => {
  if (!(key in variables)) throw new WardenError('ERR_NOT_FOUND', `variable ${key} is not set`, { detail: { key } });
  return { key, value: variables[key] };
});

const task = supervisor.start({
  command: 'python3',
  args: [fileURLToPath(new URL('../../examples/python-task.py', import.meta.url))],
  timeoutMs: 10_000,
});
task.on('stdout', (chunk) => process.stdout.write(`[task stdout] ${chunk}`));
task.on('stderr', (chunk) => process.stdout.write(`[task stderr] ${chunk}`));
task.on('log', (record) => {
  if (record.logger === 'task') console.log(`[task log] ${record.level} ${record.event} value=${JSON.stringify(record['value'])}`);
});

const result = await task.result;
console.log(`state=${result.state} reason=${result.reason} status=${result.status} survivors=${result.survivors}`);

await supervisor.close();
