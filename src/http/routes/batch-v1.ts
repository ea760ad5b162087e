/**
 * Batch protocol v1 on `/b/{bucket}/{entry}/batch` (api.md §10): write (also what ReductStore and
 * Ferry replication senders use, incl. chunked gzip/zstd bodies), label update, remove, read.
 *
 * Ferry extensions for replication between Ferry instances: `x-ferry-origin` (origin instance id
 * of every record) and `x-ferry-digest-<ts>` (hex content digest) on writes; records the
 * destination already holds identically are answered with `x-ferry-present-<ts>: 1` instead of an
 * error.
 */
import type { ServerResponse } from 'node:http';
import { Errors, FerryError } from '../../protocol/errors.js';
import {
  parseV1Batch,
  parseV1RemoveBatch,
  parseV1UpdateBatch,
  v1ErrorHeader,
} from '../../protocol/batch-v1.js';
import { isMetaEntry, validateEntryName } from '../../protocol/names.js';
import type { Bucket, Labels, StoredRecord } from '../../storage/types.js';
import { payloadChunks, STORED_PAYLOAD } from '../../storage/payload-chunks.js';
import { readAccess, writeAccess } from '../auth-hook.js';
import { writeBatch, type BatchWriteItem } from '../batch-writer.js';
import type { ByteReader } from '../body.js';
import {
  decodeRecordsTable,
  type DecodedTable,
  RECORDS_TABLE_CONTENT_TYPE,
  TABLE_PREFIX_BYTES,
  tableLength,
} from '../../protocol/records-table.js';
import type { RequestContext } from '../context.js';
import { parseU64 } from '../../protocol/json.js';
import { sendEmpty, toFerryError } from '../respond.js';
import { v1BatchResponse, type BatchResponse } from '../../query/batch-response.js';
import { queryIdParam } from './queries.js';
import { originHeader } from './records.js';

const DIGEST_PREFIX = 'x-ferry-digest-';
const HEX = /^[0-9a-fA-F]+$/;

/**
 * The declared body lengths of a batch: `x-reduct-content-length` and the `Content-Length` of an
 * uncompressed body, those present (none for chunked or compressed bodies without the former).
 */
export function declaredBatchLengths(ctx: RequestContext): number[] {
  const out: number[] = [];
  for (const n of [payloadLength(ctx), bodyLength(ctx)]) if (n !== undefined) out.push(n);
  return out;
}

/** A declared length header's value (422 when it is not a u64), undefined when absent. */
function declaredLength(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = parseU64(raw.trim());
  if (n === undefined) throw Errors.contentLengthInvalid(raw);
  return Number(n);
}

/** `x-reduct-content-length`: the sum of the record sizes, when declared. */
const payloadLength = (ctx: RequestContext): number | undefined =>
  declaredLength(ctx.header('x-reduct-content-length'));

/** `Content-Length` of an uncompressed body, when declared. */
const bodyLength = (ctx: RequestContext): number | undefined =>
  ctx.body.compressed ? undefined : declaredLength(ctx.header('content-length'));

/**
 * 422 when a declared body length does not match the sum of the record lengths. Checked before
 * any record is stored: every length the client declared must agree, so that a batch is either
 * refused whole or stored (a body of unknown length reports short records per record instead).
 */
export function checkBatchLength(declared: readonly number[], total: number): void {
  for (const n of declared) {
    if (n !== total) {
      throw Errors.unprocessable(`Content-length ${n} doesn't match the sum of record sizes ${total}`);
    }
  }
}

function readDigests(rawHeaders: readonly string[]): Map<bigint, Buffer> {
  const out = new Map<bigint, Buffer>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (!name.startsWith(DIGEST_PREFIX)) continue;
    const ts = parseU64(name.slice(DIGEST_PREFIX.length));
    const value = rawHeaders[i + 1]!.trim();
    if (ts !== undefined && HEX.test(value) && value.length % 2 === 0) out.set(ts, Buffer.from(value, 'hex'));
  }
  return out;
}

/** POST /b/{bucket}/{entry}/batch (also Ferry's records-table form, records-table.ts) */
export async function writeBatchV1(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  validateEntryName(entry, { allowMeta: true });
  if (ctx.header('content-type') === RECORDS_TABLE_CONTENT_TYPE)
    return writeTableBatch(ctx, bucketName, entry);
  const batch = parseV1Batch(ctx.req.rawHeaders);
  checkBatchLength(declaredBatchLengths(ctx), batch.totalSize);
  const origin = originHeader(ctx);
  const digests = readDigests(ctx.req.rawHeaders);
  const items: BatchWriteItem[] = batch.records.map((r) => ({
    entry,
    ts: r.ts,
    opts: { size: r.size, contentType: r.contentType, labels: r.labels, origin, digest: digests.get(r.ts) },
  }));
  await writeAndAnswer(ctx, bucketName, items, ctx.body.reader());
}

/**
 * A records-table batch: the table is read from the body (bounded, checked) before any record is
 * stored; then the records go exactly as a v1 batch's, with the same answer.
 */
async function writeTableBatch(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  const reader = ctx.body.reader();
  const { table, bytes } = await readTable(reader);
  const payloads = payloadLength(ctx);
  if (payloads !== undefined) checkBatchLength([payloads], table.totalSize);
  const whole = bodyLength(ctx);
  if (whole !== undefined && whole !== bytes + table.totalSize)
    throw Errors.unprocessable(
      `Content-length ${whole} doesn't match the table and the sum of record sizes ${bytes + table.totalSize}`,
    );
  const origin = originHeader(ctx);
  const items: BatchWriteItem[] = table.records.map((r) => ({
    entry,
    ts: r.ts,
    opts: { size: r.size, contentType: r.contentType, labels: r.labels as Labels, origin, digest: r.digest },
  }));
  await writeAndAnswer(ctx, bucketName, items, reader);
}

/**
 * The label updates of a records-table body (sizes and content types are not used): an empty
 * value removes its label, as `k=` does in a v1 update header.
 */
async function tableUpdates(
  ctx: RequestContext,
): Promise<Array<{ ts: bigint; changes: Record<string, string | null> }>> {
  const reader = ctx.body.reader();
  const { table } = await readTable(reader);
  if (!(await reader.atEnd()))
    throw Errors.unprocessable('A label update carries no payload: the body must end after its table');
  ctx.body.markFinished();
  return table.records.map((r) => {
    const changes: Record<string, string | null> = {};
    for (const k in r.labels) changes[k] = r.labels[k] === '' ? null : r.labels[k]!;
    return { ts: r.ts, changes };
  });
}

/** The records table at the start of a body, checked; `bytes`: with its prefix. */
async function readTable(reader: ByteReader): Promise<{ table: DecodedTable; bytes: number }> {
  const n = tableLength(await readExactly(reader, TABLE_PREFIX_BYTES));
  return { table: decodeRecordsTable(await readExactly(reader, n)), bytes: TABLE_PREFIX_BYTES + n };
}

/** Exactly `n` bytes of the body (422 when it ends first), joined once. */
async function readExactly(reader: ByteReader, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const chunk = await reader.read(n - got);
    if (!chunk) throw Errors.unprocessable('Invalid records table: the body ends inside it');
    parts.push(chunk);
    got += chunk.length;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

/** Writes a batch's records and answers with one header per record that was not simply written. */
async function writeAndAnswer(
  ctx: RequestContext,
  bucketName: string,
  items: BatchWriteItem[],
  reader: ByteReader,
): Promise<void> {
  let bucket: Bucket | FerryError;
  try {
    bucket = ctx.services.storage.bucket(bucketName);
  } catch (e) {
    bucket = toFerryError(e);
  }
  const results = await writeBatch(bucket, items, reader);
  ctx.body.markFinished();
  results.forEach((result, i) => {
    const ts = items[i]!.ts;
    if ('error' in result) ctx.res.setHeader(...v1ErrorHeader(ts, result.error));
    else if (result.outcome === 'already_present') ctx.res.setHeader(`x-ferry-present-${ts}`, '1');
  });
  sendEmpty(ctx.res);
}

/** PATCH /b/{bucket}/{entry}/batch — a missing entry fails the whole request with 404. */
export async function updateBatchV1(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  validateEntryName(entry, { allowMeta: true });
  const updates =
    ctx.header('content-type') === RECORDS_TABLE_CONTENT_TYPE
      ? await tableUpdates(ctx)
      : parseV1UpdateBatch(ctx.req.rawHeaders);
  const bucket = ctx.services.storage.bucket(bucketName);
  if (!bucket.hasEntry(entry)) throw Errors.entryNotFound(entry, bucketName);
  const origin = originHeader(ctx);
  const opts = origin ? { origin } : undefined;
  // All updates in flight together so that they share one group commit.
  const results = await Promise.all(
    updates.map((u) => bucket.updateLabels(entry, u.ts, u.changes, opts).then(() => undefined, toFerryError)),
  );
  results.forEach((err, i) => {
    if (err) ctx.res.setHeader(...v1ErrorHeader(updates[i]!.ts, err));
  });
  sendEmpty(ctx.res);
}

/** DELETE /b/{bucket}/{entry}/batch */
export async function removeBatchV1(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  validateEntryName(entry, { allowMeta: true });
  if (isMetaEntry(entry)) throw Errors.attachmentRemoveDirectly(entry);
  const timestamps = parseV1RemoveBatch(ctx.req.rawHeaders);
  const bucket = ctx.services.storage.bucket(bucketName);
  const results = await Promise.all(
    timestamps.map((ts) => bucket.removeRecord(entry, ts).then(() => undefined, toFerryError)),
  );
  results.forEach((err, i) => {
    if (err) ctx.res.setHeader(...v1ErrorHeader(timestamps[i]!, err));
  });
  sendEmpty(ctx.res);
}

/** GET|HEAD /b/{bucket}/{entry}/batch?q= */
export async function readBatchV1(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  readAccess(ctx, bucketName);
  const id = queryIdParam(ctx);
  if (id === undefined) throw Errors.unprocessable("'q' parameter is required for batched reads");
  const head = ctx.req.method === 'HEAD';
  const batch = await ctx.services.queries.next(bucketName, id, { entry, head });
  if (batch.records.length === 0 && batch.last) throw Errors.noContent();
  await sendBatch(ctx.res, v1BatchResponse(batch), head, batch.onlyMetadata);
}

/**
 * Sends a read batch (v1 or v2). With `only_metadata` on a GET the record headers keep the real
 * sizes and the body stays empty (HEAD-like); HEAD keeps the real `content-length`.
 */
export async function sendBatch(
  res: ServerResponse,
  out: BatchResponse,
  head: boolean,
  onlyMetadata: boolean,
): Promise<void> {
  for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v);
  if (!head && onlyMetadata) res.setHeader('content-length', 0);
  res.statusCode = 200;
  if (head || onlyMetadata) res.end();
  else await streamRecords(res, out.body);
}

/** Payloads up to 256 KiB are read whole and sent in ~1 MiB writes (one syscall for many records). */
const CHUNKS = { smallBytes: 256 * 1024, chunkBytes: 1024 * 1024 };

/**
 * Resolves at the next 'drain' or 'close' of `res` and removes both listeners: a long response
 * waits for drain many times, and listeners left behind by each wait would pile up until it ends.
 */
export function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Writes the payloads of `records` into `res` one after the other (with back-pressure), then ends it. */
export async function streamRecords(res: ServerResponse, records: readonly StoredRecord[]): Promise<void> {
  for await (const chunk of payloadChunks(records, STORED_PAYLOAD, CHUNKS)) {
    if (!res.write(chunk)) {
      await drainOrClose(res);
      if (res.destroyed) throw new FerryError(500, 'Client closed the connection');
    }
  }
  res.end();
}
