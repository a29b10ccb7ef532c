#!/usr/bin/env node
import { WardenError } from '../errors.js';
import { UsageError } from './args.js';
import { RUN_USAGE, runCommand } from './run-command.js';

const USAGE = `warden: supervise task process trees

${RUN_USAGE}
warden control-plane [--port N]   run the reference control plane, print its URL
warden logs PATH [--follow]       print a JSON-lines task log for a person
warden demo                       tear down a tree with escaped daemons and show what happened`;

/** `--help` / `-h` among a command's own options (before `--`). */
function asksForHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && cmd !== 'help' && asksForHelp(rest)) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  switch (cmd) {
    case 'run':
      return runCommand(rest);
    case 'control-plane': {
      const { runControlPlaneCommand } = await import('./control-plane-command.js');
      return runControlPlaneCommand(rest);
    }
    case 'logs': {
      const { runLogsCommand } = await import('./logs-command.js');
      return runLogsCommand(rest, { stdout: process.stdout, stderr: process.stderr });
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(rest);
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      throw new UsageError(cmd === undefined ? 'a command is needed.' : `unknown command '${cmd}'.`);
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`warden: ${err.message}\n${err.message.includes('\n') ? '' : `\n${USAGE}\n`}`);
      process.exitCode = 2;
    } else if (err instanceof WardenError && err.code === 'ERR_INVALID_OPTION') {
      process.stderr.write(`warden: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`warden: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
