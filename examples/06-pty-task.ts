// Run a program in a terminal of its own (pty mode): it sees a TTY on fds 0-2, gets typed input,
// and is told when its terminal is resized. The log and comms channels stay fds 3 and 4.
// Run: npm run build && node dist/examples/06-pty-task.js
import { Supervisor } from 'warden';

const supervisor = new Supervisor();

const script = [
  'trap \'echo "resized to $(stty size)"\' WINCH',
  '[ -t 1 ] && echo "stdout is a terminal: $(tty), $(stty size) (rows cols)"',
  'printf "your name? "',
  'read -r name',
  'echo "hello, $name"',
].join('; ');

const task = supervisor.start({ command: 'bash', args: ['-c', script], pty: { cols: 100, rows: 30 }, timeoutMs: 10_000 });
let seen = '';
task.on('stdout', (chunk) => {
  process.stdout.write(`[terminal] ${JSON.stringify(chunk.toString())}\n`);
  seen += chunk.toString();
  if (seen.includes('your name?') && !seen.includes('typed')) {
    seen += 'typed';
    task.resize(120, 40); // reported by the trap once read returns
    task.write('warden\r'); // Enter, as a keyboard sends it
  }
});

const result = await task.result;
console.log(`state=${result.state} reason=${result.reason} status=${result.status} survivors=${result.survivors}`);

await supervisor.close();
