// A task written for warden in Node: it waits for the supervisor's go (the startup frame), asks
// the supervisor for a variable over the comms channel, logs what it got, and ends: the
// `warden/child` library does not keep the process alive once this code is done.
// Started by examples/04-task-asks-supervisor.ts; alone it fails with ERR_NOT_UNDER_WARDEN.
import { connect, type DefaultRequests } from 'warden/child';

const warden = await connect<DefaultRequests>();
const { key, value } = await warden.request('GetVariable', { key: 'greeting' });
warden.log.info('got a variable', { key, value });
console.log(`task ${String(warden.startup['taskId'])} got ${key}=${JSON.stringify(value)}`);
