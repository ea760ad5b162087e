/**
 * One run of a `delete` lifecycle policy (api.md §16): removes the records of the matching entries
 * (and `when`) that are older than `older_than`, within one window of data time of at most
 * `processing_interval`, so that a first run over years of data works through them a window per
 * run instead of stalling the server.
 *
 * - Windows: a run starts at the policy's cursor (null = the oldest record), processes
 *   [start, min(start + processing_interval, cut-off)) and moves the cursor to the window's end;
 *   once a window reaches the cut-off the cursor goes back to null, so the next pass also sees
 *   records that were kept earlier (pending replication) or written late with old timestamps.
 * - Crash safety: the window and the progress in it (entry, timestamp) are persisted while the run
 *   goes; a run interrupted by SIGKILL is resumed from there. Removing a record twice is harmless
 *   (the 404 of an already removed record is ignored), so a lost progress update only means a few
 *   records are looked at again.
 * - Removals are batched: up to `batchSize` `removeRecord` calls are in flight together and share
 *   the engine's group commits; after each batch the job pauses as long as the batch took
 *   (`pace`), so that client requests keep most of the event loop and of the group commits.
 * - Records a replication still has to ship are kept (protection.ts, the FIFO rule); removals are
 *   never logged as changes for replication (the change log carries writes and label updates only),
 *   so retention stays local (replication.md §4).
 * - `dry_run` counts what the run would remove and changes nothing, cursor included.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isFerryError } from '../protocol/errors.js';
import { compileCondition, type CompiledCondition } from '../query/condition/index.js';
import type { Bucket, Storage } from '../storage/types.js';
import { closeWindow, openWindow, policyEntries, type JobRun } from './job-window.js';
import { ReplicationProtection } from './protection.js';

/**
 * Records removed per batch by default. Small batches keep the group commits a concurrent writer
 * shares with the job short (bench/lifecycle.ts, 100,000 records: writer p99 2.6× with batches of
 * 1000, 1.0–1.5× with 200).
 */
export const DEFAULT_BATCH_SIZE = 200;
/**
 * After each batch the job pauses this many times as long as the batch took, so that it takes at
 * most 1 / (1 + PACE) of the event loop and of the group commits. Without pauses the writer of
 * bench/lifecycle.ts saw its p99 grow 3.3× over a job of 1,000,000 records; 0.5 keeps about two
 * thirds of the removal rate.
 */
export const DEFAULT_PACE = 0.5;
/** Progress within a window is persisted at most this often (a lost update only costs a re-scan). */
export const PROGRESS_EVERY_MS = 250;

/** Inputs of one run. */
export interface DeleteJobOptions extends JobRun {
  storage: Storage;
  batchSize?: number;
  /** Pause after each batch, as a multiple of the time the batch took (default DEFAULT_PACE). */
  pace?: number;
}

/** What one run did. */
export interface DeleteJobResult {
  removed: number;
  scanned: number;
  protected: number;
  window: { start: bigint; stop: bigint; cutoff: bigint } | null;
  caughtUp: boolean;
  resumed: boolean;
  /** Stopped by `aborted()` before the window was done. */
  interrupted: boolean;
}

/** The oldest record at or after `from` and before `stop` in any of the entries. */
async function firstRecord(
  b: Bucket,
  entries: string[],
  from: bigint,
  stop: bigint,
): Promise<bigint | undefined> {
  let first: bigint | undefined;
  for (const e of entries) {
    for await (const r of b.scan(e, from, first ?? stop)) {
      first = r.meta.ts;
      break;
    }
  }
  return first;
}

function matches(cond: CompiledCondition | undefined, ts: bigint, labels: Record<string, string>): boolean {
  if (!cond) return true;
  if (cond.done) return false;
  try {
    return cond.evaluate({ ts, labels });
  } catch (e) {
    if (isFerryError(e)) return false; // non-strict: a record the condition cannot judge is kept
    throw e;
  }
}

/** Runs the job once. Throws storage errors (the progress made so far is persisted first). */
export async function runDeleteJob(opts: DeleteJobOptions): Promise<DeleteJobResult> {
  const { storage, settings, dryRun } = opts;
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const pace = opts.pace ?? DEFAULT_PACE;
  const b = storage.bucket(settings.bucket);
  const entries = policyEntries(b, settings);
  const opened = await openWindow(opts, (from, cutoff) => firstRecord(b, entries, from, cutoff));
  if (!opened) {
    return {
      removed: 0,
      scanned: 0,
      protected: 0,
      window: null,
      caughtUp: true,
      resumed: false,
      interrupted: false,
    };
  }
  const { w, resumed } = opened;

  const protection = await ReplicationProtection.open(storage.changes, b.name, w.start, w.stop);
  let savedAt = performance.now();
  let batchStart = performance.now();
  const base = settings.when ? compileCondition(settings.when) : undefined;
  let interrupted = false;

  outer: for (const entry of entries) {
    if (w.entry !== null && entry < w.entry) continue;
    const from = w.entry === entry ? w.ts : w.start;
    const cond = base?.clone();
    let batch: bigint[] = [];
    const flush = async (nextTs: bigint): Promise<void> => {
      if (!dryRun && batch.length > 0) {
        await protection.refresh();
        const doomed = batch.filter((ts) => {
          if (!protection.has(entry, ts)) return true;
          w.protected++;
          return false;
        });
        const results = await Promise.allSettled(doomed.map((ts) => b.removeRecord(entry, ts)));
        for (const r of results) {
          if (r.status === 'fulfilled') w.removed++;
          else if (!(isFerryError(r.reason) && r.reason.status === 404)) {
            await opts.saveState(false).catch(() => undefined);
            throw r.reason;
          }
        }
      } else {
        w.removed += batch.length;
      }
      batch = [];
      w.entry = entry;
      w.ts = nextTs;
      if (!dryRun && performance.now() - savedAt >= PROGRESS_EVERY_MS) {
        await opts.saveState(false);
        savedAt = performance.now();
      }
      // at least one turn of the event loop, so that requests that arrived meanwhile are served
      await sleep(Math.max(1, (performance.now() - batchStart) * pace));
      batchStart = performance.now();
    };
    for await (const rec of b.scan(entry, from, w.stop)) {
      const { ts, labels } = rec.meta;
      w.scanned++;
      if (matches(cond, ts, labels)) {
        if (protection.has(entry, ts)) w.protected++;
        else batch.push(ts);
      }
      // progress is saved per batch, and now and then while nothing matches
      if (batch.length >= batchSize || w.scanned % (batchSize * 8) === 0) {
        await flush(ts + 1n);
        if (opts.aborted()) {
          interrupted = true;
          break outer;
        }
      }
    }
    await flush(w.stop);
  }

  await closeWindow(opts, w, interrupted);
  return {
    removed: w.removed,
    scanned: w.scanned,
    protected: w.protected,
    window: { start: w.start, stop: w.stop, cutoff: w.cutoff },
    caughtUp: !interrupted && w.stop >= w.cutoff,
    resumed,
    interrupted,
  };
}
