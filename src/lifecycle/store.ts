/**
 * Persistence of lifecycle policies: definitions in `<dataPath>/.ferry/lifecycles.json` and one
 * state file per policy in `<dataPath>/.ferry/lifecycles/<name>.json` (last run, last result and
 * the job's cursor). Every file is replaced atomically (temp file, fsync, rename) with mode 0600.
 */
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { LifecycleSettings } from './settings.js';

/** One stored policy. */
export interface StoredPolicy {
  settings: LifecycleSettings;
  provisioned: boolean;
}

/** A window of data time being processed: [start, stop) with everything before `cutoff` eligible. */
export interface JobWindow {
  start: bigint;
  stop: bigint;
  cutoff: bigint;
  /** Progress: entries sorted by name are done before `entry`; in `entry`, records before `ts`. */
  entry: string | null;
  ts: bigint;
  /** Counters of the run so far (a resumed run reports the whole window). */
  removed: number;
  scanned: number;
  protected: number;
  /** delete: payload + descriptor bytes removed. */
  removed_bytes?: number;
  /**
   * delete: the step about to be made, saved durably before its removals: after a crash, what
   * it counted minus what is still there is what it removed (delete-job.ts).
   */
  step?: PlannedStep;
  /** compress: blocks compressed, their payload bytes and compressed bytes. */
  blocks?: number;
  raw_bytes?: number;
  stored_bytes?: number;
}

/** What a run did, as the `$system` event and `last_result` report it. */
export interface RunResult {
  policy_name: string;
  action_type: string;
  bucket: string;
  mode: string;
  status: 'ok' | 'error' | 'interrupted' | 'skipped';
  started_at: string;
  duration: number;
  /** Records removed (or, in dry_run, that would be removed). */
  processed_records: number;
  scanned_records: number;
  /** Matching records kept because a replication has not shipped them yet. */
  protected_records: number;
  /** delete: payload + descriptor bytes removed (dry_run: that would be); the bucket shrank by as much. */
  removed_bytes?: number;
  window_start: bigint | null;
  window_stop: bigint | null;
  cutoff: bigint | null;
  /** The run reached the cut-off: the next run starts again from the oldest record. */
  caught_up: boolean;
  /** The run continued a window that an earlier, interrupted run had started. */
  resumed: boolean;
  error_code?: number;
  error_message?: string;
  /** compress: blocks compressed (dry_run: that would be), payload bytes, compressed bytes. */
  compressed_blocks?: number;
  raw_bytes?: number;
  stored_bytes?: number;
}

/** A delete step's range [from, next) in `entry` and what a dry run of it counted. */
export interface PlannedStep {
  entry: string;
  from: bigint;
  next: bigint;
  removed: number;
  removed_bytes: number;
  scanned: number;
  protected: number;
}

/** Job state of one policy. */
export interface PolicyState {
  last_run: string | null;
  last_result: RunResult | null;
  /** Start of the next window; null = from the oldest record. */
  cursor: bigint | null;
  /** The window of a run in progress (set while running, kept when a run is interrupted). */
  window: JobWindow | null;
}

export const emptyState = (): PolicyState => ({
  last_run: null,
  last_result: null,
  cursor: null,
  window: null,
});

const toBig = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(v as number));
const toBigOrNull = (v: unknown): bigint | null => (v === null || v === undefined ? null : toBig(v));

const plannedStep = (v: Record<string, unknown>): PlannedStep => ({
  entry: String(v['entry']),
  from: toBig(v['from']),
  next: toBig(v['next']),
  removed: Number(v['removed'] ?? 0),
  removed_bytes: Number(v['removed_bytes'] ?? 0),
  scanned: Number(v['scanned'] ?? 0),
  protected: Number(v['protected'] ?? 0),
});

async function readJson(path: string): Promise<unknown> {
  try {
    return parseJson(await readFile(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Loads and saves policies and their state; saves of one file are serialised. */
export class LifecycleStore {
  private readonly file: string;
  private readonly stateDir: string;
  private chains = new Map<string, Promise<void>>();

  constructor(
    dataPath: string,
    private readonly sync: boolean,
  ) {
    this.file = join(dataPath, '.ferry', 'lifecycles.json');
    this.stateDir = join(dataPath, '.ferry', 'lifecycles');
  }

  /** Every stored policy (empty when there is no file yet). */
  async load(): Promise<Map<string, StoredPolicy>> {
    const parsed = (await readJson(this.file)) as { lifecycles?: Record<string, StoredPolicy> } | undefined;
    return new Map(Object.entries(parsed?.lifecycles ?? {}));
  }

  /** Replaces the definitions file. */
  save(policies: ReadonlyMap<string, StoredPolicy>): Promise<void> {
    const text = stringifyJson({ version: 1, lifecycles: Object.fromEntries(policies) }, 2);
    return this.write(this.file, text, true);
  }

  /** The state of a policy (empty when none was saved). */
  async loadState(name: string): Promise<PolicyState> {
    const raw = (await readJson(this.statePath(name))) as Partial<PolicyState> | undefined;
    if (!raw) return emptyState();
    const w = raw.window as Record<string, unknown> | null | undefined;
    return {
      last_run: raw.last_run ?? null,
      last_result: raw.last_result ?? null,
      cursor: toBigOrNull(raw.cursor),
      window: w
        ? {
            start: toBig(w['start']),
            stop: toBig(w['stop']),
            cutoff: toBig(w['cutoff']),
            entry: (w['entry'] as string | null) ?? null,
            ts: toBig(w['ts']),
            removed: Number(w['removed'] ?? 0),
            scanned: Number(w['scanned'] ?? 0),
            protected: Number(w['protected'] ?? 0),
            ...(w['removed_bytes'] !== undefined ? { removed_bytes: Number(w['removed_bytes']) } : {}),
            ...(w['step'] ? { step: plannedStep(w['step'] as Record<string, unknown>) } : {}),
            ...(w['blocks'] !== undefined
              ? {
                  blocks: Number(w['blocks']),
                  raw_bytes: Number(w['raw_bytes'] ?? 0),
                  stored_bytes: Number(w['stored_bytes'] ?? 0),
                }
              : {}),
          }
        : null,
    };
  }

  /**
   * Saves a policy's state. `durable: false` skips the fsyncs: progress within a window may be
   * lost in a crash, which only makes the resumed run look at some records again.
   */
  saveState(name: string, state: PolicyState, durable = true): Promise<void> {
    return this.write(this.statePath(name), stringifyJson(state, 1), durable);
  }

  /** Removes a policy's state file. */
  async removeState(name: string): Promise<void> {
    const path = this.statePath(name);
    await (this.chains.get(path) ?? Promise.resolve());
    await unlink(path).catch(() => undefined);
  }

  private statePath(name: string): string {
    return join(this.stateDir, `${name}.json`);
  }

  private write(path: string, text: string, durable: boolean): Promise<void> {
    const prev = this.chains.get(path) ?? Promise.resolve();
    const next = prev.then(() =>
      writeFileAtomic(path, text, { mode: 0o600, noSync: !this.sync || !durable }),
    );
    this.chains.set(
      path,
      next.catch(() => undefined),
    );
    return next;
  }
}
