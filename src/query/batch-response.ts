/**
 * Wire form of a read batch (api.md §10.5, §11.4): response headers plus the records in body
 * order, for the v1 (`/b/{b}/{e}/batch?q=`) and v2 (`/io/{b}/read`) read routes.
 */
import { encodeV1Headers } from '../protocol/batch-v1.js';
import { encodeV2Batch, LAST_HEADER } from '../protocol/batch-v2.js';
import type { StoredRecord } from '../storage/types.js';
import type { QueryBatch } from './query-manager.js';

/** Headers and body of one batch response. */
export interface BatchResponse {
  /**
   * `content-type: application/octet-stream`, `content-length` (sum of the record sizes, also
   * for HEAD and `only_metadata`), `x-reduct-last` and the per-record metadata headers.
   */
  headers: Record<string, string>;
  /** Records whose payloads form the body, in order (send none for HEAD / `only_metadata`). */
  body: StoredRecord[];
  /** Sum of the payload sizes. */
  contentLength: number;
}

/** Adds the headers every batch response has to `headers` (assigned, not spread: ~90 keys). */
function withCommon(
  headers: Record<string, string>,
  contentLength: number,
  last: boolean,
): Record<string, string> {
  headers['content-type'] = 'application/octet-stream';
  headers['content-length'] = String(contentLength);
  headers[LAST_HEADER] = last ? 'true' : 'false';
  return headers;
}

/** v1 batch response: `x-reduct-time-<ts>` headers, payloads in timestamp order. */
export function v1BatchResponse(batch: QueryBatch): BatchResponse {
  const body = batch.records
    .map((r) => r.record)
    .sort((a, b) => (a.meta.ts < b.meta.ts ? -1 : a.meta.ts > b.meta.ts ? 1 : 0));
  const labelsOf = new Map(batch.records.map((r) => [r.record, r.labels]));
  const contentLength = body.reduce((n, r) => n + r.meta.size, 0);
  const headers = encodeV1Headers(
    body.map((r) => ({
      ts: r.meta.ts,
      size: r.meta.size,
      contentType: r.meta.contentType,
      labels: labelsOf.get(r)!,
    })),
  );
  return { headers: withCommon(headers, contentLength, batch.last), body, contentLength };
}

/**
 * v2 batch response: entries renumbered by first timestamp, payloads grouped by entry index then
 * timestamp (§11.2). An empty batch yields `x-reduct-entries: ""`, `x-reduct-start-ts: 0`.
 */
export function v2BatchResponse(batch: QueryBatch): BatchResponse {
  const enc = encodeV2Batch(
    batch.records.map((r) => ({
      entry: r.record.meta.entry,
      ts: r.record.meta.ts,
      size: r.record.meta.size,
      contentType: r.record.meta.contentType,
      labels: r.labels,
    })),
  );
  const body = enc.order.map((i) => batch.records[i]!.record);
  return {
    headers: withCommon(enc.headers, enc.totalSize, batch.last),
    body,
    contentLength: enc.totalSize,
  };
}
