/**
 * `ferry replication verify <name>`: proves that a destination holds exactly the replication's
 * scope (and with `--repair` makes it so), with live progress from `active_tasks` while it runs.
 */
import type { Command } from 'commander';
import type { VerificationTask, VerifyResult } from '../../protocol/verify.js';
import type { FerryClient } from '../../client/ferry-client.js';
import { clientOf, outputOf } from '../connection.js';
import { CliError, EXIT, printJson, printTable } from '../output.js';
import { createProgress, type Progress } from '../progress.js';
import { act } from './act.js';
import { parseTime } from './cp.js';

const HINT = { notFound: 'ferry replication ls' };

interface VerifyCliOptions {
  repair?: boolean;
  removeExtra?: boolean;
  start?: bigint;
  stop?: bigint;
  entries?: string[];
  last?: boolean;
  interval: number;
  timeout: number;
}

/** Polls the verification task of `name` into `progress` until `signal` aborts. */
async function watch(
  client: FerryClient,
  name: string,
  progress: Progress,
  every: number,
  signal: AbortSignal,
) {
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, every));
    if (signal.aborted) return;
    try {
      const tasks = await client.activeTasks({ signal, timeoutMs: every * 5 });
      const t = tasks.find((x): x is VerificationTask => x.type === 'verification' && x.name === name);
      if (t) progress.update(t.progress.records_done, t.progress.records_total, t.phase);
    } catch {
      // Progress is best effort: the verification's own answer tells the outcome.
    }
  }
}

function printResult(r: VerifyResult): void {
  printTable(
    ['entry', 'source records', 'missing', 'extra', 'different', 'in flight', 'first difference'],
    r.entries.map((e) => [
      e.entry,
      e.source_records,
      e.missing.count,
      e.extra.count,
      e.different.count,
      e.in_flight,
      [
        e.missing.first[0] !== undefined ? `missing ${e.missing.first[0]}` : '',
        e.extra.first[0] !== undefined ? `extra ${e.extra.first[0]}` : '',
        e.different.first[0] ? `${e.different.first[0].parts.join('+')} ${e.different.first[0].ts}` : '',
      ]
        .filter((s) => s !== '')
        .join(', '),
    ]),
    '(no entries in scope)',
  );
  const t = r.totals;
  const lines = [`${r.replication}: ${r.outcome} (${t.source_records} records compared, ${r.duration_ms} ms`];
  lines[0] += `, ${r.exchange.round_trips} round trips)`;
  if (r.before_repair && r.repair) {
    const b = r.before_repair;
    lines.push(
      `repaired: ${b.missing} missing, ${b.different} different, ${b.extra} extra found; ` +
        `${r.repair.written} written, ${r.repair.relabelled} relabelled, ${r.repair.removed} removed, ${r.repair.failed} failed`,
    );
  }
  if (!r.payloads_compared) lines.push('payloads were not compared (the destination answers metadata only)');
  if (r.error) lines.push(`error: ${r.error}`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** Adds `verify` to the `replication` command group. */
export function addVerifyCommand(rep: Command): void {
  rep
    .command('verify <name>')
    .description(
      'check that the destination holds exactly what it should (range digests, no blob read); ' +
        'exits 0 when clean, 8 when differences remain',
    )
    .option('--repair', 'ship what is missing or different, then verify again')
    .option('--remove-extra', 'with --repair: also remove records only the destination holds')
    .option('--start <time>', 'first timestamp (µs or ISO date), inclusive', parseTime)
    .option('--stop <time>', 'last timestamp (µs or ISO date), exclusive', parseTime)
    .option('--entries <list>', 'source entries or patterns, comma-separated', (v) =>
      v.split(',').filter(Boolean),
    )
    .option('--last', 'show the last result instead of running a verification')
    .option('--interval <ms>', 'progress update interval', (v) => Number(v), 1000)
    .option('--timeout <s>', 'give up waiting after this many seconds', (v) => Number(v), 3600)
    .action(
      act(HINT, async (cmd, [name]) => {
        const o = cmd.opts<VerifyCliOptions>();
        const json = outputOf(cmd).json;
        const client = await clientOf(cmd);
        let result: VerifyResult;
        if (o.last) result = await client.replications.lastVerify(name!);
        else {
          const progress = createProgress({
            label: `verify ${name}`,
            unit: 'records',
            intervalMs: o.interval,
            quiet: json,
          });
          const stop = new AbortController();
          const watching = watch(client, name!, progress, o.interval, stop.signal);
          try {
            result = await client.replications.verify(name!, {
              repair: o.repair,
              removeExtra: o.removeExtra,
              start: o.start,
              stop: o.stop,
              entries: o.entries,
              timeoutMs: o.timeout * 1000,
            });
            progress.update(result.totals.source_records, result.totals.source_records, result.outcome);
          } finally {
            stop.abort();
            await watching;
            progress.stop();
          }
        }
        if (json) printJson(result);
        else printResult(result);
        if (result.outcome === 'failed')
          throw new CliError(
            `Verification of '${name}' failed: ${result.error ?? 'unknown error'}`,
            EXIT.error,
          );
        if (result.outcome === 'differences') process.exitCode = EXIT.differences;
      }),
    );
}
