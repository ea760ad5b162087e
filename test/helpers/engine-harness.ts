/**
 * One replication task on real storage against a fake destination, with a checkpoint store that
 * can stand for a process that is killed: the engine tests of issue 9 (progress across restarts,
 * positions vs deliveries) drive the task itself, without a manager or HTTP.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointStore, type Checkpoint } from '../../src/replication/checkpoint-store.js';
import { FailureLog } from '../../src/replication/failure-log.js';
import { ReplicationTask } from '../../src/replication/task.js';
import type { ItemOutcome, ShipRecord, Target } from '../../src/replication/target.js';
import type { ReplicationSettings } from '../../src/replication/settings.js';
import type { Storage } from '../../src/storage/types.js';

/**
 * A checkpoint store that can be frozen (writes stay pending and never reach the file: the process
 * is about to be killed) and killed (writes are answered but lost). A new store on the same
 * directory then reads what a restart would find.
 */
export class KillableCheckpoints extends CheckpointStore {
  private state: 'live' | 'frozen' | 'dead' = 'live';
  private held: Array<() => void> = [];
  /** Checkpoints that reached the file, in order. */
  readonly written: Checkpoint[] = [];

  override save(cp: Checkpoint): Promise<void> {
    if (this.state === 'dead') return Promise.resolve();
    if (this.state === 'frozen') return new Promise((resolve) => this.held.push(resolve));
    return super.save(cp).then(() => void this.written.push(cp));
  }

  /** From now on nothing reaches the file; writes in progress finish first. */
  async freeze(): Promise<void> {
    this.state = 'frozen';
    await this.flush();
  }

  /** The process is gone: held and later writes are answered without being written. */
  kill(): void {
    this.state = 'dead';
    for (const r of this.held.splice(0)) r();
  }
}

/** A destination in memory: every write is stored (a second one is `present`). */
export class MemoryTarget implements Target {
  readonly description = 'memory';
  readonly instanceId = 'memory-destination';
  available = true;
  /** `entry@ts` → the record shipped. */
  readonly records = new Map<string, ShipRecord>();
  /** Called before each write is answered (tests hold or fail writes here). */
  beforeWrite: (entry: string, records: readonly ShipRecord[]) => Promise<void> = () => Promise.resolve();

  prepare(): Promise<void> {
    return Promise.resolve();
  }
  async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    await this.beforeWrite(entry, records);
    return records.map((r) => {
      const key = `${entry}@${r.ts}`;
      if (this.records.has(key)) return { kind: 'present' };
      this.records.set(key, r);
      return { kind: 'written' };
    });
  }
  update(_entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return Promise.resolve(records.map(() => ({ kind: 'written' })));
  }
  reset(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Settings of a replication from bucket 'src' (defaults of api.md §17.2 otherwise). */
export function taskSettings(extra: Partial<ReplicationSettings> = {}): ReplicationSettings {
  return {
    src_bucket: 'src',
    dst_bucket: 'dst',
    dst_host: '',
    dst_token: null,
    entries: [],
    dst_prefix: '',
    when: null,
    mode: 'enabled',
    compression: 'none',
    ...extra,
  };
}

/** Creates (not starts) task `name` whose checkpoint and failure log live under `dir`. */
export function makeTask(opts: {
  storage: Storage;
  dir: string;
  settings: ReplicationSettings;
  target: Target;
  checkpoints?: CheckpointStore;
  name?: string;
}): { task: ReplicationTask; checkpoints: CheckpointStore } {
  const name = opts.name ?? 'r';
  mkdirSync(join(opts.dir, 'state'), { recursive: true });
  mkdirSync(join(opts.dir, 'failures'), { recursive: true });
  const checkpoints = opts.checkpoints ?? new CheckpointStore(join(opts.dir, 'state'), name, false);
  const task = new ReplicationTask({
    name,
    storage: opts.storage,
    settings: opts.settings,
    mode: opts.settings.mode,
    checkpoints,
    failures: new FailureLog(join(opts.dir, 'failures'), name, false),
    target: opts.target,
    timeoutMs: 5000,
  });
  return { task, checkpoints };
}

/** A new checkpoint store on the directory of {@link makeTask} (what a restart reads). */
export function killableCheckpoints(dir: string, name = 'r'): KillableCheckpoints {
  mkdirSync(join(dir, 'state'), { recursive: true });
  return new KillableCheckpoints(join(dir, 'state'), name, false);
}
