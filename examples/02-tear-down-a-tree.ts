// Start a task whose tree hides processes from a plain group kill (a setsid child and a
// double-forked daemon), then cancel it and see every member go.
// Run: npm run build && node dist/examples/02-tear-down-a-tree.js
import { Supervisor } from 'warden';

const supervisor = new Supervisor();

const task = supervisor.start({
  command: 'bash',
  args: [
    '-c',
    `sleep 300 &
     setsid sleep 300 &
     ( setsid sh -c 'sleep 300 & exit 0' & ) &
     sleep 0.3; echo ready; wait`,
  ],
  graceMs: 1000,
});

task.on('stdout', (chunk) => {
  if (chunk.toString().includes('ready')) task.cancel();
});

const result = await task.result;
console.log(`reason=${result.reason} containment=${result.containment}`);
console.log(`signalled=${result.signalled} escapees=${result.escapees} survivors=${result.survivors}`);
for (const step of result.teardown?.steps ?? []) console.log(`  ${step.step}: ${step.durationMs} ms`);

await supervisor.close();
