/**
 * IO API — batch protocol v2 on `/io/{bucket}/…` (api.md §11): bucket-level queries and their
 * batched reads, multi-entry write, label update and remove.
 */
import {
  parseV2Batch,
  v2ErrorHeader,
  ENTRIES_HEADER,
  QUERY_ID_HEADER,
  START_TS_HEADER,
} from '../../protocol/batch-v2.js';
import { Errors, type FerryError } from '../../protocol/errors.js';
import { isMetaEntry, isValidEntryName } from '../../protocol/names.js';
import { readAccess, writeAccess } from '../auth-hook.js';
import { writeBatch, type BatchWriteItem } from '../batch-writer.js';
import type { RequestContext } from '../context.js';
import { parseU64 } from '../../protocol/json.js';
import { sendEmpty, toFerryError } from '../respond.js';
import type { Route } from '../router.js';
import { checkBatchLength, declaredBatchLengths, sendBatch } from './batch-v1.js';
import { v2BatchResponse } from '../../query/batch-response.js';
import { answerQueryBody, readQueryBody } from './queries.js';
import { originHeader } from './records.js';

/** The 422 of an invalid entry name (reported per record, not for the request), or undefined. */
function entryNameError(entry: string): FerryError | undefined {
  return isValidEntryName(entry, { allowMeta: true }) ? undefined : Errors.invalidEntryName(entry);
}

/** Routes of the IO API. */
export function ioRoutes(): Route[] {
  return [
    {
      method: 'POST',
      path: 'io/:bucket/q',
      mutating: false,
      handler: async (ctx) => {
        const bucket = ctx.param('bucket');
        await answerQueryBody(ctx, bucket, await readQueryBody(ctx, bucket));
      },
    },
    { method: ['GET', 'HEAD'], path: 'io/:bucket/read', handler: readBatchV2 },
    { method: 'POST', path: 'io/:bucket/write', handler: writeBatchV2 },
    { method: 'PATCH', path: 'io/:bucket/update', handler: updateBatchV2 },
    { method: 'DELETE', path: 'io/:bucket/remove', handler: removeBatchV2 },
  ];
}

async function readBatchV2(ctx: RequestContext): Promise<void> {
  const bucket = ctx.param('bucket');
  readAccess(ctx, bucket);
  const raw = ctx.header(QUERY_ID_HEADER);
  if (raw === undefined) throw Errors.unprocessable('x-reduct-query-id header is required for batched reads');
  const id = parseU64(raw.trim());
  if (id === undefined) throw Errors.unprocessable('Invalid query id');
  const head = ctx.req.method === 'HEAD';
  const batch = await ctx.services.queries.next(bucket, id, { head });
  if (batch.records.length === 0 && batch.last) throw Errors.noContent();
  await sendBatch(ctx.res, v2BatchResponse(batch), head, batch.onlyMetadata);
}

function echoBatchHeaders(ctx: RequestContext): void {
  const entries = ctx.header(ENTRIES_HEADER);
  const start = ctx.header(START_TS_HEADER);
  if (entries !== undefined) ctx.res.setHeader(ENTRIES_HEADER, entries);
  if (start !== undefined) ctx.res.setHeader(START_TS_HEADER, start);
}

async function writeBatchV2(ctx: RequestContext): Promise<void> {
  const bucketName = ctx.param('bucket');
  writeAccess(ctx, bucketName);
  const batch = parseV2Batch(ctx.req.rawHeaders);
  const declared = declaredBatchLengths(ctx);
  if (declared.length === 0 && !ctx.body.compressed) throw Errors.contentLengthRequired();
  checkBatchLength(declared, batch.totalSize);
  const bucket = ctx.services.storage.bucket(bucketName);
  const origin = originHeader(ctx);
  const invalid = new Map(batch.entries.map((e) => [e, entryNameError(e)]));
  const items: BatchWriteItem[] = batch.records.map((r) => ({
    entry: r.entry,
    ts: r.ts,
    opts: { size: r.size, contentType: r.contentType, labels: r.labels, origin },
    rejected: invalid.get(r.entry),
  }));
  const results = await writeBatch(bucket, items, ctx.body.reader());
  ctx.body.markFinished();
  echoBatchHeaders(ctx);
  results.forEach((result, i) => {
    if ('error' in result) {
      const r = batch.records[i]!;
      ctx.res.setHeader(...v2ErrorHeader(r.entryIndex, r.delta, result.error));
    }
  });
  sendEmpty(ctx.res);
}

async function updateBatchV2(ctx: RequestContext): Promise<void> {
  const bucketName = ctx.param('bucket');
  writeAccess(ctx, bucketName);
  const batch = parseV2Batch(ctx.req.rawHeaders);
  const bucket = ctx.services.storage.bucket(bucketName);
  const origin = originHeader(ctx);
  const opts = origin ? { origin } : undefined;
  const results = await Promise.all(
    batch.records.map((r) => {
      const changes: Record<string, string | null> = { ...r.labels };
      for (const name of r.removed) changes[name] = null;
      return bucket.updateLabels(r.entry, r.ts, changes, opts).then(() => undefined, toFerryError);
    }),
  );
  echoBatchHeaders(ctx);
  results.forEach((err, i) => {
    const r = batch.records[i]!;
    if (err) ctx.res.setHeader(...v2ErrorHeader(r.entryIndex, r.delta, err));
  });
  sendEmpty(ctx.res);
}

async function removeBatchV2(ctx: RequestContext): Promise<void> {
  const bucketName = ctx.param('bucket');
  writeAccess(ctx, bucketName);
  const batch = parseV2Batch(ctx.req.rawHeaders, { ignoreValues: true });
  const meta = batch.entries.find((e) => isMetaEntry(e));
  if (meta !== undefined) throw Errors.attachmentRemoveDirectly(meta);
  const bucket = ctx.services.storage.bucket(bucketName);
  const results = await Promise.all(
    batch.records.map((r) => bucket.removeRecord(r.entry, r.ts).then(() => undefined, toFerryError)),
  );
  echoBatchHeaders(ctx);
  results.forEach((err, i) => {
    const r = batch.records[i]!;
    if (err) ctx.res.setHeader(...v2ErrorHeader(r.entryIndex, r.delta, err));
  });
  sendEmpty(ctx.res);
}
