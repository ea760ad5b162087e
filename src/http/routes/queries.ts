/**
 * Legacy entry-level queries (api.md §9): `GET|POST|DELETE /b/{bucket}/{entry}/q`.
 * Results are read through `GET /b/{b}/{e}?q=` (records.ts) or `…/batch?q=` (batch-v1.ts).
 */
import { Errors } from '../../protocol/errors.js';
import { validateEntryName } from '../../protocol/names.js';
import { assertWritableInstance, readAccess, writeAccess } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { QueryService } from '../services.js';

/** The query service, or 500 if the server was started without one. */
export function queryService(ctx: RequestContext): QueryService {
  const q = ctx.services.queries;
  if (!q) throw Errors.internal('Queries are not available');
  return q;
}

/** True when a QueryEntry body asks for a REMOVE. */
export function isRemoveQuery(body: unknown): boolean {
  return (
    typeof body === 'object' && body !== null && (body as Record<string, unknown>).query_type === 'REMOVE'
  );
}

/** GET /b/{bucket}/{entry}/q?start=&stop=&ttl=&continuous= */
export async function createQueryFromParams(
  ctx: RequestContext,
  bucket: string,
  entry: string,
): Promise<void> {
  readAccess(ctx, bucket);
  validateEntryName(entry, { allowMeta: true });
  const id = await queryService(ctx).createFromParams(bucket, entry, ctx.query);
  sendJson(ctx.res, { id });
}

/** POST /b/{bucket}/{entry}/q (QUERY → {id}, REMOVE → {removed_records}) */
export async function postEntryQuery(ctx: RequestContext, bucket: string, entry: string): Promise<void> {
  const body = await ctx.json();
  validateEntryName(entry, { allowMeta: true });
  if (isRemoveQuery(body)) {
    writeAccess(ctx, bucket);
    assertWritableInstance(ctx);
    const removed = await queryService(ctx).remove(bucket, body, entry);
    sendJson(ctx.res, { removed_records: removed });
  } else {
    readAccess(ctx, bucket);
    const id = await queryService(ctx).create(bucket, body, entry);
    sendJson(ctx.res, { id });
  }
}

/** DELETE /b/{bucket}/{entry}/q?start=&stop= */
export async function removeByParams(ctx: RequestContext, bucket: string, entry: string): Promise<void> {
  writeAccess(ctx, bucket);
  validateEntryName(entry, { allowMeta: true });
  const removed = await queryService(ctx).removeFromParams(bucket, entry, ctx.query);
  sendJson(ctx.res, { removed_records: removed });
}
