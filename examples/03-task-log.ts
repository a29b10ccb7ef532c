// Run a task that writes to stdout, stderr and its structured channel (fd 3) into a JSON-lines
// log file, and tail that file while the task runs, printing each record as it arrives.
// Run: npm run build && node dist/examples/03-task-log.js
import { watch } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor } from 'warden';

const dir = await mkdtemp(join(tmpdir(), 'warden-example-'));
const logFile = join(dir, 'task.jsonl');

const supervisor = new Supervisor();
const task = supervisor.start({
  command: 'bash',
  args: [
    '-c',
    `echo "starting"
     echo '{"level":"info","event":"loaded rows","rows":3}' >&3
     sleep 0.1
     echo "a warning on stderr" >&2
     echo '{"level":"warn","event":"slow step","ms":1200}' >&3
     echo "done"`,
  ],
  logFile,
  timeoutMs: 10_000,
});

// Tail the file: read from where the last read ended whenever it changes, once more at the end.
const file = await open(logFile, 'r');
const buffer = Buffer.alloc(64 * 1024);
let offset = 0;
let partial = '';
let first: number | undefined;
let reading = Promise.resolve();
const readNew = (): Promise<void> =>
  (reading = reading.then(async () => {
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      const lines = (partial + buffer.toString('utf8', 0, bytesRead)).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) print(JSON.parse(line));
    }
  }));
const watcher = watch(logFile, () => void readNew());

function print(record: { timestamp: string; level: string; logger: string; event: string; [field: string]: unknown }): void {
  const { timestamp, level, logger, event, ...fields } = record;
  if (level === 'debug') return; // warden's channel statistics; `warden logs` shows everything
  const ms = Date.parse(timestamp);
  first ??= ms;
  const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join('');
  console.log(`+${((ms - first) / 1000).toFixed(3)}s ${level.toUpperCase().padEnd(8)} ${logger} ${event}${extra}`);
}

// The result settles once the log file was flushed and closed: the last read sees every record.
const result = await task.result;
watcher.close();
await readNew();
await file.close();
await supervisor.close();
await rm(dir, { recursive: true, force: true });
console.log(`state=${result.state} status=${result.status} survivors=${result.survivors}`);
