/**
 * The windows of data time that lifecycle jobs work through (delete-job.ts, compress-job.ts): a run
 * starts at the policy's cursor (null = the oldest data), processes [start, min(start +
 * processing_interval, cut-off)) and moves the cursor to the window's end; once a window reaches
 * the cut-off the cursor goes back to null, so that the next pass sees again what was skipped.
 * The window and the progress in it are persisted, so a run interrupted by SIGKILL resumes it.
 */
import { isMetaEntry } from '../protocol/names.js';
import { compileEntryPatterns } from '../query/entry-pattern.js';
import type { Bucket } from '../storage/types.js';
import type { LifecycleSettings, PolicyDurations } from './settings.js';
import type { JobWindow, PolicyState } from './store.js';

/** What a job needs of its run (the manager's side). */
export interface JobRun {
  settings: LifecycleSettings;
  durations: PolicyDurations;
  /** The policy's state; the job updates `cursor` and `window` in place. */
  state: PolicyState;
  /** Persists `state` (`durable` false: progress that may be lost in a crash). */
  saveState(durable: boolean): Promise<void>;
  /** Current time in µs (the cut-off is now - older_than). */
  nowUs: bigint;
  dryRun: boolean;
  /** Polled between steps: true stops the run (progress is kept for the next one). */
  aborted(): boolean;
}

/** Entries a policy applies to, sorted by name (attachments are never touched by it). */
export function policyEntries(b: Bucket, settings: LifecycleSettings): string[] {
  const match = compileEntryPatterns(settings.entries.length > 0 ? settings.entries : undefined);
  return b
    .entryNames()
    .filter((e) => !isMetaEntry(e) && match(e))
    .sort();
}

/**
 * The window of this run: the interrupted one (resumed), or a new one from the cursor whose start
 * is `first(from, cutoff)` (the oldest data at or after `from`); undefined when there is nothing
 * before the cut-off (the cursor is reset).
 */
export async function openWindow(
  run: JobRun,
  first: (from: bigint, cutoff: bigint) => Promise<bigint | undefined>,
): Promise<{ w: JobWindow; resumed: boolean } | undefined> {
  const { state, dryRun } = run;
  if (!dryRun && state.window !== null) return { w: state.window, resumed: true };
  const cutoff = run.nowUs - run.durations.olderThanUs;
  const start = state.cursor ?? 0n;
  const from = cutoff > start ? await first(start, cutoff) : undefined;
  if (from === undefined) {
    if (!dryRun && state.cursor !== null) {
      state.cursor = null;
      await run.saveState(true);
    }
    return undefined;
  }
  const pi = run.durations.processingIntervalUs;
  const stop = pi !== undefined && from + pi < cutoff ? from + pi : cutoff;
  const w: JobWindow = {
    start: from,
    stop,
    cutoff,
    entry: null,
    ts: from,
    removed: 0,
    scanned: 0,
    protected: 0,
  };
  if (!dryRun) {
    state.window = w;
    await run.saveState(true);
  }
  return { w, resumed: false };
}

/** Ends a run: an interrupted window is kept, a finished one moves the cursor. */
export async function closeWindow(run: JobRun, w: JobWindow, interrupted: boolean): Promise<void> {
  if (run.dryRun) return;
  if (!interrupted) {
    run.state.window = null;
    run.state.cursor = w.stop >= w.cutoff ? null : w.stop;
  }
  await run.saveState(true);
}
