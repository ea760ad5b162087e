/**
 * Per-replication checkpoint (replication.md §11): the cursor LSN together with the `when` filter
 * state that belongs to exactly that cursor, the counters and visible flags. Written atomically
 * (two alternating copies in place, storage/alternating-file.ts) before the storage slot is
 * advanced, so the slot never gets ahead of a checkpoint we can resume from. Writes are coalesced:
 * while one write runs, later checkpoints replace each other.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AlternatingFile } from '../storage/alternating-file.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import type { ReplicationCounters } from '../protocol/replication-status.js';
import type { GroupCheckpoint } from './group-run.js';
import type { LastError } from './delivery-health.js';
import { ScanSource, type CopyState } from './scan-source.js';

/** Counters of a replication (records and bytes); the wire type of the status routes. */
export type Counters = ReplicationCounters;

export const zeroCounters = (): Counters => ({
  records_read: 0,
  bytes_read: 0,
  records_written: 0,
  bytes_written: 0,
  records_already_present: 0,
  records_filtered: 0,
  records_loop_skipped: 0,
  records_failed: 0,
  records_missing_at_source: 0,
  records_dropped_overflow: 0,
  label_updates_written: 0,
});

/** Persisted state of one replication task. */
export interface Checkpoint {
  /** Every change with lsn <= this was shipped, skipped or filtered. */
  lsn: bigint;
  /** Filter state per source entry (opaque, from the condition module), valid at `lsn`. */
  filter: Record<string, unknown>;
  counters: Counters;
  needs_verify: boolean;
  needs_verify_reason: string | null;
  /** Suspension survives restarts: resumed only by PATCH mode or PUT. */
  suspended_reason: string | null;
  /** The last error, kept as history across restarts and PUTs (absent in older checkpoints). */
  last_error?: LastError | null;
  /** Destination instance id learned from `x-ferry-instance` ('' = none seen). */
  destination_instance: string;
  /** Initial copy or one-shot run: plan and per-entry position (absent = none). */
  copy?: CopyState | null;
  /** A one-shot run delivered everything (stays until the replication is removed or replaced). */
  completed?: boolean;
  /** A consistency group's figures and confirmed stream position (absent = not a group). */
  group?: GroupCheckpoint;
}

/** The checkpoint of a replication that starts at `lsn` with nothing shipped yet. */
export const initialCheckpoint = (lsn: bigint): Checkpoint => ({
  lsn,
  filter: {},
  counters: zeroCounters(),
  needs_verify: false,
  needs_verify_reason: null,
  suspended_reason: null,
  destination_instance: '',
});

/** Checkpoint file of one replication. */
export class CheckpointStore {
  private readonly file: AlternatingFile;
  /** Where earlier versions wrote the checkpoint (one JSON file): read when there is no other. */
  private readonly legacyPath: string;
  private legacyGone = false;
  private running: Promise<void> | null = null;
  private queued: Checkpoint | null = null;
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(dir: string, name: string, sync: boolean) {
    this.file = new AlternatingFile(join(dir, `${name}.checkpoint`), sync);
    this.legacyPath = join(dir, `${name}.state.json`);
  }

  /** Reads the checkpoint, or undefined for a replication that never checkpointed. */
  async load(): Promise<Checkpoint | undefined> {
    try {
      const text = (await this.file.read())?.toString('utf8') ?? (await readFile(this.legacyPath, 'utf8'));
      const parsed = parseJson(text) as Checkpoint & { lsn: bigint | number };
      return {
        ...parsed,
        lsn: BigInt(parsed.lsn),
        counters: { ...zeroCounters(), ...parsed.counters },
        copy: parsed.copy ? ScanSource.restore(parsed.copy) : null,
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Schedules a write of `cp`; resolves once a write containing it (or a later checkpoint) is
   * durable. Callers pass a snapshot they no longer mutate.
   */
  save(cp: Checkpoint): Promise<void> {
    this.queued = cp;
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.running) this.running = this.drain();
    return p;
  }

  private async drain(): Promise<void> {
    while (this.queued) {
      const cp = this.queued;
      const waiters = this.waiters;
      this.queued = null;
      this.waiters = [];
      try {
        await this.file.write(Buffer.from(stringifyJson(cp), 'utf8'));
        if (!this.legacyGone) {
          await rm(this.legacyPath, { force: true });
          this.legacyGone = true;
        }
        for (const w of waiters) w.resolve();
      } catch (e) {
        for (const w of waiters) w.reject(e);
      }
    }
    this.running = null;
  }

  /** Waits for pending writes. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Deletes the checkpoint (replication removed). */
  async remove(): Promise<void> {
    await this.flush();
    await this.file.remove();
    await rm(this.legacyPath, { force: true });
  }
}
