/** `ferry context ls|add|use|rm`: named servers in the contexts file (0600), like reduct-cli aliases. */
import { Command } from 'commander';
import { FerryClient } from '../../client/index.js';
import { contextsPath, readContexts, writeContexts, type ContextFile } from '../contexts.js';
import { globals, outputOf } from '../connection.js';
import { CliError, EXIT, printJson, printTable } from '../output.js';
import { act } from './act.js';

/** The contexts file, which must hold `name` (exit 3 otherwise). */
async function fileWith(name: string): Promise<{ path: string; file: ContextFile }> {
  const path = contextsPath();
  const file = await readContexts(path);
  if (!file.contexts[name])
    throw new CliError(`No context '${name}'; see 'ferry context ls'.`, EXIT.notFound);
  return { path, file };
}

/** The `context` command group. */
export function contextCommand(): Command {
  const ctx = new Command('context').description(`named servers and tokens, kept in ${contextsPath()}`);
  ctx
    .command('ls')
    .description('list contexts (tokens are not shown)')
    .action(
      act({}, async (cmd) => {
        const file = await readContexts(contextsPath());
        const rows = Object.entries(file.contexts).map(([name, c]) => ({
          name,
          url: c.url,
          token: c.token ? 'set' : 'none',
          current: file.current === name,
        }));
        if (outputOf(cmd).json) return printJson(rows);
        printTable(
          ['name', 'url', 'token', 'current'],
          rows.map((r) => [r.name, r.url, r.token, r.current ? '*' : '']),
          "(no contexts; add one with 'ferry context add <name> --url <url> --token <token>')",
        );
      }),
    );
  ctx
    .command('add <name>')
    .description(
      'add or replace a context from --url and --token (checks that the server accepts the token unless --no-check)',
    )
    .option('--no-check', 'do not contact the server')
    .option('--use', 'make it the current context')
    .action(
      act({}, async (cmd, [name]) => {
        // The context is made of the global --url and --token of this invocation.
        const { url, token } = globals(cmd);
        if (url === undefined) throw new CliError("Give the context's server with --url.", EXIT.usage);
        const o = { ...cmd.opts<{ check: boolean; use?: boolean }>(), url, token };
        if (o.check) await new FerryClient(o.url, { token: o.token }).me();
        const path = contextsPath();
        const file = await readContexts(path);
        file.contexts[name!] = o.token === undefined ? { url: o.url } : { url: o.url, token: o.token };
        if (o.use || file.current === undefined) file.current = name;
        await writeContexts(path, file);
        if (outputOf(cmd).json) return printJson({ name, url: o.url, current: file.current === name });
        process.stdout.write(
          `Context '${name}' saved in ${path}${file.current === name ? ' (current)' : ''}.\n`,
        );
      }),
    );
  ctx
    .command('use <name>')
    .description('make a context the current one')
    .action(
      act({}, async (cmd, [name]) => {
        const { path, file } = await fileWith(name!);
        file.current = name;
        await writeContexts(path, file);
        if (outputOf(cmd).json) return printJson({ current: name });
        process.stdout.write(`Current context: ${name}.\n`);
      }),
    );
  ctx
    .command('rm <name>')
    .description('remove a context')
    .action(
      act({}, async (cmd, [name]) => {
        const { path, file } = await fileWith(name!);
        delete file.contexts[name!];
        if (file.current === name) delete file.current;
        await writeContexts(path, file);
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Context '${name}' removed.\n`);
      }),
    );
  return ctx;
}
