/**
 * Small header and query-parameter codecs shared by the record routes (api.md §8).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Errors } from '../protocol/errors.js';
import { checkLabelSet } from '../protocol/field-bounds.js';
import { parseU64 } from '../protocol/json.js';
import type { Labels, RecordMeta } from '../storage/types.js';

const LABEL_PREFIX = 'x-reduct-label-';

/** The mandatory `ts` query parameter (422 `'ts' parameter is required` / `… must be …`). */
export function requireTs(query: URLSearchParams): bigint {
  const raw = query.get('ts');
  if (raw === null) throw Errors.tsRequired();
  return parseTsValue(raw);
}

/** An optional `ts` query parameter. */
export function optionalTs(query: URLSearchParams): bigint | undefined {
  const raw = query.get('ts');
  return raw === null ? undefined : parseTsValue(raw);
}

function parseTsValue(raw: string): bigint {
  const ts = parseU64(raw);
  if (ts === undefined) throw Errors.tsInvalid();
  return ts;
}

/**
 * Labels from `x-reduct-label-<name>` headers (names lower-case, values as sent). Scans
 * `rawHeaders` so that values keep their exact bytes and repeated headers are not joined.
 * 422 when they break a bound of `protocol/limits.ts`.
 */
export function readLabelHeaders(req: IncomingMessage): Labels {
  const labels: Labels = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(LABEL_PREFIX) && name.length > LABEL_PREFIX.length) {
      labels[name.slice(LABEL_PREFIX.length)] = raw[i + 1]!;
    }
  }
  checkLabelSet(labels);
  return labels;
}

/** Sets the single-record response headers of api.md §8.2 (without the body). */
export function setRecordHeaders(res: ServerResponse, meta: RecordMeta, labels: Labels = meta.labels): void {
  res.setHeader('content-type', meta.contentType || 'application/octet-stream');
  res.setHeader('content-length', meta.size);
  res.setHeader('content-disposition', 'attachment');
  res.setHeader('x-reduct-time', meta.ts.toString());
  res.setHeader('x-reduct-entry', meta.entry);
  for (const [name, value] of Object.entries(labels)) {
    res.setHeader(LABEL_PREFIX + name, value);
  }
}
