/**
 * Single-record entry API (api.md §8): write, read/HEAD (by ts, latest, or `?q=`), label update,
 * removal of a record or an entry tree, entry rename.
 */
import { pipeline } from 'node:stream/promises';
import { Errors } from '../../protocol/errors.js';
import { isMetaEntry, validateEntryName } from '../../protocol/names.js';
import type { StoredRecord, Labels } from '../../storage/types.js';
import { checkMetaWrite } from '../attachments.js';
import { authenticated, readAccess, writeAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { optionalTs, readLabelHeaders, requireTs, setRecordHeaders } from '../headers.js';
import { checkContentType, checkOrigin } from '../../protocol/field-bounds.js';
import { parseU64 } from '../../protocol/json.js';
import { sendEmpty } from '../respond.js';
import { parseNewName } from './buckets.js';
import { queryIdParam } from './queries.js';

/**
 * Payload size of a single write: `x-reduct-content-length` (streamed/compressed bodies) or the
 * plain `Content-Length` of an uncompressed body; 422 when neither applies.
 */
export function declaredSize(ctx: RequestContext): number {
  const explicit = ctx.header('x-reduct-content-length');
  const plain = ctx.body.compressed ? undefined : ctx.header('content-length');
  const raw = explicit ?? plain;
  if (raw === undefined) throw Errors.contentLengthRequired();
  const size = parseU64(raw.trim());
  if (size === undefined || size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw Errors.contentLengthInvalid(raw);
  }
  return Number(size);
}

/**
 * `x-ferry-origin`: the instance id where a replicated record or update was first made. Call after
 * the route's access check. A record with an origin is never replicated to that instance (loop
 * prevention), so setting one is a statement about other instances that only a replication sender
 * may make: it needs a full-access token (or authentication disabled), else 403. Ordinary writers
 * could otherwise hide their records from any replica whose instance id they name.
 */
export function originHeader(ctx: RequestContext): string | undefined {
  const v = ctx.header('x-ferry-origin');
  if (v === undefined || v === '') return undefined;
  const principal = authenticated(ctx);
  if (!principal.fullAccess) throw Errors.originForbidden(principal.name);
  checkOrigin(v);
  return v;
}

/** Bodies below this size that arrived whole are handed to storage as one buffer (queued writes). */
const SMALL_BODY_BYTES = 64 * 1024 - 1;

/** POST /b/{bucket}/{entry}?ts= */
export async function writeRecord(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  const ts = requireTs(ctx.query);
  validateEntryName(entry, { allowMeta: true });
  const size = declaredSize(ctx);
  const labels = readLabelHeaders(ctx.req);
  checkMetaWrite(entry, labels);
  const contentType = ctx.header('content-type'); // storage applies the default
  if (contentType !== undefined) checkContentType(contentType);
  const origin = originHeader(ctx);
  const bucket = ctx.services.storage.bucket(bucketName);
  const payload =
    (size <= SMALL_BODY_BYTES ? await ctx.body.takeComplete(size) : undefined) ??
    ctx.body.reader().slice(size, true);
  await bucket.write(entry, ts, { size, contentType, labels, origin }, payload);
  ctx.body.markFinished();
  sendEmpty(ctx.res);
}

/** Streams one record as the response (api.md §8.2). HEAD sends the headers only. */
export async function sendRecord(
  ctx: RequestContext,
  record: StoredRecord,
  labels?: Labels,
  last?: boolean,
  onlyMetadata = false,
): Promise<void> {
  const { res } = ctx;
  setRecordHeaders(res, record.meta, labels);
  if (last !== undefined) res.setHeader('x-reduct-last', String(last));
  res.statusCode = 200;
  if (onlyMetadata && ctx.req.method !== 'HEAD') res.setHeader('content-length', 0);
  if (ctx.req.method === 'HEAD' || onlyMetadata || record.meta.size === 0) {
    res.end();
    return;
  }
  if (record.meta.size <= SMALL_RECORD) {
    // One write with the headers, without stream machinery (most records are small).
    res.end(await record.buffer());
    return;
  }
  await pipeline(record.stream(), res);
}

/** Records up to this size are read whole and sent in one write. */
const SMALL_RECORD = 256 * 1024;

/** GET|HEAD /b/{bucket}/{entry}[?ts=|?q=] */
export async function readRecord(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  readAccess(ctx, bucketName);
  validateEntryName(entry, { allowMeta: true });
  const id = queryIdParam(ctx);
  if (id !== undefined) {
    const batch = await ctx.services.queries.next(bucketName, id, {
      entry,
      head: ctx.req.method === 'HEAD',
      maxRecords: 1,
    });
    const first = batch.records[0];
    if (!first) throw Errors.noContent();
    await sendRecord(ctx, first.record, first.labels, batch.last, batch.onlyMetadata);
    return;
  }
  const ts = optionalTs(ctx.query);
  const record = await ctx.services.storage.bucket(bucketName).read(entry, ts);
  await sendRecord(ctx, record);
}

/** PATCH /b/{bucket}/{entry}?ts= — empty label value deletes the label. */
export async function updateRecord(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  const ts = requireTs(ctx.query);
  validateEntryName(entry, { allowMeta: true });
  const changes: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(readLabelHeaders(ctx.req))) changes[k] = v === '' ? null : v;
  const origin = originHeader(ctx);
  await ctx.services.storage
    .bucket(bucketName)
    .updateLabels(entry, ts, changes, origin ? { origin } : undefined);
  sendEmpty(ctx.res);
}

/** DELETE /b/{bucket}/{entry}[?ts=] */
export async function removeRecordOrEntry(
  ctx: RequestContext,
  bucketName: string,
  entry: string,
): Promise<void> {
  writeAccess(ctx, bucketName);
  validateEntryName(entry, { allowMeta: true });
  if (isMetaEntry(entry)) throw Errors.attachmentRemoveDirectly(entry);
  const ts = optionalTs(ctx.query);
  const bucket = ctx.services.storage.bucket(bucketName);
  if (ts === undefined) await bucket.removeEntry(entry);
  else await bucket.removeRecord(entry, ts);
  sendEmpty(ctx.res);
}

/** PUT /b/{bucket}/{entry}/rename */
export async function renameEntry(ctx: RequestContext, bucketName: string, entry: string): Promise<void> {
  writeAccess(ctx, bucketName);
  const newName = parseNewName(await ctx.json());
  validateEntryName(entry, { allowMeta: true });
  if (isMetaEntry(entry)) throw Errors.unprocessable(`Attachment entry '${entry}' can't be renamed directly`);
  validateEntryName(newName);
  await ctx.services.storage.bucket(bucketName).renameEntry(entry, newName);
  sendEmpty(ctx.res);
}
