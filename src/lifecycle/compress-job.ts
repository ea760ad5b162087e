/**
 * One run of a `compress` lifecycle policy (api.md §16): compresses the sealed blocks of the
 * matching entries whose records are all older than `older_than` (storage/block-compression.ts:
 * zstd frames, transparent to every reader, sizes unchanged), within one window of data time of at
 * most `processing_interval` (job-window.ts), a block at a time.
 *
 * - A block belongs to the window its id (first timestamp) lies in; a block that is not sealed yet
 *   (the newest of its entry) or holds records newer than the cut-off is left for a later pass.
 * - Crash safety: each block's compression is atomic (a whole plain or a whole compressed data file
 *   survives a SIGKILL), and the progress (entry, next block id) is persisted while the run goes, so
 *   a resumed run carries on; compressing a block twice is a no-op.
 * - The encoding runs on a worker thread; after each block the job pauses as long as it took ×
 *   `pace`, so that the disk and the second core stay mostly available to clients.
 * - Compression changes no record, so replication needs no protection from it: pending records
 *   ship from the compressed block byte for byte.
 * - `dry_run` counts the blocks, records and bytes it would compress and changes nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bucket, Storage } from '../storage/types.js';
import { PROGRESS_EVERY_MS } from './delete-job.js';
import { closeWindow, openWindow, policyEntries, type JobRun } from './job-window.js';

/**
 * Pause after each block, as a multiple of the time it took. Compressing a block reads, writes
 * and fsyncs megabytes at once; at the delete job's 0.5, bench:compress (1 GB, 8 MB blocks, a
 * 2-core VM at load ~30) saw the writers' p99 grow 3.05×.
 */
export const COMPRESS_PACE = 1.5;

/** Inputs of one run. */
export interface CompressJobOptions extends JobRun {
  storage: Storage;
  /** Pause after each block, as a multiple of the time it took (default COMPRESS_PACE). */
  pace?: number;
}

/** What one run did. */
export interface CompressJobResult {
  /** Records in the blocks compressed (or that would be). */
  records: number;
  /** Blocks looked at. */
  scanned: number;
  blocks: number;
  rawBytes: number;
  storedBytes: number;
  window: { start: bigint; stop: bigint; cutoff: bigint } | null;
  caughtUp: boolean;
  resumed: boolean;
  interrupted: boolean;
}

/** The oldest block id at or after `from` and before `stop` in any of the entries. */
function firstBlock(b: Bucket, entries: string[], from: bigint, stop: bigint): bigint | undefined {
  let first: bigint | undefined;
  for (const e of entries) {
    const [blk] = b.blocks(e, from, first ?? stop);
    if (blk) first = blk.id;
  }
  return first;
}

/** Runs the job once. Throws storage errors (the progress made so far is persisted first). */
export async function runCompressJob(opts: CompressJobOptions): Promise<CompressJobResult> {
  const { storage, settings, dryRun } = opts;
  const pace = opts.pace ?? COMPRESS_PACE;
  const b = storage.bucket(settings.bucket);
  const entries = policyEntries(b, settings);
  const opened = await openWindow(opts, (from, cutoff) =>
    Promise.resolve(firstBlock(b, entries, from, cutoff)),
  );
  if (!opened) {
    return {
      records: 0,
      scanned: 0,
      blocks: 0,
      rawBytes: 0,
      storedBytes: 0,
      window: null,
      caughtUp: true,
      resumed: false,
      interrupted: false,
    };
  }
  const { w, resumed } = opened;
  w.blocks ??= 0;
  w.raw_bytes ??= 0;
  w.stored_bytes ??= 0;
  let savedAt = performance.now();
  let interrupted = false;

  outer: for (const entry of entries) {
    if (w.entry !== null && entry < w.entry) continue;
    const from = w.entry === entry ? w.ts : w.start;
    for (const blk of b.blocks(entry, from, w.stop)) {
      w.scanned++;
      if (blk.compressed || !blk.sealed || blk.records === 0 || blk.maxTs >= w.cutoff) continue;
      const t0 = performance.now();
      if (dryRun) {
        w.removed += blk.records;
        w.blocks++;
        w.raw_bytes += blk.rawBytes;
        continue;
      }
      try {
        const done = await b.compressBlock(entry, blk.id, w.cutoff);
        if (done) {
          w.removed += done.records;
          w.blocks++;
          w.raw_bytes += done.raw;
          w.stored_bytes += done.stored;
        }
      } catch (e) {
        await opts.saveState(false).catch(() => undefined);
        throw e;
      }
      w.entry = entry;
      w.ts = blk.id + 1n;
      if (performance.now() - savedAt >= PROGRESS_EVERY_MS) {
        await opts.saveState(false);
        savedAt = performance.now();
      }
      await sleep(Math.max(1, (performance.now() - t0) * pace));
      if (opts.aborted()) {
        interrupted = true;
        break outer;
      }
    }
    w.entry = entry;
    w.ts = w.stop;
  }

  await closeWindow(opts, w, interrupted);
  return {
    records: w.removed,
    scanned: w.scanned,
    blocks: w.blocks,
    rawBytes: w.raw_bytes,
    storedBytes: w.stored_bytes,
    window: { start: w.start, stop: w.stop, cutoff: w.cutoff },
    caughtUp: !interrupted && w.stop >= w.cutoff,
    resumed,
    interrupted,
  };
}
