/** `ferry group ls|show|create|rm`: consistency groups of buckets replicated as one. */
import { Command } from 'commander';
import { clientOf, outputOf } from '../connection.js';
import { printFields, printJson, printTable } from '../output.js';
import { act } from './act.js';
import { confirm } from './buckets.js';

const HINT = { notFound: 'ferry group ls' };

/** `a,b,c` → ['a', 'b', 'c'] (empty items dropped). */
function bucketList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** The `group` command group. */
export function groupCommand(): Command {
  const group = new Command('group').description(
    'consistency groups: buckets that one replication ships in commit order',
  );
  group
    .command('ls')
    .description('list groups with their member buckets')
    .action(
      act(HINT, async (cmd) => {
        const list = await (await clientOf(cmd)).groups.list();
        if (outputOf(cmd).json) return printJson(list);
        printTable(
          ['name', 'buckets', 'provisioned'],
          list.map((g) => [g.name, g.buckets.join(', '), g.is_provisioned ? 'yes' : 'no']),
          '(no groups)',
        );
      }),
    );
  group
    .command('show <name>')
    .description('one group')
    .action(
      act(HINT, async (cmd, [name]) => {
        const g = await (await clientOf(cmd)).groups.get(name!);
        if (outputOf(cmd).json) return printJson(g);
        printFields([
          ['name', g.name],
          ['buckets', g.buckets.join(', ')],
          ['provisioned', g.is_provisioned ? 'yes' : 'no'],
        ]);
      }),
    );
  group
    .command('create <name>')
    .description('group existing buckets (--replace to change the members of an existing group)')
    .requiredOption('--buckets <list>', 'member buckets, comma-separated, e.g. camera,lidar,pose', bucketList)
    .option('--replace', 'replace the members of an existing group')
    .action(
      act(HINT, async (cmd, [name]) => {
        const o = cmd.opts<{ buckets: string[]; replace?: boolean }>();
        const client = await clientOf(cmd);
        if (o.replace) await client.groups.replace(name!, { buckets: o.buckets });
        else await client.groups.create(name!, { buckets: o.buckets });
        const g = await client.groups.get(name!);
        if (outputOf(cmd).json) return printJson(g);
        process.stdout.write(`Group '${name}' holds ${g.buckets.join(', ')}.\n`);
      }),
    );
  group
    .command('rm <name>')
    .description('delete a group (its buckets and their data stay)')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(
      act(HINT, async (cmd, [name]) => {
        await confirm(`Delete group '${name}'?`, cmd.opts<{ yes?: boolean }>().yes);
        await (await clientOf(cmd)).groups.delete(name!);
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Group '${name}' deleted.\n`);
      }),
    );
  return group;
}
