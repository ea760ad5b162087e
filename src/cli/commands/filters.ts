/** `ferry filter ls|show|create|rm`: stored filters that replications name with `--filter`. */
import { Command } from 'commander';
import type { FilterParam } from '../../protocol/filters.js';
import { clientOf, outputOf } from '../connection.js';
import { printFields, printJson, printTable } from '../output.js';
import { act } from './act.js';
import { confirm } from './buckets.js';
import { parseJsonOption } from './replications.js';

const HINT = { notFound: 'ferry filter ls' };

/** The `filter` command group. */
export function filterCommand(): Command {
  const filter = new Command('filter').description(
    'stored filters: `when` templates with {"$param": …} placeholders',
  );
  filter
    .command('ls')
    .description('list stored filters with their version and users')
    .action(
      act(HINT, async (cmd) => {
        const list = await (await clientOf(cmd)).filters.list();
        if (outputOf(cmd).json) return printJson(list);
        printTable(
          ['name', 'version', 'params', 'used by', 'description'],
          list.map((f) => [
            f.name,
            f.version,
            Object.keys(f.params).join(', '),
            f.used_by.join(', '),
            f.description,
          ]),
          '(no filters)',
        );
      }),
    );
  filter
    .command('show <name>')
    .description('a stored filter with its template and parameters')
    .action(
      act(HINT, async (cmd, [name]) => {
        const f = await (await clientOf(cmd)).filters.get(name!);
        if (outputOf(cmd).json) return printJson(f);
        printFields([
          ['name', f.name],
          ['version', f.version],
          ['description', f.description],
          ['when', f.when],
          ['params', f.params],
          ['used by', f.used_by.join(', ') || '-'],
          ['updated', f.updated_at],
        ]);
      }),
    );
  filter
    .command('create <name>')
    .description('store a filter (--replace to overwrite an existing one)')
    .requiredOption(
      '--when <json>',
      'template, e.g. \'{"&score": {"$gte": {"$param": "min"}}}\'',
      parseJsonOption,
    )
    .option(
      '--params <json>',
      'parameters, e.g. \'{"min": {"type": "number", "default": 0.5}}\'',
      parseJsonOption,
    )
    .option('--description <text>', 'what it selects')
    .option('--replace', 'replace an existing filter (its version goes up)')
    .action(
      act(HINT, async (cmd, [name]) => {
        const o = cmd.opts<{
          when: Record<string, unknown>;
          params?: Record<string, FilterParam>;
          description?: string;
          replace?: boolean;
        }>();
        const client = await clientOf(cmd);
        const body = { when: o.when, params: o.params, description: o.description };
        if (o.replace) await client.filters.replace(name!, body);
        else await client.filters.create(name!, body);
        const f = await client.filters.get(name!);
        if (outputOf(cmd).json) return printJson(f);
        process.stdout.write(`Filter '${name}' stored (version ${f.version}).\n`);
      }),
    );
  filter
    .command('rm <name>')
    .description('delete a stored filter (refused while replications use it)')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(
      act(HINT, async (cmd, [name]) => {
        await confirm(`Delete filter '${name}'?`, cmd.opts<{ yes?: boolean }>().yes);
        await (await clientOf(cmd)).filters.delete(name!);
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Filter '${name}' deleted.\n`);
      }),
    );
  return filter;
}
