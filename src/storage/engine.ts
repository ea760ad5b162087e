/**
 * The storage engine: buckets on disk, one WAL with group commit, periodic checkpoints, and the
 * change log view of the WAL used by replication (slots).
 *
 * Durability model: a record's payload is written to its block file, then the group commit
 * fdatasyncs every block file touched by the group, appends the group's WAL frames and fdatasyncs
 * the WAL once, and only then answers the writers. Many concurrent writes therefore share one
 * WAL fsync. After a crash the WAL is replayed from the last checkpoint; a torn WAL tail belongs
 * to writes that were never acknowledged and is cut.
 */
import { describeJsonValue } from '../protocol/json.js';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rm, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Block, Desc, encodeBlockMeta, encodeEntryIndex, loadBlockMeta, loadEntryIndex } from './block.js';
import { DigestPool } from './digest-pool.js';
import { BlockFiles } from './block-files.js';
import { BucketImpl } from './bucket.js';
import { Entry } from './entry.js';
import { fsyncDir, writeFileAtomic } from './atomic-file.js';
import { OpType, Wal, type WalOp } from './wal.js';
import { PendingBytes } from './pending-bytes.js';
import type { EngineInternals } from './engine-internals.js';
import { Errors, fromFsError, replicationLogFull } from '../protocol/errors.js';
import { validateBucketName } from '../protocol/names.js';
import type {
  Bucket,
  BucketInfo,
  BucketSettings,
  BucketSettingsPatch,
  Change,
  ChangeLog,
  CreateBucketOptions,
  QuotaType,
  SlotState,
  Storage,
  StorageOptions,
} from './types.js';
import { QUOTA_TYPES } from './types.js';

const BUILTIN_DEFAULTS: BucketSettings = {
  quota_type: 'NONE',
  quota_size: 0n,
  max_block_size: 64_000_000n,
  max_block_records: 1024n,
};
/** Descriptor budget: clean blocks beyond it are unloaded (they reload from `<id>.meta`). */
const MAX_LOADED_RECORDS = 50_000;
const CHECKPOINT_OPS = 50_000;
/** A block's descriptors stay loaded at least this long after their last use. */
const UNLOAD_IDLE_MS = 250;

interface Pending {
  ops: WalOp[];
  paths: readonly string[];
  apply: () => void;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const NO_PATHS: readonly string[] = [];

/** Opens (or creates) a data directory. */
export async function openStorage(opts: StorageOptions): Promise<Storage> {
  const engine = new Engine(opts);
  await engine.open();
  return engine;
}

class Engine implements Storage, EngineInternals, ChangeLog {
  readonly files = new BlockFiles();
  readonly digests = new DigestPool();
  instanceId = '';
  private buckets = new Map<string, BucketImpl>();
  private wal!: Wal;
  private queue: Pending[] = [];
  private committing = false;
  private appliedLsn = 0n;
  private opsSinceCheckpoint = 0;
  private checkpointRunning: Promise<void> | undefined;
  /** The one follow-up run that callers arriving during a run wait for. */
  private checkpointQueued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly sync: boolean;
  private readonly defaults: BucketSettings;
  private readonly root: string;
  private readonly bucketsDir: string;
  private readonly metaDir: string;
  private slots = new Map<string, SlotState>();
  /** Per slot: pending write sizes after its LSN, as (lsn, bytes) in commit order. */
  private slotPending = new Map<string, PendingBytes>();
  /** Per slot: delivered up to here (in memory; may be ahead of the persisted slot LSN). */
  private shipped = new Map<string, bigint>();
  private slotsDirty = false;
  private slotsTimer: NodeJS.Timeout | undefined;
  private commitListeners = new Set<(lsn: bigint) => void>();
  private overflowListeners = new Set<(slot: string, lsn: bigint) => void>();
  private loaded = new Set<Block>();
  /** Blocks changed by WAL replay at start-up (their summaries are recomputed once at the end). */
  private replayed = new Set<Block>();
  private loadedRecords = 0;
  private loading = new Map<Block, Promise<void>>();

  constructor(private readonly opts: StorageOptions) {
    this.sync = (opts.durability ?? 'fsync') === 'fsync';
    this.defaults = { ...BUILTIN_DEFAULTS, ...(opts.defaults ?? {}) };
    this.root = opts.dataPath;
    this.bucketsDir = join(this.root, 'buckets');
    this.metaDir = join(this.root, '.ferry');
  }

  get changes(): ChangeLog {
    return this;
  }

  // ------------------------------------------------------------------ start-up

  async open(): Promise<void> {
    await mkdir(this.bucketsDir, { recursive: true });
    await mkdir(this.metaDir, { recursive: true, mode: 0o700 });
    this.instanceId = await this.loadInstanceId();
    await this.loadSlots();
    await this.loadBuckets();
    const cpLsn = await this.readCheckpointLsn();
    const ops: WalOp[] = [];
    this.wal = await Wal.open(
      join(this.root, 'wal'),
      this.sync,
      cpLsn,
      (op) => ops.push(op),
      this.opts.walSegmentBytes,
    );
    this.wal.keepTail(this.slots.size > 0);
    for (const op of ops) await this.replay(op);
    // Block summaries once per block, not once per replayed op (that would be quadratic).
    for (const block of this.replayed) if (block.records && !block.removed) block.recompute();
    this.replayed.clear();
    for (const name of this.slots.keys()) await this.rebuildPending(name);
    this.appliedLsn = this.wal.lastDurableLsn();
    for (const b of this.buckets.values()) this.recomputeBucketSize(b);
    if (ops.length > 0) await this.checkpoint();
    const interval = this.opts.checkpointIntervalMs ?? 30_000;
    this.timer = setInterval(() => void this.checkpoint().catch(() => {}), interval);
    this.timer.unref();
  }

  private async loadInstanceId(): Promise<string> {
    const p = join(this.metaDir, 'instance-id');
    try {
      const id = (await readFile(p, 'utf8')).trim();
      if (id) return id;
    } catch {
      /* first start */
    }
    const id = randomUUID();
    await writeFileAtomic(p, id + '\n', { noSync: !this.sync });
    return id;
  }

  private async readCheckpointLsn(): Promise<bigint> {
    try {
      return BigInt((await readFile(join(this.root, 'wal', 'checkpoint'), 'utf8')).trim());
    } catch {
      return 0n;
    }
  }

  private async loadBuckets(): Promise<void> {
    for (const name of await readdir(this.bucketsDir)) {
      const dir = join(this.bucketsDir, name);
      if (name.startsWith('.')) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      let conf: { settings: Record<string, string>; provisioned: boolean; deleting?: boolean };
      try {
        conf = JSON.parse(await readFile(join(dir, 'settings.json'), 'utf8'));
      } catch {
        continue;
      }
      if (conf.deleting) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const settings: BucketSettings = {
        quota_type: conf.settings.quota_type as QuotaType,
        quota_size: BigInt(conf.settings.quota_size!),
        max_block_size: BigInt(conf.settings.max_block_size!),
        max_block_records: BigInt(conf.settings.max_block_records!),
      };
      const bucket = new BucketImpl(name, dir, settings, conf.provisioned, this);
      await this.loadEntries(bucket, dir, '');
      this.buckets.set(name, bucket);
    }
  }

  private async loadEntries(bucket: BucketImpl, dir: string, prefix: string): Promise<void> {
    const items = await readdir(dir, { withFileTypes: true });
    for (const it of items) {
      if (!it.isDirectory()) continue;
      const name = prefix ? `${prefix}/${it.name}` : it.name;
      const entryDir = join(dir, it.name);
      const entry = new Entry(name, `${bucket.dir}/${name}`);
      entry.blocks = (await loadEntryIndex(join(entryDir, 'index.bin'))) ?? [];
      bucket.entriesMap.set(name, entry);
      await this.loadEntries(bucket, entryDir, name);
    }
  }

  private recomputeBucketSize(b: BucketImpl): void {
    let s = 0;
    for (const e of b.entriesMap.values()) s += e.size;
    b.accSize = s;
  }

  /** Redo of one WAL op after the last checkpoint (idempotent). */
  private async replay(op: WalOp): Promise<void> {
    const bucket = this.buckets.get(op.bucket);
    if (!bucket) return;
    switch (op.type) {
      case OpType.Write: {
        const entry = await bucket.ensureEntry(op.entry);
        let block = entry.blockById(op.blockId);
        if (!block) {
          block = new Block(op.blockId);
          block.records = [];
          entry.addBlock(block);
        }
        await this.loadBlock(entry, block);
        if (!block.find(op.ts)) {
          block.insert(
            new Desc(
              op.entry,
              op.ts,
              op.size,
              op.contentType,
              op.labels,
              'finished',
              op.origin,
              op.offset,
              op.descSize,
              op.lsn,
              op.digest,
            ),
          );
        }
        this.replayed.add(block);
        block.dirty = true;
        entry.indexDirty = true;
        break;
      }
      case OpType.Update: {
        const entry = bucket.entriesMap.get(op.entry);
        const block = entry?.blockFor(op.ts);
        if (!entry || !block) return;
        await this.loadBlock(entry, block);
        const d = block.find(op.ts);
        if (d) {
          d.labels = op.labels;
          block.dirty = true;
        }
        break;
      }
      case OpType.RemoveRecord: {
        const entry = bucket.entriesMap.get(op.entry);
        const block = entry?.blockFor(op.ts);
        if (!entry || !block) return;
        await this.loadBlock(entry, block);
        if (block.remove(op.ts)) {
          this.replayed.add(block);
          block.dirty = true;
          entry.indexDirty = true;
        }
        break;
      }
      case OpType.RemoveBlock: {
        const entry = bucket.entriesMap.get(op.entry);
        const block = entry?.blockById(op.blockId);
        if (!entry || !block) return;
        entry.removeBlock(block);
        await this.deleteBlockFiles(entry, block);
        break;
      }
      case OpType.RemoveEntry: {
        const doomed = bucket.subtree(op.entry);
        for (const e of doomed) bucket.entriesMap.delete(e.name);
        await this.files.forget(`${bucket.dir}/${op.entry}`);
        await rm(`${bucket.dir}/${op.entry}`, { recursive: true, force: true });
        break;
      }
      case OpType.RemoveBucket: {
        this.buckets.delete(op.bucket);
        await this.files.forget(bucket.dir);
        await rm(bucket.dir, { recursive: true, force: true });
        break;
      }
    }
  }

  // ------------------------------------------------------------------ EngineInternals

  async loadBlock(entry: Entry, block: Block): Promise<void> {
    block.lastUse = Date.now();
    if (block.records) return;
    let p = this.loading.get(block);
    if (!p) {
      p = (async () => {
        const recs = await loadBlockMeta(entry.metaPath(block), entry.name);
        if (!block.records) {
          block.records = recs ?? [];
          this.track(block);
        }
      })().finally(() => this.loading.delete(block));
      this.loading.set(block, p);
    }
    await p;
  }

  /** Registers a block whose descriptors are in memory (loaded or newly created). */
  track(block: Block): void {
    if (this.loaded.has(block)) return;
    this.loaded.add(block);
    this.loadedRecords += block.records?.length ?? 0;
    // Enforced on every load, not only at checkpoints: read-only workloads never checkpoint.
    if (this.loadedRecords > MAX_LOADED_RECORDS) this.unloadCold();
  }

  /** Drops descriptors of clean, idle blocks from memory, least recently used first. */
  private unloadCold(): void {
    let total = 0;
    for (const b of this.loaded) total += b.records?.length ?? 0;
    this.loadedRecords = total;
    if (total <= MAX_LOADED_RECORDS) return;
    // Only blocks idle for a while: a caller that just awaited `loadBlock` uses the descriptors
    // right after, and must find them there.
    const idleBefore = Date.now() - UNLOAD_IDLE_MS;
    const candidates = [...this.loaded]
      .filter((b) => !b.dirty && b.inflight === 0 && b.records && b.lastUse < idleBefore)
      .sort((a, b) => a.lastUse - b.lastUse);
    for (const b of candidates) {
      if (total <= MAX_LOADED_RECORDS / 2) break;
      total -= b.records!.length;
      b.records = undefined;
      this.loaded.delete(b);
    }
    this.loadedRecords = total;
  }

  commit(op: WalOp, path: string | undefined, apply: (lsn: bigint) => void): Promise<void> {
    return this.commitMany([op], path ? [path] : NO_PATHS, () => apply(op.lsn));
  }

  commitMany(ops: WalOp[], paths: readonly string[], apply: () => void): Promise<void> {
    if (this.closed) return Promise.reject(Errors.unavailable('The storage engine is closed'));
    for (const op of ops) op.lsn = this.wal.allocLsn();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, paths, apply, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.committing || this.queue.length === 0) return;
    this.committing = true;
    setImmediate(() => void this.runCommit());
  }

  private async runCommit(): Promise<void> {
    const group = this.queue;
    this.queue = [];
    try {
      const paths = new Set<string>();
      const ops: WalOp[] = [];
      for (const g of group) {
        for (const p of g.paths) paths.add(p);
        for (const op of g.ops) ops.push(op);
      }
      await this.files.syncFiles(paths, this.sync);
      await this.wal.append(ops);
      for (const slot of this.slots.values()) {
        const pending = this.slotPending.get(slot.name);
        if (!pending) continue;
        for (const op of ops) {
          if (op.type === OpType.Write && op.bucket === slot.bucket) pending.push(op.lsn, op.size);
        }
      }
      this.appliedLsn = ops[ops.length - 1]!.lsn;
      this.opsSinceCheckpoint += ops.length;
      for (const g of group) {
        g.apply();
        g.resolve();
      }
      for (const l of this.commitListeners) l(this.appliedLsn);
    } catch (e) {
      const err = fromFsError(e);
      for (const g of group) g.reject(err);
    } finally {
      this.committing = false;
      this.kick();
      if (this.opsSinceCheckpoint >= CHECKPOINT_OPS) void this.checkpoint().catch(() => {});
      if (this.slotsDirty) this.schedulePersistSlots();
    }
  }

  isProtected(bucket: string, block: Block): boolean {
    for (const slot of this.slots.values()) {
      if (slot.bucket !== bucket || block.maxLsn <= this.protectedFrom(slot)) continue;
      if (this.slotPendingBytes(slot.name) <= slot.maxBytes || slot.onOverflow === 'block') return true;
    }
    return false;
  }

  checkWritable(bucket: string): void {
    for (const slot of this.slots.values()) {
      if (
        slot.bucket === bucket &&
        slot.onOverflow === 'block' &&
        this.slotPendingBytes(slot.name) > slot.maxBytes
      ) {
        throw replicationLogFull(bucket, slot.name);
      }
    }
  }

  notifyEvicted(bucket: string, block: Block): void {
    for (const slot of this.slots.values()) {
      if (slot.bucket === bucket && block.maxLsn > this.protectedFrom(slot)) {
        for (const l of this.overflowListeners) l(slot.name, block.maxLsn);
      }
    }
  }

  async deleteBlockFiles(entry: Entry, block: Block): Promise<void> {
    const data = entry.dataPath(block);
    await this.files.forget(data);
    this.loaded.delete(block);
    await unlink(data).catch(() => {});
    await unlink(entry.metaPath(block)).catch(() => {});
  }

  requestCheckpoint(): Promise<void> {
    return this.checkpoint().catch(() => {});
  }

  /**
   * Writes dirty descriptors and indexes, then moves the replay start past them. Resolves once a
   * run that started after this call has finished: a run already under way may have missed changes
   * made before the call (renames rely on this), so callers arriving during a run share one
   * follow-up run.
   */
  checkpoint(): Promise<void> {
    const running = this.checkpointRunning;
    if (!running) return this.startCheckpoint();
    this.checkpointQueued ??= running
      .catch(() => {})
      .then(() => {
        this.checkpointQueued = undefined;
        return this.startCheckpoint();
      });
    return this.checkpointQueued;
  }

  private startCheckpoint(): Promise<void> {
    const run: Promise<void> = this.doCheckpoint().finally(() => {
      if (this.checkpointRunning === run) this.checkpointRunning = undefined;
    });
    this.checkpointRunning = run;
    return run;
  }

  private async doCheckpoint(): Promise<void> {
    const cpLsn = this.appliedLsn;
    this.opsSinceCheckpoint = 0;
    const noSync = !this.sync;
    const writes: Array<() => Promise<void>> = [];
    // Files are synced one by one, their directories once each at the end (before the checkpoint
    // LSN moves), instead of one directory sync per file.
    const dirs = new Set<string>();
    for (const bucket of this.buckets.values()) {
      for (const entry of bucket.entriesMap.values()) {
        if (entry.status === 'DELETING') continue;
        for (const block of entry.blocks) {
          if (!block.dirty || !block.records) continue;
          dirs.add(entry.dir);
          // Encoded when its turn comes, not all at once up front: a checkpoint of many blocks
          // then never stalls the event loop for long (write latency). Replay is idempotent, so
          // changes newer than the checkpoint LSN may be included.
          writes.push(async () => {
            if (!block.dirty || !block.records || block.removed || entry.status === 'DELETING') return;
            block.dirty = false;
            const data = encodeBlockMeta(block);
            try {
              await writeFileAtomic(entry.metaPath(block), data, { noSync, noDirSync: true });
            } catch (e) {
              block.dirty = true;
              throw e;
            }
          });
        }
        if (entry.indexDirty) {
          entry.indexDirty = false;
          dirs.add(entry.dir);
          const data = encodeEntryIndex(entry.blocks);
          writes.push(async () => {
            try {
              await writeFileAtomic(`${entry.dir}/index.bin`, data, { noSync, noDirSync: true });
            } catch (e) {
              entry.indexDirty = true;
              throw e;
            }
          });
        }
      }
    }
    // Bounded parallelism keeps the thread pool available to writers.
    let i = 0;
    const worker = async () => {
      while (i < writes.length) await writes[i++]!();
    };
    await Promise.all([worker(), worker(), worker()]);
    if (!noSync) for (const d of dirs) await fsyncDir(d).catch(() => {});
    await writeFileAtomic(join(this.root, 'wal', 'checkpoint'), cpLsn.toString(), { noSync });
    if (this.slotsDirty) await this.persistSlots();
    await this.wal.truncateUpTo(this.retainFrom(cpLsn));
    this.unloadCold();
  }

  // ------------------------------------------------------------------ Storage

  listBuckets(): BucketInfo[] {
    return [...this.buckets.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((b) => b.info());
  }

  bucket(name: string): Bucket {
    const b = this.buckets.get(name);
    if (!b) throw Errors.bucketNotFound(name);
    b.checkReady();
    return b;
  }

  hasBucket(name: string): boolean {
    return this.buckets.has(name);
  }

  defaultSettings(): BucketSettings {
    return { ...this.defaults };
  }

  private resolveSettings(base: BucketSettings, patch: BucketSettingsPatch | undefined): BucketSettings {
    const out = { ...base };
    if (!patch) return out;
    if (patch.quota_type !== undefined && patch.quota_type !== null) {
      if (!QUOTA_TYPES.includes(patch.quota_type)) {
        throw Errors.unprocessable(`Invalid quota type '${describeJsonValue(patch.quota_type)}'`);
      }
      out.quota_type = patch.quota_type;
    }
    for (const k of ['quota_size', 'max_block_size', 'max_block_records'] as const) {
      const v = patch[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'bigint' || v < 0n) throw Errors.unprocessable(`Invalid value of '${k}'`);
      out[k] = v;
    }
    if (out.max_block_records === 0n)
      throw Errors.unprocessable("'max_block_records' must be greater than 0");
    if (out.max_block_size === 0n) throw Errors.unprocessable("'max_block_size' must be greater than 0");
    return out;
  }

  private async saveSettings(b: BucketImpl, extra: { deleting?: boolean } = {}): Promise<void> {
    const s = b.settings();
    const conf = {
      settings: {
        quota_type: s.quota_type,
        quota_size: s.quota_size.toString(),
        max_block_size: s.max_block_size.toString(),
        max_block_records: s.max_block_records.toString(),
      },
      provisioned: b.provisioned,
      ...extra,
    };
    await writeFileAtomic(join(b.dir, 'settings.json'), JSON.stringify(conf), { noSync: !this.sync });
  }

  async createBucket(
    name: string,
    patch?: BucketSettingsPatch,
    opts: CreateBucketOptions = {},
  ): Promise<Bucket> {
    if (name !== '$system') validateBucketName(name);
    const existing = this.buckets.get(name);
    if (existing) {
      if (existing.status === 'DELETING') throw Errors.bucketDeleting(name);
      if (!opts.provisioned) throw Errors.bucketExists(name);
      // Provisioning is re-applied at every start.
      existing.setSettings(this.resolveSettings(this.defaults, patch));
      (existing as { provisioned: boolean }).provisioned = true;
      await this.saveSettings(existing);
      return existing;
    }
    const settings = this.resolveSettings(this.defaults, patch);
    const dir = join(this.bucketsDir, name);
    await mkdir(dir, { recursive: true });
    const b = new BucketImpl(name, dir, settings, !!opts.provisioned, this);
    await this.saveSettings(b);
    this.buckets.set(name, b);
    return b;
  }

  async updateBucketSettings(name: string, patch: BucketSettingsPatch): Promise<void> {
    const b = this.bucket(name) as BucketImpl;
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    b.setSettings(this.resolveSettings(b.settings(), patch));
    await this.saveSettings(b);
  }

  async removeBucket(name: string): Promise<void> {
    const b = this.bucket(name) as BucketImpl;
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    b.status = 'DELETING';
    await this.commit(
      { type: OpType.RemoveBucket, lsn: 0n, time: Date.now(), bucket: name },
      undefined,
      () => {},
    );
    await this.saveSettings(b, { deleting: true });
    void (async () => {
      try {
        await this.files.forget(b.dir);
        const trash = join(this.bucketsDir, `.trash-${name}-${Date.now()}`);
        await rename(b.dir, trash);
        this.buckets.delete(name);
        await rm(trash, { recursive: true, force: true });
      } catch {
        this.buckets.delete(name);
      }
      await this.requestCheckpoint();
    })();
  }

  async renameBucket(name: string, newName: string): Promise<void> {
    const b = this.bucket(name) as BucketImpl;
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    validateBucketName(newName);
    if (this.buckets.has(newName)) throw Errors.bucketExists(newName);
    await b.exclusiveOp(async () => {
      if (this.buckets.has(newName)) throw Errors.bucketExists(newName);
      await this.checkpoint();
      await this.files.forget(b.dir);
      const newDir = join(this.bucketsDir, newName);
      await rename(b.dir, newDir);
      this.buckets.delete(name);
      b.name = newName;
      b.dir = newDir;
      for (const e of b.entriesMap.values()) e.dir = `${newDir}/${e.name}`;
      this.buckets.set(newName, b);
      await this.checkpoint();
    });
  }

  usage(): { usage: bigint; oldest_record: bigint; latest_record: bigint } {
    let usage = 0n;
    let oldest = 0n;
    let latest = 0n;
    let first = true;
    for (const b of this.buckets.values()) {
      const i = b.info();
      usage += i.size;
      if (first || i.oldest_record < oldest) oldest = i.oldest_record;
      if (i.latest_record > latest) latest = i.latest_record;
      first = false;
    }
    return { usage, oldest_record: oldest, latest_record: latest };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    while (this.committing || this.queue.length) await new Promise((r) => setTimeout(r, 2));
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.slotsTimer) clearTimeout(this.slotsTimer);
    await this.checkpoint().catch(() => {});
    await this.persistSlots().catch(() => {});
    await this.wal.rotateIfUsed().catch(() => {});
    await this.wal.truncateUpTo(this.retainFrom(this.appliedLsn)).catch(() => {});
    await this.files.closeAll(this.sync);
    await this.wal.close();
    await this.digests.close();
  }

  // ------------------------------------------------------------------ ChangeLog

  lastLsn(): bigint {
    return this.appliedLsn;
  }

  read(after: bigint, max: number): Promise<Change[]> {
    return this.wal
      .read(after, max)
      .then((list) =>
        list.length && list[list.length - 1]!.lsn > this.appliedLsn
          ? list.filter((c) => c.lsn <= this.appliedLsn)
          : list,
      );
  }

  onCommit(listener: (lastLsn: bigint) => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  async setSlot(slot: SlotState): Promise<void> {
    this.slots.set(slot.name, { ...slot });
    this.wal.keepTail(true);
    this.shipped.delete(slot.name);
    await this.rebuildPending(slot.name);
    this.slotsDirty = true;
    await this.persistSlots();
  }

  /** Changes after this LSN are still protected for the slot (delivered ones are released). */
  private protectedFrom(slot: SlotState): bigint {
    const shipped = this.shipped.get(slot.name);
    return shipped !== undefined && shipped > slot.lsn ? shipped : slot.lsn;
  }

  releaseShipped(name: string, lsn: bigint): void {
    const s = this.slots.get(name);
    if (!s) return;
    const prev = this.shipped.get(name) ?? s.lsn;
    if (lsn <= prev) return;
    this.shipped.set(name, lsn);
    this.slotPending.get(name)?.dropUpTo(lsn);
  }

  advanceSlot(name: string, lsn: bigint): void {
    const s = this.slots.get(name);
    if (!s || lsn <= s.lsn) return;
    s.lsn = lsn;
    this.slotPending.get(name)?.dropUpTo(lsn);
    this.slotsDirty = true;
    this.schedulePersistSlots();
  }

  getSlot(name: string): SlotState | undefined {
    const s = this.slots.get(name);
    return s ? { ...s } : undefined;
  }

  listSlots(): SlotState[] {
    return [...this.slots.values()].map((s) => ({ ...s }));
  }

  slotPendingBytes(name: string): number {
    return this.slotPending.get(name)?.bytes ?? 0;
  }

  /** Recounts a slot's pending bytes from the log (at start and when a slot is (re)set). */
  private async rebuildPending(name: string): Promise<void> {
    const slot = this.slots.get(name);
    if (!slot) return;
    const pending = new PendingBytes();
    let after = slot.lsn;
    for (;;) {
      const batch = await this.wal.read(after, 10_000);
      if (batch.length === 0) break;
      for (const c of batch) if (c.kind === 'write' && c.bucket === slot.bucket) pending.push(c.lsn, c.size);
      after = batch[batch.length - 1]!.lsn;
    }
    this.slotPending.set(name, pending);
  }

  async dropSlot(name: string): Promise<void> {
    this.slotPending.delete(name);
    this.shipped.delete(name);
    if (this.slots.delete(name)) {
      if (this.slots.size === 0) this.wal.keepTail(false);
      this.slotsDirty = true;
      await this.persistSlots();
    }
  }

  onSlotOverflow(listener: (slot: string, evictedUpToLsn: bigint) => void): () => void {
    this.overflowListeners.add(listener);
    return () => this.overflowListeners.delete(listener);
  }

  private persisting: Promise<void> | undefined;

  /** Slot positions are written at most every 100 ms (several changes share one write). */
  private schedulePersistSlots(): void {
    if (this.slotsTimer) return;
    this.slotsTimer = setTimeout(() => void this.persistSlots(), 100);
    this.slotsTimer.unref();
  }

  /** The WAL must keep every op after the lowest of `lsn` and the slots' positions. */
  private retainFrom(lsn: bigint): bigint {
    let keep = lsn;
    for (const slot of this.slots.values()) if (slot.lsn < keep) keep = slot.lsn;
    return keep;
  }

  private async persistSlots(): Promise<void> {
    if (this.slotsTimer) {
      clearTimeout(this.slotsTimer);
      this.slotsTimer = undefined;
    }
    while (this.persisting) await this.persisting;
    if (!this.slotsDirty) return;
    this.slotsDirty = false;
    const data = JSON.stringify([...this.slots.values()].map((s) => ({ ...s, lsn: s.lsn.toString() })));
    this.persisting = writeFileAtomic(join(this.metaDir, 'slots.json'), data, { noSync: !this.sync }).catch(
      () => {
        this.slotsDirty = true;
      },
    );
    try {
      await this.persisting;
    } finally {
      this.persisting = undefined;
    }
  }

  private async loadSlots(): Promise<void> {
    try {
      const list = JSON.parse(await readFile(join(this.metaDir, 'slots.json'), 'utf8')) as Array<
        Omit<SlotState, 'lsn'> & { lsn: string }
      >;
      for (const s of list) this.slots.set(s.name, { ...s, lsn: BigInt(s.lsn) });
    } catch {
      /* none yet */
    }
  }
}
