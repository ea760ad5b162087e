/** `ferry bucket ls|create|info|rm` and `ferry entry ls`. */
import { createInterface } from 'node:readline/promises';
import { Command, InvalidArgumentError } from 'commander';
import type { BucketSettingsPatch, EntryInfo, QuotaType, U64 } from '../../protocol/buckets.js';
import { QUOTA_TYPES } from '../../protocol/buckets.js';
import { clientOf, outputOf } from '../connection.js';
import { CliError, EXIT, formatBytes, formatTime, printFields, printJson, printTable } from '../output.js';
import { act } from './act.js';

const BUCKETS_HINT = { notFound: 'ferry bucket ls' };

/** Parses a size like `10GB`, `512MiB` or `1000`. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size like 1000, 512MiB or 10GB');
  const unit = (m[2] ?? 'B').toUpperCase();
  const mult: Record<string, number> = {
    B: 1,
    KB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    KIB: 2 ** 10,
    MIB: 2 ** 20,
    GIB: 2 ** 30,
    TIB: 2 ** 40,
  };
  return Math.round(Number(m[1]) * mult[unit]!);
}

function parseQuotaType(value: string): QuotaType {
  const v = value.toUpperCase() as QuotaType;
  if (!QUOTA_TYPES.includes(v)) throw new InvalidArgumentError(`expected one of ${QUOTA_TYPES.join(', ')}`);
  return v;
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

/** Asks on a terminal; scripts pass `--yes` (without a terminal the answer is no). */
export async function confirm(question: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) throw new CliError(`${question} Pass --yes to confirm.`, EXIT.usage);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`${question} [y/N] `);
  rl.close();
  if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('Cancelled.', EXIT.error);
}

/** The `bucket` and `entry` command groups. */
export function bucketCommands(): Command[] {
  const bucket = new Command('bucket').description('list, create, inspect and remove buckets');
  bucket
    .command('ls')
    .description('list the buckets the token can read')
    .action(
      act(BUCKETS_HINT, async (cmd) => {
        const buckets = await (await clientOf(cmd)).listBuckets();
        if (outputOf(cmd).json) return printJson(buckets);
        printTable(
          ['name', 'entries', 'size', 'oldest record', 'latest record', 'status'],
          buckets.map((b) => [
            b.name,
            b.entry_count,
            formatBytes(b.size),
            formatTime(b.oldest_record),
            formatTime(b.latest_record),
            b.status,
          ]),
          '(no buckets)',
        );
      }),
    );
  bucket
    .command('create <name>')
    .description('create a bucket (settings left out take the server defaults)')
    .option('--quota-type <type>', 'NONE, FIFO or HARD', parseQuotaType)
    .option('--quota-size <size>', 'quota, e.g. 10GB or 512MiB', parseSize)
    .option('--max-block-size <size>', 'largest block file', parseSize)
    .option('--max-block-records <n>', 'most records per block', parseCount)
    .option('--exist-ok', 'succeed when the bucket exists already')
    .action(
      act(BUCKETS_HINT, async (cmd, [name]) => {
        const o = cmd.opts<{
          quotaType?: QuotaType;
          quotaSize?: number;
          maxBlockSize?: number;
          maxBlockRecords?: number;
          existOk?: boolean;
        }>();
        const settings: BucketSettingsPatch<U64> = {
          quota_type: o.quotaType,
          quota_size: o.quotaSize,
          max_block_size: o.maxBlockSize,
          max_block_records: o.maxBlockRecords,
        };
        const client = await clientOf(cmd);
        await client.createBucket(name!, settings, { existOk: o.existOk });
        const detail = await client.bucket(name!).info();
        if (outputOf(cmd).json) return printJson(detail);
        process.stdout.write(`Bucket '${name}' created (${detail.settings.quota_type} quota).\n`);
      }),
    );
  bucket
    .command('info <name>')
    .description("show a bucket's settings, usage and entries")
    .action(
      act(BUCKETS_HINT, async (cmd, [name]) => {
        const detail = await (await clientOf(cmd)).bucket(name!).info();
        if (outputOf(cmd).json) return printJson(detail);
        const { info, settings } = detail;
        printFields([
          ['name', info.name],
          ['status', info.status],
          ['entries', info.entry_count],
          ['size', formatBytes(info.size)],
          ['oldest record', formatTime(info.oldest_record)],
          ['latest record', formatTime(info.latest_record)],
          ['provisioned', info.is_provisioned],
          ['quota', `${settings.quota_type} ${formatBytes(settings.quota_size)}`],
          ['max block', `${formatBytes(settings.max_block_size)}, ${settings.max_block_records} records`],
        ]);
        process.stdout.write('\n');
        printEntries(detail.entries);
      }),
    );
  bucket
    .command('rm <name>')
    .description('remove a bucket and all its data')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(
      act(BUCKETS_HINT, async (cmd, [name]) => {
        await confirm(`Remove bucket '${name}' and all its data?`, cmd.opts<{ yes?: boolean }>().yes);
        await (await clientOf(cmd)).bucket(name!).remove();
        if (outputOf(cmd).json) return printJson({ removed: name });
        process.stdout.write(`Bucket '${name}' removed.\n`);
      }),
    );

  const entry = new Command('entry').description('entries of a bucket');
  entry
    .command('ls <bucket>')
    .description('list the entries of a bucket')
    .action(
      act(BUCKETS_HINT, async (cmd, [name]) => {
        const entries = await (await clientOf(cmd)).bucket(name!).entries();
        if (outputOf(cmd).json) return printJson(entries);
        printEntries(entries);
      }),
    );
  return [bucket, entry];
}

function printEntries(entries: EntryInfo<U64>[]): void {
  printTable(
    ['entry', 'records', 'blocks', 'size', 'oldest record', 'latest record', 'status'],
    entries.map((e) => [
      e.name,
      e.record_count,
      e.block_count,
      formatBytes(e.size),
      formatTime(e.oldest_record),
      formatTime(e.latest_record),
      e.status,
    ]),
    '(no entries)',
  );
}
