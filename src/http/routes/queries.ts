/**
 * Legacy entry-level queries (api.md §9): `GET|POST|DELETE /b/{bucket}/{entry}/q`.
 * Results are read through `GET /b/{b}/{e}?q=` (records.ts) or `…/batch?q=` (batch-v1.ts).
 * The QueryEntry body handling is shared with `POST /io/{bucket}/q` (io.ts).
 */
import { Errors } from '../../protocol/errors.js';
import { parseU64 } from '../../protocol/json.js';
import { validateEntryName } from '../../protocol/names.js';
import { assertWritableInstance, readAccess, readOrWriteAccess, writeAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

/** True when a QueryEntry body asks for a REMOVE. */
function isRemoveQuery(body: unknown): boolean {
  return (
    typeof body === 'object' && body !== null && (body as Record<string, unknown>).query_type === 'REMOVE'
  );
}

/**
 * Answers a QueryEntry body: a REMOVE (write access, refused on a replica) with
 * `{removed_records}`, anything else (read access) with the `{id}` of the created query. `entry`
 * makes it an entry-level query (§9), otherwise it is bucket-level (§11.3).
 */
export async function answerQueryBody(
  ctx: RequestContext,
  bucket: string,
  body: unknown,
  entry?: string,
): Promise<void> {
  const queries = ctx.services.queries;
  if (isRemoveQuery(body)) {
    writeAccess(ctx, bucket);
    assertWritableInstance(ctx);
    const removed = await queries.remove(bucket, body, entry);
    sendJson(ctx.res, { removed_records: removed });
  } else {
    const { name } = readAccess(ctx, bucket);
    const id = await queries.create(bucket, body, entry, name);
    sendJson(ctx.res, { id });
  }
}

/**
 * Reads the QueryEntry body of a query route once the caller may read or write `bucket` (401 /
 * 403 before any body byte is read); `answerQueryBody` then checks the exact permission.
 */
export async function readQueryBody(ctx: RequestContext, bucket: string): Promise<unknown> {
  readOrWriteAccess(ctx, bucket);
  return ctx.json();
}

/** The query id of the `?q=` parameter: undefined when absent, 422 when it is not a u64. */
export function queryIdParam(ctx: RequestContext): bigint | undefined {
  const q = ctx.query.get('q');
  if (q === null) return undefined;
  const id = parseU64(q);
  if (id === undefined) throw Errors.queryIdParamInvalid();
  return id;
}

/** GET /b/{bucket}/{entry}/q?start=&stop=&ttl=&continuous= */
export async function createQueryFromParams(
  ctx: RequestContext,
  bucket: string,
  entry: string,
): Promise<void> {
  const { name } = readAccess(ctx, bucket);
  validateEntryName(entry, { allowMeta: true });
  const id = await ctx.services.queries.createFromParams(bucket, entry, ctx.query, name);
  sendJson(ctx.res, { id });
}

/** POST /b/{bucket}/{entry}/q (QUERY → {id}, REMOVE → {removed_records}) */
export async function postEntryQuery(ctx: RequestContext, bucket: string, entry: string): Promise<void> {
  const body = await readQueryBody(ctx, bucket);
  validateEntryName(entry, { allowMeta: true });
  await answerQueryBody(ctx, bucket, body, entry);
}

/** DELETE /b/{bucket}/{entry}/q?start=&stop= */
export async function removeByParams(ctx: RequestContext, bucket: string, entry: string): Promise<void> {
  writeAccess(ctx, bucket);
  validateEntryName(entry, { allowMeta: true });
  const removed = await ctx.services.queries.removeFromParams(bucket, entry, ctx.query);
  sendJson(ctx.res, { removed_records: removed });
}
