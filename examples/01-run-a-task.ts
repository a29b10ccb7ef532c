// Run one command under warden, stream its output, and read the result.
// Run: npm run build && node dist/examples/01-run-a-task.js
import { Supervisor } from 'warden';

const supervisor = new Supervisor();

const task = supervisor.start({
  command: 'bash',
  args: ['-c', 'echo "hello from pid $$"; echo "a warning" >&2; exit 3'],
  timeoutMs: 10_000,
});
task.on('stdout', (chunk) => process.stdout.write(`[task stdout] ${chunk}`));
task.on('stderr', (chunk) => process.stdout.write(`[task stderr] ${chunk}`));

const result = await task.result;
console.log(`state=${result.state} reason=${result.reason} status=${result.status} survivors=${result.survivors}`);

await supervisor.close();
