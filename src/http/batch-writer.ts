/**
 * Writes the records of one batch request (v1 or v2) from one body stream.
 *
 * The body is sliced into per-record async iterables in body order. Each record's write starts as
 * soon as the previous record's bytes have been consumed — not when it is durable — so the whole
 * batch lands in one group commit. A record whose write fails before consuming its bytes (409,
 * quota, …) has them skipped and is reported per record; the request itself still succeeds.
 */
import { Errors, type FerryError } from '../protocol/errors.js';
import type { Bucket, Labels, WriteOutcome } from '../storage/types.js';
import { checkMetaWrite, replaceOlderAttachments } from './attachments.js';
import type { ByteReader } from './body.js';
import { toFerryError } from './respond.js';

/** One record to write. */
export interface BatchWriteItem {
  entry: string;
  ts: bigint;
  size: number;
  contentType: string;
  labels: Labels;
  origin?: string;
  digest?: Buffer;
  /** A problem found before writing (e.g. invalid entry name): the bytes are skipped. */
  rejected?: FerryError;
}

/** Outcome of one record. */
export type BatchWriteResult = { outcome: WriteOutcome } | { error: FerryError };

/**
 * Writes `items` (in body order) from `reader` into `bucket`, or reports `bucketError` for every
 * record when the bucket cannot be used. Throws 400 when the body is shorter or longer than the
 * sum of the declared lengths (after every started write has settled).
 */
export async function writeBatch(
  bucket: Bucket | FerryError,
  items: readonly BatchWriteItem[],
  reader: ByteReader,
): Promise<BatchWriteResult[]> {
  const pending: Promise<BatchWriteResult>[] = [];
  let truncated = false;
  try {
    for (const item of items) {
      const slice = reader.slice(item.size);
      let failure: FerryError | undefined = item.rejected;
      if (!failure && !('write' in bucket)) failure = bucket;
      if (!failure) {
        try {
          checkMetaWrite(item.entry, item.labels);
        } catch (e) {
          failure = toFerryError(e);
        }
      }
      if (failure || !('write' in bucket)) {
        const error = failure ?? Errors.internal('no bucket');
        pending.push(Promise.resolve({ error }));
        await slice.skipRest();
      } else {
        const write = bucket
          .write(
            item.entry,
            item.ts,
            {
              size: item.size,
              contentType: item.contentType,
              labels: item.labels,
              origin: item.origin,
              digest: item.digest,
            },
            slice,
          )
          .then(
            async (outcome): Promise<BatchWriteResult> => {
              await replaceOlderAttachments(bucket, item.entry, item.ts, item.labels);
              return { outcome };
            },
            (e: unknown): BatchWriteResult => ({ error: toFerryError(e) }),
          );
        pending.push(write);
        // Next record as soon as this one's bytes are taken (or its write gave up early).
        await Promise.race([slice.done, write]);
        await slice.skipRest();
      }
      if (slice.truncated) {
        truncated = true;
        break;
      }
    }
  } finally {
    // Never leave a write unobserved, whatever happened to the body.
    await Promise.all(pending);
  }
  if (truncated) throw Errors.contentSmaller();
  if (!(await reader.atEnd())) throw Errors.contentBigger();
  return Promise.all(pending);
}
