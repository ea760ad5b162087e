#!/usr/bin/env node
/**
 * The `ferry` command: `serve` runs the server; the other commands drive a server through the SDK
 * (src/client). Exit codes and output conventions are in output.ts and the README.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { bucketCommands } from './commands/buckets.js';
import { contextCommand } from './commands/context.js';
import { cpCommand } from './commands/cp.js';
import { filterCommand } from './commands/filters.js';
import { groupCommand } from './commands/groups.js';
import { remoteCommand } from './commands/remotes.js';
import { replicationCommand } from './commands/replications.js';
import { tasksCommand } from './commands/tasks.js';
import { EXIT } from './output.js';
import { serveCommand } from './serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function parseTimeout(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a time in ms >= 0');
  return n;
}

const program = new Command();
program
  .name('ferry')
  .description('Time-series blob store speaking the ReductStore HTTP API 1.21, and its command line')
  .version(pkg.version, '-V, --version')
  .addOption(new Option('--url <url>', 'server URL').env('FERRY_URL'))
  .addOption(new Option('--token <token>', 'API token').env('FERRY_TOKEN'))
  .addOption(new Option('--context <name>', 'named server from the contexts file').env('FERRY_CONTEXT'))
  .option('--json', 'machine-readable output (errors as JSON on stderr)')
  .option('--timeout <ms>', 'time limit of each request (default 30000)', parseTimeout)
  .showHelpAfterError('(add --help for usage)')
  .exitOverride();

program.addCommand(serveCommand());
for (const c of bucketCommands()) program.addCommand(c);
program.addCommand(replicationCommand());
program.addCommand(filterCommand());
program.addCommand(groupCommand());
program.addCommand(remoteCommand());
program.addCommand(tasksCommand());
program.addCommand(cpCommand());
program.addCommand(contextCommand());

/** Usage errors exit with 2 (help and version with 0) in every subcommand. */
function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideAll(sub);
}
exitOverrideAll(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else throw e;
}
