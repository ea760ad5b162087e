/** `ferry replication ls|create|show|pause|resume|rm|follow`. */
import { Command, InvalidArgumentError, Option } from 'commander';
import type {
  Compression,
  ReplicationMode,
  ReplicationSettingsRequest,
} from '../../protocol/replications.js';
import type { ReplicationStatus } from '../../protocol/replication-status.js';
import { parseJson } from '../../protocol/json.js';
import { clientOf, namedContext, outputOf } from '../connection.js';
import { CliError, EXIT, formatBytes, printFields, printJson, printTable } from '../output.js';
import { createProgress } from '../progress.js';
import { act } from './act.js';
import { confirm } from './buckets.js';
import { addVerifyCommand } from './verify.js';

const HINT = { notFound: 'ferry replication ls' };

/** Parses a JSON option value (bigint-safe), e.g. `--when '{"&q": {"$eq": "ok"}}'`. */
export function parseJsonOption(value: string): unknown {
  try {
    return parseJson(value);
  } catch (e) {
    throw new InvalidArgumentError(`expected JSON (${(e as Error).message})`);
  }
}

const list = (value: string): string[] => value.split(',').filter((s) => s !== '');

interface CreateOptions {
  src: string;
  dst?: string;
  dstUrl?: string;
  dstContext?: string;
  dstToken?: string;
  remote?: string;
  entries?: string[];
  when?: unknown;
  prefix?: string;
  compression?: Compression;
  mode?: ReplicationMode;
  filter?: string;
  params?: Record<string, unknown>;
  settings?: Record<string, unknown>;
}

async function settingsOf(o: CreateOptions): Promise<ReplicationSettingsRequest> {
  let host = o.dstUrl ?? '';
  let token = o.dstToken;
  if (o.dstContext !== undefined) {
    const ctx = await namedContext(o.dstContext);
    host = ctx.url;
    token ??= ctx.token;
  }
  const s: ReplicationSettingsRequest = {
    ...(o.settings ?? {}),
    src_bucket: o.src,
    dst_bucket: o.dst ?? o.src,
    dst_host: host,
  };
  if (token !== undefined) s.dst_token = token;
  if (o.remote !== undefined) {
    if (o.dstUrl !== undefined || o.dstContext !== undefined || o.dstToken !== undefined)
      throw new CliError(
        'Give either --remote or --dst-url/--dst-context/--dst-token, not both.',
        EXIT.usage,
      );
    // The remote holds the URL and the token: the server refuses dst_host next to it.
    delete (s as Partial<ReplicationSettingsRequest>).dst_host;
    s.remote = o.remote;
  }
  if (o.entries) s.entries = o.entries;
  if (o.when !== undefined) s.when = o.when;
  if (o.prefix !== undefined) s.dst_prefix = o.prefix;
  if (o.compression) s.compression = o.compression;
  if (o.mode) s.mode = o.mode;
  if (o.filter !== undefined) s.filter = o.filter;
  if (o.params !== undefined) s.query_params = o.params;
  return s;
}

/** The `replication` command group. */
export function replicationCommand(): Command {
  const rep = new Command('replication').alias('rep').description('replications of the server');
  rep
    .command('ls')
    .description('list replications with their state')
    .action(
      act(HINT, async (cmd) => {
        const client = await clientOf(cmd);
        const items = await client.replications.list();
        if (outputOf(cmd).json) return printJson(items);
        printTable(
          ['name', 'mode', 'active', 'pending records', 'provisioned'],
          items.map((r) => [r.name, r.mode, r.is_active, r.pending_records, r.is_provisioned]),
          '(no replications)',
        );
      }),
    );
  rep
    .command('create <name>')
    .description('create a replication of a bucket to another server (or another bucket of this one)')
    .requiredOption('--src <bucket>', 'source bucket')
    .option('--dst <bucket>', 'destination bucket (default: the source name)')
    .option('--dst-url <url>', 'destination server (default: this server)')
    .option('--dst-context <name>', 'destination server and token from a context')
    .option('--dst-token <token>', 'token for the destination')
    .option('--remote <name>', "a remote (see 'ferry remote ls') instead of --dst-url and --dst-token")
    .option('--entries <list>', 'comma-separated entry names or patterns (cam-*, sensors/**)', list)
    .option('--when <json>', 'condition on labels, e.g. \'{"&quality": {"$eq": "ok"}}\'', parseJsonOption)
    .option('--prefix <path>', 'prefix of destination entry names')
    .addOption(new Option('--compression <c>', 'transfer compression').choices(['none', 'gzip', 'zstd']))
    .addOption(new Option('--mode <mode>', 'initial mode').choices(['enabled', 'paused', 'disabled']))
    .option('--filter <name>', "a stored filter (see 'ferry filter ls') instead of --when")
    .option('--params <json>', "values of the filter's parameters, e.g. '{\"min\": 0.8}'", parseJsonOption)
    .option(
      '--settings <json>',
      'further settings as JSON (batch, retry, on_write_failure, log, …)',
      parseJsonOption,
    )
    .action(
      act(HINT, async (cmd, [name]) => {
        const client = await clientOf(cmd);
        await client.replications.create(name!, await settingsOf(cmd.opts<CreateOptions>()));
        if (outputOf(cmd).json) return printJson(await client.replications.get(name!));
        process.stdout.write(
          `Replication '${name}' created; watch it with 'ferry replication follow ${name}'.\n`,
        );
      }),
    );
  rep
    .command('show <name>')
    .description('settings, state, counters and diagnostics of a replication')
    .action(
      act(HINT, async (cmd, [name]) => {
        const client = await clientOf(cmd);
        const [detail, status] = await Promise.all([
          client.replications.get(name!),
          client.replications.status(name!),
        ]);
        if (outputOf(cmd).json) return printJson({ ...detail, status });
        const s = detail.settings;
        printFields([
          ['name', name],
          ['mode', detail.info.mode],
          ['state', status.state_reason ? `${status.state} (${status.state_reason})` : status.state],
          ['source', `${s.src_bucket} ${s.entries.length ? s.entries.join(',') : '(all entries)'}`],
          [
            'destination',
            `${s.dst_host || '(this server)'} ${s.dst_bucket}${s.dst_prefix ? ` prefix ${s.dst_prefix}` : ''}`,
          ],
          ['when', s.when ?? '-'],
          ['pending', `${status.pending_records} records, ${formatBytes(status.pending_bytes)}`],
          ['lag', `${status.lag_ms} ms`],
          [
            'written',
            `${status.counters.records_written} records, ${formatBytes(status.counters.bytes_written)}`,
          ],
          ['failed', status.counters.records_failed],
          ['throughput', `${status.throughput.last_10s.records_per_sec} records/s (10 s)`],
          [
            'last error',
            status.last_error ? `${status.last_error.status} ${status.last_error.message}` : '-',
          ],
          ['hourly', `${detail.diagnostics.hourly.ok} ok, ${detail.diagnostics.hourly.errored} errored`],
        ]);
      }),
    );
  for (const [verb, mode, what] of [
    ['pause', 'paused', 'pause shipping (work is kept and shipped on resume)'],
    ['resume', 'enabled', 'resume a paused or disabled replication'],
  ] as const) {
    rep
      .command(`${verb} <name>`)
      .description(what)
      .action(
        act(HINT, async (cmd, [name]) => {
          const client = await clientOf(cmd);
          await client.replications.setMode(name!, mode);
          if (outputOf(cmd).json) return printJson((await client.replications.get(name!)).info);
          process.stdout.write(`Replication '${name}' is now ${mode}.\n`);
        }),
      );
  }
  rep
    .command('rm <name>')
    .description('delete a replication (data already copied stays)')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(
      act(HINT, async (cmd, [name]) => {
        await confirm(`Delete replication '${name}'?`, cmd.opts<{ yes?: boolean }>().yes);
        await (await clientOf(cmd)).replications.delete(name!);
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Replication '${name}' deleted.\n`);
      }),
    );
  rep
    .command('follow <name>')
    .description('watch a replication live; exits 0 on completed (or a state of --until), 7 on suspended')
    .option('--interval <ms>', 'most one update per this many ms', (v) => Number(v), 1000)
    .option('--until <states>', 'also stop with 0 on these states, e.g. idle', list)
    .action(
      act(HINT, async (cmd, [name]) => {
        const o = cmd.opts<{ interval: number; until?: string[] }>();
        const json = outputOf(cmd).json;
        const client = await clientOf(cmd);
        const stopOn = new Set(['completed', ...(o.until ?? [])]);
        const progress = createProgress({
          label: name!,
          unit: 'records',
          intervalMs: o.interval,
          quiet: json,
        });
        const ac = new AbortController();
        process.once('SIGINT', () => ac.abort());
        let last: ReplicationStatus | undefined;
        let end: 'done' | 'suspended' | undefined;
        try {
          for await (const ev of client.replications.follow(name!, {
            signal: ac.signal,
            intervalMs: o.interval,
          })) {
            if (json) printJson(ev);
            const state = ev.type === 'status' ? ev.status.state : ev.state.to;
            if (ev.type === 'status') {
              last = ev.status;
              const done = delivered(ev.status);
              progress.update(done, done + ev.status.pending_records, ev.status.state);
            }
            if (state === 'suspended') {
              end = 'suspended';
              break;
            }
            if (stopOn.has(state) && (ev.type === 'state' || ev.status.pending_records === 0)) {
              end = 'done';
              break;
            }
          }
        } finally {
          progress.stop();
        }
        if (end === 'suspended') {
          throw new CliError(
            `Replication '${name}' is suspended${last?.state_reason ? `: ${last.state_reason}` : ''}.` +
              ` See 'ferry replication show ${name}'.`,
            EXIT.suspended,
          );
        }
        if (!json && last)
          process.stderr.write(`${name}: ${last.state}, ${delivered(last)} records delivered\n`);
      }),
    );
  addVerifyCommand(rep);
  return rep;
}

/** Records delivered so far (written + already present at the destination). */
function delivered(s: ReplicationStatus): number {
  return s.counters.records_written + s.counters.records_already_present;
}
