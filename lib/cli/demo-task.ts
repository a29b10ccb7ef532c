/**
 * The task of `warden demo`: asks its supervisor for a variable over the comms channel, logs it
 * on the structured channel, then builds a process tree that hides from a plain group kill and
 * waits. It never holds the control-plane token: warden answers its requests.
 */
import { spawn } from 'node:child_process';
import { connect } from '../child/index.js';

/** Plain children, a subshell that ignores SIGTERM, a setsid child, a double-forked daemon. */
export const DEMO_TREE = `
sleep 300 & sleep 300 &
( trap '' TERM; sleep 300 & wait ) &
setsid sleep 300 &
( setsid sh -c 'sleep 300 & exit 0' & ) &
sleep 0.2
echo ready
wait
`;

async function main(): Promise<void> {
  const channel = await connect();
  const variable = (await channel.request('GetVariable', { key: 'greeting' })) as { value: string };
  channel.log.info('fetched a variable through warden', { key: 'greeting', value: variable.value });
  const tree = spawn('bash', ['-c', DEMO_TREE], { stdio: ['ignore', 'inherit', 'inherit'] });
  tree.on('exit', (code) => {
    process.exitCode = code ?? 1;
  });
}

if (process.env.WARDEN_COMMS_FD) void main();
