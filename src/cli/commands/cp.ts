/**
 * `ferry cp SRC DST`: copies records between two servers, or exports a bucket to a folder and
 * imports it back. A folder holds one file per record, `<entry>/<ts>.<ext>`, next to its metadata
 * `<entry>/<ts>.meta.json` (`{entry, ts, content_type, labels, size}`); hierarchical entries are
 * sub-folders. Records the destination already holds are skipped (counted, not an error).
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { BatchRecord, Bucket, FerryClient, QueriedRecord } from '../../client/index.js';
import { FerryClient as Client } from '../../client/index.js';
import { parseJson, parseU64, stringifyJson } from '../../protocol/json.js';
import type { Labels } from '../../protocol/labels.js';
import { compileEntryPatterns } from '../../query/entry-pattern.js';
import { clientOf, globals, namedContext, outputOf } from '../connection.js';
import { contextsPath, readContexts } from '../contexts.js';
import { CliError, EXIT, formatBytes, printJson } from '../output.js';
import { createProgress } from '../progress.js';
import { act } from './act.js';
import { parseJsonOption } from './replications.js';

/** One side of a copy. */
type Endpoint =
  { kind: 'server'; client: FerryClient; bucket: string; label: string } | { kind: 'folder'; path: string };

interface CpOptions {
  entries?: string[];
  start?: bigint;
  stop?: bigint;
  when?: unknown;
  srcToken?: string;
  dstToken?: string;
  progressInterval: number;
  quiet?: boolean;
}

/** Records per write batch, and bytes: well under the server's batch limits. */
const BATCH_RECORDS = 256;
const BATCH_BYTES = 8 * 1024 * 1024;

/** `--start`/`--stop`: µs since the epoch, or an ISO date. */
export function parseTime(value: string): bigint {
  const us = parseU64(value);
  if (us !== undefined) return us;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidArgumentError('expected µs since the epoch or an ISO date');
  return BigInt(ms) * 1000n;
}

const EXT: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'application/json': 'json',
  'text/plain': 'txt',
  'text/csv': 'csv',
  'application/octet-stream': 'bin',
};

const extOf = (contentType: string): string => EXT[contentType.split(';')[0]!.trim()] ?? 'bin';

/**
 * Resolves `SRC`/`DST`: `<context>/<bucket>`, `<url>/<bucket>` (http or https), `:<bucket>` (the
 * server of --url/FERRY_URL/the current context), or else a folder.
 */
async function endpointOf(spec: string, cmd: Command, token: string | undefined): Promise<Endpoint> {
  const opts = globals(cmd);
  if (spec.startsWith(':')) {
    const client = await clientOf(cmd);
    return { kind: 'server', client, bucket: spec.slice(1), label: `${client.url} ${spec.slice(1)}` };
  }
  const m = /^(https?:\/\/.+)\/([^/]+)\/?$/.exec(spec);
  if (m) {
    const client = new Client(m[1]!, {
      token: token ?? opts.token ?? process.env.FERRY_TOKEN,
      timeoutMs: opts.timeout,
    });
    return { kind: 'server', client, bucket: m[2]!, label: spec };
  }
  const parts = spec.split('/');
  if (parts.length === 2 && parts[0] !== '' && parts[0] !== '.' && parts[0] !== '..') {
    const file = await readContexts(contextsPath());
    if (file.contexts[parts[0]!]) {
      const ctx = await namedContext(parts[0]!);
      const client = new Client(ctx.url, { token: token ?? ctx.token, timeoutMs: opts.timeout });
      return { kind: 'server', client, bucket: parts[1]!, label: spec };
    }
  }
  return { kind: 'folder', path: spec };
}

interface Source {
  /** Upper bound of the records to copy (filters may select fewer). */
  total: number;
  records(): AsyncGenerator<QueriedRecord>;
}

async function serverSource(ep: Extract<Endpoint, { kind: 'server' }>, o: CpOptions): Promise<Source> {
  const bucket = ep.client.bucket(ep.bucket);
  const match = compileEntryPatterns(o.entries);
  const entries = (await bucket.entries()).filter((e) => Number(e.record_count) > 0 && match(e.name));
  return {
    total: entries.reduce((n, e) => n + Number(e.record_count), 0),
    async *records() {
      for (const e of entries) yield* bucket.query(e.name, { start: o.start, stop: o.stop, when: o.when });
    },
  };
}

/** Every `*.meta.json` below `dir`. */
async function metaFiles(dir: string): Promise<string[]> {
  const found = await readdir(dir, { recursive: true, withFileTypes: true }).catch(
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        throw new CliError(`No folder '${dir}' (and no context named like its first part).`, EXIT.notFound);
      throw e;
    },
  );
  return found
    .filter((d) => d.isFile() && d.name.endsWith('.meta.json'))
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

interface MetaFile {
  entry: string;
  ts: number | bigint;
  content_type: string;
  labels: Labels;
  size: number;
}

async function folderSource(dir: string, o: CpOptions): Promise<Source> {
  if (o.when !== undefined)
    throw new CliError('--when needs a server as the source (a folder has no query engine).', EXIT.usage);
  const match = compileEntryPatterns(o.entries);
  const files = await metaFiles(dir);
  return {
    total: files.length,
    async *records() {
      for (const file of files) {
        const meta = parseJson(await readFile(file, 'utf8')) as MetaFile;
        const ts = BigInt(meta.ts);
        const entry = relative(dir, file).split(sep).slice(0, -1).join('/');
        if (!match(entry)) continue;
        if ((o.start !== undefined && ts < o.start) || (o.stop !== undefined && ts >= o.stop)) continue;
        const data = await readFile(file.replace(/\.meta\.json$/, `.${extOf(meta.content_type)}`));
        yield {
          entry,
          ts,
          size: data.byteLength,
          contentType: meta.content_type,
          labels: meta.labels ?? {},
          data,
        };
      }
    },
  };
}

/** Copy outcome counts. */
interface Counts {
  copied: number;
  bytes: number;
  skipped: number;
  failed: number;
}

interface Sink {
  put(r: QueriedRecord): Promise<void>;
  flush(): Promise<void>;
}

function serverSink(bucket: Bucket, counts: Counts, errors: string[]): Sink {
  let entry = '';
  let batch: BatchRecord[] = [];
  let bytes = 0;
  // One batch is written while the next is read: a copy then costs about max(read, write), not the sum.
  let inFlight: Promise<void> = Promise.resolve();
  const write = async (e: string, records: BatchRecord[], size: number): Promise<void> => {
    const refused = await bucket.writeBatch(e, records);
    for (const [ts, err] of refused) {
      if (err.status === 409) counts.skipped++;
      else {
        counts.failed++;
        if (errors.length < 10) errors.push(`${e} ${ts}: ${err.status} ${err.message}`);
      }
    }
    counts.copied += records.length - refused.size;
    counts.bytes += size;
  };
  const send = async (): Promise<void> => {
    await inFlight;
    if (batch.length === 0) return;
    inFlight = write(entry, batch, bytes);
    // handled by the next `await inFlight`; until then it must not count as an unhandled rejection
    inFlight.catch(() => undefined);
    batch = [];
    bytes = 0;
  };
  return {
    async put(r) {
      if (r.entry !== entry || batch.length >= BATCH_RECORDS || bytes + r.size > BATCH_BYTES) await send();
      entry = r.entry;
      batch.push({ ts: r.ts, data: r.data, contentType: r.contentType, labels: r.labels });
      bytes += r.size;
    },
    async flush() {
      await send();
      await inFlight;
    },
  };
}

function folderSink(dir: string, counts: Counts): Sink {
  return {
    async put(r) {
      const d = join(dir, ...r.entry.split('/'));
      await mkdir(d, { recursive: true });
      await writeFile(join(d, `${r.ts}.${extOf(r.contentType)}`), r.data);
      const meta: MetaFile = {
        entry: r.entry,
        ts: r.ts,
        content_type: r.contentType,
        labels: r.labels,
        size: r.size,
      };
      await writeFile(join(d, `${r.ts}.meta.json`), stringifyJson(meta, 2) + '\n');
      counts.copied++;
      counts.bytes += r.size;
    },
    flush: async () => undefined,
  };
}

/** The `cp` command. */
export function cpCommand(): Command {
  return new Command('cp')
    .description(
      'copy records between servers, or export to / import from a folder\n' +
        'SRC and DST: <context>/<bucket>, <url>/<bucket>, :<bucket> (the --url server) or a folder',
    )
    .argument('<src>', 'where to read')
    .argument('<dst>', 'where to write (a server bucket is created when missing)')
    .option('--entries <list>', 'comma-separated entry names or patterns (cam-*, sensors/**)', (v) =>
      v.split(','),
    )
    .option('--start <time>', 'first timestamp (µs or ISO date), inclusive', parseTime)
    .option('--stop <time>', 'last timestamp (µs or ISO date), exclusive', parseTime)
    .option('--when <json>', 'condition on labels, as in queries', parseJsonOption)
    .option('--src-token <token>', 'token for a source given as URL or context')
    .option('--dst-token <token>', 'token for a destination given as URL or context')
    .option(
      '--progress-interval <ms>',
      'spacing of progress lines without a terminal',
      (v) => Number(v),
      1000,
    )
    .option('-q, --quiet', 'no progress output')
    .action(
      act({ notFound: 'ferry bucket ls' }, async (cmd, [srcSpec, dstSpec]) => {
        const o = cmd.opts<CpOptions>();
        const json = outputOf(cmd).json;
        const src = await endpointOf(srcSpec!, cmd, o.srcToken);
        const dst = await endpointOf(dstSpec!, cmd, o.dstToken);
        if (src.kind === 'folder' && dst.kind === 'folder') {
          throw new CliError(
            'Both sides are folders; one of SRC and DST must be a server bucket.',
            EXIT.usage,
          );
        }
        const source = src.kind === 'server' ? await serverSource(src, o) : await folderSource(src.path, o);
        const counts: Counts = { copied: 0, bytes: 0, skipped: 0, failed: 0 };
        const errors: string[] = [];
        let sink: Sink;
        if (dst.kind === 'server') {
          await dst.client.createBucket(dst.bucket, {}, { existOk: true });
          sink = serverSink(dst.client.bucket(dst.bucket), counts, errors);
        } else {
          await mkdir(dst.path, { recursive: true });
          sink = folderSink(dst.path, counts);
        }
        const progress = createProgress({
          label: 'cp',
          unit: 'records',
          intervalMs: o.progressInterval,
          quiet: o.quiet,
        });
        let seen = 0;
        try {
          for await (const r of source.records()) {
            await sink.put(r);
            seen++;
            progress.update(seen, Math.max(source.total, seen), formatBytes(counts.bytes));
          }
          await sink.flush();
          progress.update(seen, seen, formatBytes(counts.bytes));
        } finally {
          progress.stop();
        }
        const summary = { ...counts, errors };
        if (json) printJson(summary);
        else
          process.stdout.write(
            `Copied ${counts.copied} records (${formatBytes(counts.bytes)}); ${counts.skipped} already there` +
              `${counts.failed ? `, ${counts.failed} refused` : ''}.\n`,
          );
        if (counts.failed > 0) {
          throw new CliError(`${counts.failed} records were refused:\n${errors.join('\n')}`, EXIT.error);
        }
      }),
    );
}
