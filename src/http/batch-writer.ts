/**
 * Writes the records of one batch request (v1 or v2) from one body stream.
 *
 * The body is sliced into per-record async iterables in body order. Each record's write starts as
 * soon as the previous record's bytes have been consumed — not when it is durable. Payloads go to
 * their block files as they arrive, but the records are committed together once the body is read
 * (an `AtomicBatch`): one commit, all or nothing after a crash and at every destination, in parts
 * of at most MAX_ATOMIC_BATCH_BYTES. A record whose write fails before consuming its bytes (409,
 * quota, …) has them skipped, is reported per record and is not part of the commit; the request
 * itself still succeeds.
 */
import { Errors, isFerryError, type FerryError } from '../protocol/errors.js';
import { AtomicBatch, type BatchTicket } from '../storage/atomic-batch.js';
import type { BatchItem, Bucket, Labels, WriteOptions, WriteOutcome } from '../storage/types.js';
import { isMetaEntry } from '../protocol/names.js';
import { checkMetaWrite } from './attachments.js';
import type { ByteReader } from './body.js';
import { toFerryError } from './respond.js';

/** Slot filled in by `flushRun` (never returned). */
const PLACEHOLDER: BatchWriteResult = { outcome: 'written' };
const OUTCOMES: Record<WriteOutcome, BatchWriteResult> = {
  written: { outcome: 'written' },
  already_present: { outcome: 'already_present' },
};

/**
 * Records up to this size are gathered across chunk boundaries to stay on the fast path. Larger ones
 * are written from the socket chunks as they are (no copy): gathering them cost more memory than it
 * saved CPU (64 KiB batches: 110 instead of 186 MB RSS, and faster).
 */
const JOIN_LIMIT = 16 * 1024;

/**
 * One record to write (storage's batch item without its payload, which the body delivers). The
 * writer sets `opts.batch` (the record's place in the request's atomic batch).
 */
export interface BatchWriteItem {
  entry: string;
  ts: bigint;
  opts: WriteOptions & { labels: Labels };
  /** A problem found before writing (e.g. invalid entry name): the bytes are skipped. */
  rejected?: FerryError;
}

/** Outcome of one record. */
export type BatchWriteResult = { outcome: WriteOutcome } | { error: FerryError };

/**
 * Writes `items` (in body order) from `reader` into `bucket`, or reports the error for every
 * record when `bucket` is one (the bucket cannot be used). A body that ends early (its length was
 * not known in advance: chunked or compressed) is reported per record: the records that arrived
 * whole are stored, the others get 400 `Content is smaller than in content-length`; never a
 * whole-request error after records were stored. A body longer than the declared lengths fails
 * the last record (it is written through an exact slice, so its write fails before it is durable)
 * and is reported per record; a whole-request 400 only when nothing was stored.
 */
export async function writeBatch(
  bucket: Bucket | FerryError,
  items: readonly BatchWriteItem[],
  reader: ByteReader,
): Promise<BatchWriteResult[]> {
  if (isFerryError(bucket)) return rejectAll(bucket, items, reader);
  const pending: Array<Promise<BatchWriteResult> | BatchWriteResult> = [];
  const batch = new AtomicBatch();
  /** Index of the first record whose bytes did not all arrive. */
  let truncatedAt = -1;
  // Records whose bytes are all in the chunk already received go to storage together, as one
  // `writeMany` (one pass, one group-commit entry); others stream one by one.
  let run: BatchItem[] = [];
  let runIndex: number[] = [];
  let runTicket: BatchTicket | undefined;
  const runs: Promise<void>[] = [];
  const flushRun = (): void => {
    if (run.length === 0) return;
    const current = run;
    const indexes = runIndex;
    const ticket = runTicket!;
    run = [];
    runIndex = [];
    runTicket = undefined;
    // One promise per run; per-record results are filled in when it settles.
    runs.push(
      bucket
        .writeMany(current)
        .then((results) => {
          for (let k = 0; k < current.length; k++) {
            const r = results[k]!;
            pending[indexes[k]!] = typeof r === 'string' ? OUTCOMES[r] : { error: r };
          }
        })
        .finally(() => ticket.leave()),
    );
  };
  const last = items.length - 1;
  try {
    for (let i = 0; i <= last; i++) {
      const item = items[i]!;
      const size = item.opts.size;
      if (i === last && !item.rejected && size === 0 && !(await reader.atEnd())) {
        // an empty last record cannot check what follows it through its slice
        pending.push({ error: Errors.contentBigger() });
        break;
      }
      // The last record goes through an exact slice: bytes after it fail its own write.
      if (i < last && !item.rejected && size > 0 && !isMetaEntry(item.entry)) {
        if (!reader.takeBufferedPossible(size) && size <= JOIN_LIMIT) await reader.fill(size);
        const whole = reader.takeBuffered(size);
        if (whole) {
          // set in place, not spread into a copy: a copy per record cost ~10% of the batch path
          item.opts.batch = runTicket ??= batch.ticket();
          run.push({ entry: item.entry, ts: item.ts, opts: item.opts, payload: whole });
          runIndex.push(pending.length);
          pending.push(PLACEHOLDER);
          continue;
        }
      }
      flushRun();
      const slice = reader.slice(size, i === last);
      if (item.rejected) {
        pending.push(Promise.resolve({ error: item.rejected }));
        await slice.skipRest();
      } else {
        const write = writeOne(bucket, batch, item, slice);
        pending.push(write);
        // Next record as soon as this one's bytes are taken (or its write gave up early).
        await Promise.race([slice.done, write]);
        await slice.skipRest();
      }
      if (slice.truncated) {
        truncatedAt = pending.length - 1;
        break;
      }
    }
  } finally {
    flushRun();
    batch.seal();
    // Never leave a write unobserved, whatever happened to the body.
    await Promise.all(runs);
    await Promise.all(pending);
  }
  const results = await Promise.all(pending);
  if (truncatedAt >= 0) {
    const short: BatchWriteResult = { error: Errors.contentSmaller() };
    if (!('error' in results[truncatedAt]!)) results[truncatedAt] = short;
    while (results.length < items.length) results.push(short);
    return results;
  }
  if (!(await reader.atEnd())) {
    if (results.every((r) => 'error' in r)) throw Errors.contentBigger();
    // Something was stored: the last record (which was not) carries the error.
    if (!('error' in results[last]!)) throw new Error('batch: last record stored despite extra bytes');
    results[last] = { error: Errors.contentBigger() };
  }
  return results;
}

/**
 * `writeBatch` for a bucket that cannot be used: every record reports `error` (or its own
 * rejection), and the body is still read through so that its length is checked the same way.
 */
async function rejectAll(
  error: FerryError,
  items: readonly BatchWriteItem[],
  reader: ByteReader,
): Promise<BatchWriteResult[]> {
  const results: BatchWriteResult[] = [];
  for (const item of items) {
    const slice = reader.slice(item.opts.size);
    results.push({ error: item.rejected ?? error });
    await slice.skipRest();
    if (slice.truncated) {
      // nothing was stored: every record keeps its own error, as in writeBatch
      for (let k = results.length; k < items.length; k++)
        results.push({ error: items[k]!.rejected ?? error });
      return results;
    }
  }
  if (!(await reader.atEnd())) throw Errors.contentBigger();
  return results;
}

function writeOne(
  bucket: Bucket,
  batch: AtomicBatch,
  item: BatchWriteItem,
  payload: Buffer | AsyncIterable<Buffer>,
): Promise<BatchWriteResult> {
  let checked: FerryError | undefined;
  try {
    checkMetaWrite(item.entry, item.opts.labels);
  } catch (e) {
    checked = toFerryError(e);
  }
  if (checked) return Promise.resolve({ error: checked });
  const ticket = batch.ticket();
  return bucket
    .write(item.entry, item.ts, Object.assign(item.opts, { batch: ticket }), payload)
    .then(
      (outcome): BatchWriteResult => ({ outcome }),
      (e: unknown): BatchWriteResult => ({ error: toFerryError(e) }),
    )
    .finally(() => ticket.leave());
}
