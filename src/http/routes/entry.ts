/**
 * Dispatcher for `/b/{bucket}/{*entry}` (api.md §3.1): entry names contain `/`, so the operation
 * is chosen by stripping a trailing `/batch`, `/q` or `/rename` from the matched path.
 */
import { Errors } from '../../protocol/errors.js';
import { assertWritableInstance } from '../auth-hook.js';
import type { RequestContext } from '../context.js';
import type { Method, Route } from '../router.js';
import { readBatchV1, removeBatchV1, updateBatchV1, writeBatchV1 } from './batch-v1.js';
import { createQueryFromParams, postEntryQuery, removeByParams } from './queries.js';
import { readRecord, removeRecordOrEntry, renameEntry, updateRecord, writeRecord } from './records.js';

type Op = 'record' | 'batch' | 'q' | 'rename';
type EntryHandler = (ctx: RequestContext, bucket: string, entry: string) => Promise<void>;

const SUFFIXES: ReadonlyArray<[string, Op]> = [
  ['/batch', 'batch'],
  ['/q', 'q'],
  ['/rename', 'rename'],
];

/** Splits the wildcard path into entry name and operation. */
export function splitEntryPath(path: string): { entry: string; op: Op } {
  for (const [suffix, op] of SUFFIXES) {
    if (path.length > suffix.length && path.endsWith(suffix))
      return { entry: path.slice(0, -suffix.length), op };
  }
  return { entry: path, op: 'record' };
}

const TABLE: Record<Method, Partial<Record<Op, EntryHandler>>> = {
  GET: { record: readRecord, batch: readBatchV1, q: createQueryFromParams },
  HEAD: { record: readRecord, batch: readBatchV1 },
  POST: { record: writeRecord, batch: writeBatchV1, q: postEntryQuery },
  PUT: { rename: renameEntry },
  PATCH: { record: updateRecord, batch: updateBatchV1 },
  DELETE: { record: removeRecordOrEntry, batch: removeBatchV1, q: removeByParams },
};

function dispatch(method: Method): (ctx: RequestContext) => Promise<void> {
  return async (ctx) => {
    // The router ignores a trailing '/', but an entry name must not end with one (api.md §3.7).
    if (ctx.path.endsWith('/')) throw Errors.invalidEntryName(ctx.param('*') + '/');
    const { entry, op } = splitEntryPath(ctx.param('*'));
    const handler = TABLE[method][op];
    if (!handler) throw Errors.methodNotAllowed();
    if (entry === '') throw Errors.notFound();
    // POST …/q may be a read-only QUERY (queries.ts guards REMOVE); other POSTs write.
    if (method === 'POST' && op !== 'q') assertWritableInstance(ctx);
    await handler(ctx, ctx.param('bucket'), entry);
  };
}

/** Routes of the entry API (single records, v1 batches, legacy queries, rename). */
export function entryRoutes(): Route[] {
  return (Object.keys(TABLE) as Method[]).map((method) => ({
    method,
    path: 'b/:bucket/*',
    handler: dispatch(method),
    mutating: !(method === 'GET' || method === 'HEAD' || method === 'POST'),
  }));
}
