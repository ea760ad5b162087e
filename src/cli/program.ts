/**
 * The `ferry` command tree: global options, `serve`, and (unless only `serve` is wanted) the client
 * commands over the SDK. main.ts parses the process's arguments with it; tests walk it.
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { serveCommand } from './serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function parseTimeout(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a time in ms >= 0');
  return n;
}

/** Usage errors exit with 2 (help and version with 0) in every subcommand. */
function exitOverrideAll(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideAll(sub);
}

/**
 * Builds the command tree. With `serveOnly` the client commands are not loaded: their SDK, table and
 * progress libraries would add ~250 ms of CPU to every server start (and restart after a crash).
 */
export async function buildProgram(serveOnly: boolean): Promise<Command> {
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
    .showHelpAfterError('(add --help for usage)');

  program.addCommand(serveCommand());
  if (!serveOnly) {
    const [buckets, context, cp, filters, groups, remotes, replications, tasks] = await Promise.all([
      import('./commands/buckets.js'),
      import('./commands/context.js'),
      import('./commands/cp.js'),
      import('./commands/filters.js'),
      import('./commands/groups.js'),
      import('./commands/remotes.js'),
      import('./commands/replications.js'),
      import('./commands/tasks.js'),
    ]);
    for (const c of buckets.bucketCommands()) program.addCommand(c);
    program.addCommand(replications.replicationCommand());
    program.addCommand(filters.filterCommand());
    program.addCommand(groups.groupCommand());
    program.addCommand(remotes.remoteCommand());
    program.addCommand(tasks.tasksCommand());
    program.addCommand(cp.cpCommand());
    program.addCommand(context.contextCommand());
  }
  exitOverrideAll(program);
  return program;
}
