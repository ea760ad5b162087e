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
 *   records are looked at again. The counts stay exact too: before a step removes anything, a dry
 *   run of it is saved durably with its range; a resumed run subtracts what that range still holds
 *   from what the dry run counted, and so counts the removals of the step the crash cut off.
 * - Removals are bulk steps (`Bucket.removeRange`): sealed blocks whose records all go are dropped
 *   whole (one block-removal op each, several per group commit), the boundary blocks lose their
 *   doomed records in one commit per block; a step looks at about `batchSize` records (whole
 *   blocks). After each step the job pauses `pace` times as long as the step took, so that client
 *   requests keep most of the event loop, of the I/O threads and of the group commits.
 * - Records a replication still has to ship are kept (protection.ts, the FIFO rule); removals are
 *   never logged as changes for replication (the change log carries writes and label updates only),
 *   so retention stays local (replication.md §4).
 * - `dry_run` counts what the run would remove and changes nothing, cursor included.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { compileCondition, passesLenient, type CompiledCondition } from '../query/condition/index.js';
import type { Bucket, RangeRemoval, RangeRemovalOptions, RemovalGuard, Storage } from '../storage/types.js';
import { closeWindow, openWindow, policyEntries, type JobRun } from './job-window.js';
import { ReplicationProtection } from './protection.js';
import type { JobWindow } from './store.js';
import { DEFAULT_REMOVAL_STEP } from '../storage/range-removal.js';

/**
 * Records looked at per step by default (whole blocks: 16 of the default 1024 records). A step
 * is one group-commit entry of block-removal ops and a few file deletions per block.
 */
export const DEFAULT_BATCH_SIZE = DEFAULT_REMOVAL_STEP;
/**
 * After each step the job pauses this many times as long as the step took, so that it takes at
 * most 1 / (1 + PACE) of the event loop, of the I/O threads and of the group commits.
 */
export const DEFAULT_PACE = 0.5;
/** Progress within a window is persisted at most this often (a lost update only costs a re-scan). */
export const PROGRESS_EVERY_MS = 250;

/** Inputs of one run. */
export interface DeleteJobOptions extends JobRun {
  storage: Storage;
  /** Records looked at per step (whole blocks, at least one). */
  batchSize?: number;
  /** Pause after each step, as a multiple of the time the batch took (default DEFAULT_PACE). */
  pace?: number;
}

/** What one run did. */
export interface DeleteJobResult {
  removed: number;
  /** Payload + descriptor bytes removed (the bucket's size went down by as much). */
  removedBytes: number;
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
      removedBytes: 0,
      scanned: 0,
      protected: 0,
      window: null,
      caughtUp: true,
      resumed: false,
      interrupted: false,
    };
  }
  const { w, resumed } = opened;
  w.removed_bytes ??= 0;
  const options = (
    cond: CompiledCondition | undefined,
    guard: RemovalGuard | undefined,
    dry: boolean,
    limit?: number,
  ): RangeRemovalOptions => ({
    dryRun: dry,
    ...(limit !== undefined && { limit }),
    ...(cond && { select: (m) => passesLenient(cond, m) }),
    ...(guard && { keep: guard }),
  });

  const protection = await ReplicationProtection.open(storage.changes, b.name, w.start, w.stop);
  let savedAt = -Infinity; // the first step's progress is saved at once
  const base = settings.when ? compileCondition(settings.when) : undefined;
  let interrupted = false;
  if (w.step) {
    // a crash cut this step off (only real runs keep a window): what it counted and is gone now
    // is what it removed
    const p = w.step;
    await protection.refresh();
    const left = await b.removeRange(
      p.entry,
      p.from,
      p.next,
      options(base?.clone(), protection.guard(p.entry), true),
    );
    addCounts(w, {
      removed: Math.max(0, p.removed - left.removed),
      removedBytes: Math.max(0, p.removed_bytes - left.removedBytes),
      scanned: Math.max(0, p.scanned - left.scanned),
      protected: Math.max(0, p.protected - left.protected),
    });
    delete w.step;
  }

  outer: for (const entry of entries) {
    if (w.entry !== null && entry < w.entry) continue;
    let from = w.entry === entry ? w.ts : w.start;
    const cond = base?.clone();
    const guard = protection.guard(entry);
    for (;;) {
      const stepStart = performance.now();
      if (!dryRun) {
        await protection.refresh();
        // a stateful condition's dry run must start from the state the real step starts from
        const planCond = cond?.stateful ? fork(cond) : cond;
        const plan = await b.removeRange(entry, from, w.stop, options(planCond, guard, true, batchSize));
        if (plan.removed > 0) {
          w.step = {
            entry,
            from,
            next: plan.next,
            removed: plan.removed,
            removed_bytes: plan.removedBytes,
            scanned: plan.scanned,
            protected: plan.protected,
          };
          await opts.saveState(true);
        }
      }
      const step = await b
        .removeRange(entry, from, w.stop, options(cond, guard, dryRun, batchSize))
        .catch(async (e: unknown) => {
          if (!dryRun) await opts.saveState(false).catch(() => undefined);
          throw e;
        });
      delete w.step;
      addCounts(w, step);
      from = step.next;
      w.entry = entry;
      w.ts = step.done ? w.stop : step.next;
      if (!dryRun && performance.now() - savedAt >= PROGRESS_EVERY_MS) {
        await opts.saveState(false);
        savedAt = performance.now();
      }
      // at least one turn of the event loop, so that requests that arrived meanwhile are served
      await sleep(Math.max(1, (performance.now() - stepStart) * pace));
      if (step.done) break;
      if (opts.aborted()) {
        interrupted = true;
        break outer;
      }
    }
  }

  await closeWindow(opts, w, interrupted);
  return {
    removed: w.removed,
    removedBytes: w.removed_bytes,
    scanned: w.scanned,
    protected: w.protected,
    window: { start: w.start, stop: w.stop, cutoff: w.cutoff },
    caughtUp: !interrupted && w.stop >= w.cutoff,
    resumed,
    interrupted,
  };
}

/** Adds what a step removed, looked at and kept to the window's counters. */
function addCounts(
  w: JobWindow,
  c: Pick<RangeRemoval, 'removed' | 'removedBytes' | 'scanned' | 'protected'>,
): void {
  w.removed += c.removed;
  w.removed_bytes = (w.removed_bytes ?? 0) + c.removedBytes;
  w.scanned += c.scanned;
  w.protected += c.protected;
}

/** A copy of `cond` in the same state: a dry run of a step selects what the real step will. */
function fork(cond: CompiledCondition): CompiledCondition {
  const copy = cond.clone();
  copy.restoreState(cond.saveState());
  return copy;
}
