/** `ferry remote ls|show|create|pin|rm`: named, monitored connections to other instances. */
import { Command } from 'commander';
import type { RemoteJson, RemoteRequest } from '../../protocol/remotes.js';
import { clientOf, outputOf } from '../connection.js';
import { printFields, printJson, printTable } from '../output.js';
import { act } from './act.js';
import { confirm } from './buckets.js';

const HINT = { notFound: 'ferry remote ls' };

const int = (v: string): number => Number(v);

function stateOf(r: RemoteJson): string {
  if (r.identity.mismatch) return `${r.state} (identity mismatch)`;
  return r.state;
}

interface CreateOptions {
  remoteToken?: string;
  proxy?: string;
  connectTimeout?: number;
  requestTimeout?: number;
  insecure?: boolean;
  ca?: string;
  replace?: boolean;
}

/** The `remote` command group. */
export function remoteCommand(): Command {
  const remote = new Command('remote').description(
    'remotes: named, monitored connections to other instances, for replications',
  );
  remote
    .command('ls')
    .description('list remotes with their state, round-trip time and users')
    .action(
      act(HINT, async (cmd) => {
        const list = await (await clientOf(cmd)).remotes.list();
        if (outputOf(cmd).json) return printJson(list);
        printTable(
          ['name', 'url', 'state', 'rtt ms', 'instance', 'replications'],
          list.map((r) => [
            r.name,
            r.url,
            stateOf(r),
            r.rtt_ms ?? '-',
            r.instance_id ?? '-',
            r.replications.join(', '),
          ]),
          '(no remotes)',
        );
      }),
    );
  remote
    .command('show <name>')
    .description('one remote: settings (no secrets), probe state, identity, last error')
    .action(
      act(HINT, async (cmd, [name]) => {
        const r = await (await clientOf(cmd)).remotes.get(name!);
        if (outputOf(cmd).json) return printJson(r);
        printFields([
          ['name', r.name],
          ['url', r.url],
          ['token', r.has_token ? '(set)' : '(none)'],
          ['proxy', r.proxy ?? '-'],
          ['state', stateOf(r)],
          ['rtt ms', r.rtt_ms ?? '-'],
          ['instance', r.instance_id ?? '-'],
          ['version', r.version ?? '-'],
          ['pinned', r.identity.pinned_instance_id ?? '(not yet)'],
          ['last error', r.last_error ? `${r.last_error.message} (${r.last_error.at})` : '-'],
          ['replications', r.replications.join(', ') || '-'],
        ]);
      }),
    );
  remote
    .command('create <name> <url>')
    .description(
      'add a remote at <url>, e.g. https://cloud:8383 (--replace to change one; a token left out is kept)',
    )
    // --url and --token are the options of the server this command talks to.
    .option('--remote-token <token>', 'token for the other instance (write-only: never shown again)')
    .option('--proxy <url>', 'HTTP CONNECT proxy, http://[user:password@]host:port')
    .option('--connect-timeout <ms>', 'connect timeout', int)
    .option('--request-timeout <ms>', 'request timeout', int)
    .option('--insecure', 'do not verify the TLS certificate')
    .option('--ca <pem>', 'PEM certificates to trust for https')
    .option('--replace', 'replace an existing remote')
    .action(
      act(HINT, async (cmd, [name, url]) => {
        const o = cmd.opts<CreateOptions>();
        const body: RemoteRequest = { url: url! };
        if (o.remoteToken !== undefined) body.token = o.remoteToken;
        if (o.proxy !== undefined) body.proxy = o.proxy;
        if (o.connectTimeout !== undefined) body.connect_timeout_ms = o.connectTimeout;
        if (o.requestTimeout !== undefined) body.request_timeout_ms = o.requestTimeout;
        if (o.insecure) body.verify_tls = false;
        if (o.ca !== undefined) body.ca = o.ca;
        const client = await clientOf(cmd);
        if (o.replace) await client.remotes.replace(name!, body);
        else await client.remotes.create(name!, body);
        const r = await client.remotes.get(name!);
        if (outputOf(cmd).json) return printJson(r);
        process.stdout.write(
          `Remote '${name}' stored (${r.state}); use it with 'ferry replication create … --remote ${name}'.\n`,
        );
      }),
    );
  remote
    .command('pin <name>')
    .description('pin the identity again after a deliberate move (to --instance, or to the next one seen)')
    .option('--instance <id>', 'instance id to pin')
    .action(
      act(HINT, async (cmd, [name]) => {
        const id = cmd.opts<{ instance?: string }>().instance;
        const r = await (await clientOf(cmd)).remotes.pin(name!, id === undefined ? {} : { instance_id: id });
        if (outputOf(cmd).json) return printJson(r);
        process.stdout.write(
          `Remote '${name}' pinned to ${r.identity.pinned_instance_id ?? 'the next instance seen'}.\n`,
        );
      }),
    );
  remote
    .command('rm <name>')
    .description('delete a remote (refused while replications use it, unless --force)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--force', 'delete even while replications use it')
    .action(
      act(HINT, async (cmd, [name]) => {
        const o = cmd.opts<{ yes?: boolean; force?: boolean }>();
        await confirm(`Delete remote '${name}'?`, o.yes);
        await (await clientOf(cmd)).remotes.delete(name!, { force: o.force });
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Remote '${name}' deleted.\n`);
      }),
    );
  return remote;
}
