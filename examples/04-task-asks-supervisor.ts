// An executor that answers its tasks' requests: it registers a GetVariable handler, runs a Node
// task that asks for a variable over the comms channel (examples/tasks/ask-for-variable.ts), and
// prints what the task got (its stdout) and logged (its records on fd 3).
// Run: npm run build && node dist/examples/04-task-asks-supervisor.js
import { fileURLToPath } from 'node:url';
import { Supervisor, WardenError } from 'warden';

const variables: Record<string, string> = { greeting: 'hello from the executor' };

const supervisor = new Supervisor();
// Every task of this supervisor gets this handler (it replaces the default one, which asks the
// control plane). Throw a WardenError to answer with its code; the task's request rejects with it.
supervisor.handle('GetVariable', ({ key }: { key: string }) => {
  if (!(key in variables)) throw new WardenError('ERR_NOT_FOUND', `variable ${key} is not set`, { detail: { key } });
  return { key, value: variables[key] };
});

const task = supervisor.start({
  command: process.execPath,
  args: [fileURLToPath(new URL('./tasks/ask-for-variable.js', import.meta.url))],
  timeoutMs: 10_000,
});
task.on('stdout', (chunk) => process.stdout.write(`[task stdout] ${chunk}`));
task.on('log', (record) => {
  // The task's own records (fd 3); stdout lines and warden's records are in this stream too.
  if (record.logger === 'task') console.log(`[task log] ${record.level} ${record.event} value=${JSON.stringify(record['value'])}`);
});

const result = await task.result;
const comms = task.channel?.stats;
console.log(`requests=${comms?.requests} responses=${comms?.responses}`);
console.log(`state=${result.state} reason=${result.reason} status=${result.status} survivors=${result.survivors}`);

await supervisor.close();
