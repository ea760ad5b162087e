/**
 * One bucket: the `Bucket` contract over its parts — concurrency (renames run alone), info, reads
 * and scans, label updates and removals. Writes are done by `RecordWriter`, quotas by `Quota`;
 * durability and ordering come from the group commit.
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { scanCleanBlockMeta, type Block, type RecordDesc } from './block.js';
import { DATA_DIR_MODE } from './atomic-file.js';
import { BlockRecord } from './block-record.js';
import { BucketData, checkEntryName } from './bucket-data.js';
import type { BucketServices } from './bucket-services.js';
import type { Entry } from './entry.js';
import { Quota } from './quota.js';
import { RangeRemover } from './range-removal.js';
import type { BatchTicket } from './atomic-batch.js';
import { RecordWriter, type StagedBatch } from './record-writer.js';
import { OpType, type RemoveRecordOp, type UpdateOp } from './wal.js';
import { Errors, FerryError, fromFsError } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';
import { U64_MAX } from '../protocol/json.js';
import { checkLabelSet, checkOrigin } from '../protocol/field-bounds.js';
import type {
  BatchItem,
  BlockCompressOutcome,
  BlockSummary,
  Bucket,
  BucketInfo,
  BucketSettings,
  DigestQuery,
  EntryInfo,
  LabelUpdateOptions,
  Labels,
  PayloadSource,
  RangeDigest,
  RangeRemoval,
  RangeRemovalOptions,
  RecordFilter,
  RecordSummary,
  Status,
  StoredRecord,
  WriteOptions,
  WriteOutcome,
} from './types.js';

export class BucketImpl implements Bucket {
  readonly data: BucketData;
  private readonly quota: Quota;
  private readonly writer: RecordWriter;
  private readonly ranges: RangeRemover;
  private active = 0;
  /** Tail of the changes (label updates, removal) queued per record (`serialized`). */
  private recordChanges = new Map<string, Promise<void>>();
  private exclusive: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  constructor(
    name: string,
    dir: string,
    settings: BucketSettings,
    provisioned: boolean,
    private readonly services: BucketServices,
  ) {
    this.data = new BucketData(name, dir, settings, provisioned);
    this.quota = new Quota(this.data, services);
    this.writer = new RecordWriter(this.data, services, this.quota);
    this.ranges = new RangeRemover(this.data, services, this.quota);
  }

  get name(): string {
    return this.data.name;
  }

  get provisioned(): boolean {
    return this.data.provisioned;
  }

  get status(): Status {
    return this.data.status;
  }

  // ---------------------------------------------------------------- concurrency

  /** Runs an operation that may run alongside others (writes, updates, removals of records). */
  async shared<T>(fn: () => Promise<T>, batch?: BatchTicket): Promise<T> {
    // the rename waits for the batch's staged writes, which wait for this one: commit them now
    if (this.exclusive) batch?.cut();
    while (this.exclusive) await this.exclusive;
    this.checkReady();
    this.active++;
    try {
      return await fn();
    } finally {
      if (--this.active === 0 && this.drained) this.drained();
    }
  }

  /** Runs an operation alone (renames): waits until operations in flight are done. */
  async exclusiveOp<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise<void>((r) => (release = r));
    try {
      if (this.active > 0) await new Promise<void>((r) => (this.drained = r));
      this.drained = undefined;
      return await fn();
    } finally {
      this.exclusive = undefined;
      release();
    }
  }

  checkReady(): void {
    this.data.checkReady();
  }

  // ---------------------------------------------------------------- info

  settings(): BucketSettings {
    return { ...this.data.settings };
  }

  info(): BucketInfo {
    let count = 0n;
    let oldest = 0n;
    let latest = 0n;
    let first = true;
    for (const e of this.data.entries.values()) {
      if (!isMetaEntry(e.name)) count++;
      if (e.recordCount === 0) continue;
      const o = e.oldest;
      const l = e.latest;
      if (first || o < oldest) oldest = o;
      if (first || l > latest) latest = l;
      first = false;
    }
    return {
      name: this.name,
      entry_count: count,
      size: BigInt(this.data.account.bytes),
      oldest_record: oldest,
      latest_record: latest,
      is_provisioned: this.provisioned,
      status: this.status,
    };
  }

  entries(): EntryInfo[] {
    return [...this.data.entries.values()]
      .filter((e) => !isMetaEntry(e.name))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => e.info());
  }

  entryNames(): string[] {
    return [...this.data.entries.keys()].sort();
  }

  hasEntry(entry: string): boolean {
    return this.data.entries.has(entry);
  }

  // ---------------------------------------------------------------- writes

  write(entryName: string, ts: bigint, opts: WriteOptions, payload: PayloadSource): Promise<WriteOutcome> {
    return this.shared(async () => {
      const outcome = await this.writer.write(entryName, ts, opts, payload);
      if (isMetaEntry(entryName)) await this.replaceOlderAttachments(entryName, ts, opts.labels);
      return outcome;
    }, opts.batch);
  }

  writeMany(items: readonly BatchItem[]): Promise<Array<WriteOutcome | FerryError>> {
    return this.shared(async () => {
      const results = await this.writer.writeMany(items);
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        if (isMetaEntry(it.entry) && typeof results[i] === 'string') {
          await this.replaceOlderAttachments(it.entry, it.ts, it.opts.labels);
        }
      }
      return results;
    }, items[0]?.opts.batch);
  }

  /** Stages records for a commit across buckets (`Storage.applyShipment`); see RecordWriter.stage. */
  stage(items: readonly BatchItem[]): Promise<StagedBatch> {
    return this.writer.stage(items);
  }

  /**
   * The attachment rule (api.md §14.1), for every writer (HTTP, replication targets): once a
   * `$meta` record with key K is stored at `ts`, the other records of the entry with key K go.
   */
  private async replaceOlderAttachments(
    entry: string,
    ts: bigint,
    labels: Labels | undefined,
  ): Promise<void> {
    const key = labels?.key;
    if (key === undefined) return;
    const stale: bigint[] = [];
    for await (const r of this.scan(entry, 0n, U64_MAX)) {
      if (r.meta.ts !== ts && r.meta.labels.key === key) stale.push(r.meta.ts);
    }
    for (const old of stale) {
      try {
        await this.removeRecordNow(entry, old);
      } catch (e) {
        // Already gone (a concurrent upsert of the same key): nothing left to replace.
        if (!(e instanceof FerryError && e.status === 404)) throw e;
      }
    }
  }

  // ---------------------------------------------------------------- reads

  read(entryName: string, ts?: bigint): Promise<StoredRecord> {
    if (ts !== undefined) {
      // Descriptors in memory (a replication reads the records of a batch it just scanned): no
      // async frames, one settled promise (per-record reads of a copy, issue 9).
      try {
        this.checkReady();
        const entry = this.data.getEntry(entryName);
        const block = entry.blockFor(ts);
        if (block && this.services.cache.touch(block))
          return Promise.resolve(this.foundAt(entry, block, block.find(ts), ts, entryName));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.readLoading(entryName, ts);
  }

  private foundAt(
    entry: Entry,
    block: Block,
    desc: RecordDesc | undefined,
    ts: bigint,
    entryName: string,
  ): StoredRecord {
    if (!desc) throw Errors.recordNotFound(ts, this.name, entryName);
    if (desc.state === 'started') throw Errors.recordStillWritten(ts);
    return this.stored(entry, block, desc);
  }

  private async readLoading(entryName: string, ts?: bigint): Promise<StoredRecord> {
    this.checkReady();
    const entry = this.data.getEntry(entryName);
    if (ts === undefined) {
      for (let i = entry.blocks.length - 1; i >= 0; i--) {
        const b = entry.blocks[i]!;
        if (b.count === 0) continue;
        await this.services.cache.load(entry, b);
        const recs = b.records!;
        for (let j = recs.length - 1; j >= 0; j--)
          if (recs[j]!.state === 'finished') return this.stored(entry, b, recs[j]!);
      }
      throw Errors.recordNotFound(0n, this.name, entryName);
    }
    const found = await this.locate(entry, ts);
    if (!found) throw Errors.recordNotFound(ts, this.name, entryName);
    return this.foundAt(entry, found.block, found.desc, ts, entryName);
  }

  /** The record at `ts` and its block (descriptors loaded), or undefined when there is none. */
  private async locate(entry: Entry, ts: bigint): Promise<{ block: Block; desc: RecordDesc } | undefined> {
    const block = entry.blockFor(ts);
    if (!block) return undefined;
    await this.services.cache.load(entry, block);
    const desc = block.find(ts);
    return desc && { block, desc };
  }

  private stored(entry: Entry, block: Block, desc: RecordDesc): StoredRecord {
    return new BlockRecord(this.services.files, entry.dataPath(block), desc, block);
  }

  async *scan(entryName: string, start: bigint, stop: bigint): AsyncIterable<StoredRecord> {
    const entry = this.data.entries.get(entryName);
    if (!entry || start >= stop) return;
    const cache = this.services.cache;
    let lastTs: bigint | undefined;
    let bi = entry.firstBlockIndex(start);
    for (;;) {
      const block = entry.blocks[bi];
      if (!block || block.id >= stop) return;
      await cache.load(entry, block);
      // Read the next block's descriptors while this one is being consumed.
      const next = entry.blocks[bi + 1];
      if (next && next.id < stop && !next.records) void cache.load(entry, next).catch(() => {});
      const from = lastTs === undefined ? start : lastTs + 1n;
      for (let i = block.lowerBound(from); i < block.records!.length; i++) {
        const r = block.records![i]!;
        if (r.ts >= stop) return;
        if (r.state !== 'finished') continue;
        lastTs = r.ts;
        yield this.stored(entry, block, r);
        // While the consumer held the record the block may have changed, or its descriptors may
        // have been unloaded (memory budget): reload them if so.
        if (!block.records) await cache.load(entry, block);
        else block.lastUse = Date.now();
        i = block.lowerBound(lastTs + 1n) - 1;
      }
      const idx = entry.blocks.indexOf(block);
      bi = idx >= 0 ? idx + 1 : entry.firstBlockIndex(lastTs === undefined ? start : lastTs + 1n);
      if (idx < 0 && lastTs !== undefined) {
        // Block evicted meanwhile: continue after the last timestamp seen.
        while (entry.blocks[bi] && entry.blocks[bi]!.id <= lastTs && bi < entry.blocks.length - 1) bi++;
      }
    }
  }

  async countRange(
    entryName: string,
    start: bigint,
    stop: bigint,
    maxLsn?: bigint,
  ): Promise<{ records: number; bytes: number }> {
    const total = { records: 0, bytes: 0 };
    const entry = this.data.entries.get(entryName);
    if (!entry || start >= stop) return total;
    const bound = maxLsn ?? U64_MAX;
    const lsnBound = Number(bound); // exact: LSNs stay far below 2^53
    const blocks = entry.blocks.slice(entry.firstBlockIndex(start));
    for (const block of blocks) {
      if (block.id >= stop) break;
      if (block.count === 0 || block.removed) continue;
      // from the `.meta` file when it is current: a copy's count would otherwise load every block
      // once more
      const inside = block.minTs >= start && block.maxTs < stop;
      let records = 0;
      let bytes = 0;
      const fromFile = await scanCleanBlockMeta(block, entry.metaPath(block), (row) => {
        if (row.lsn > lsnBound) return;
        if (!inside) {
          const ts = row.buf.readBigUInt64LE(row.tsAt);
          if (ts < start || ts >= stop) return;
        }
        records++;
        bytes += row.size;
      });
      if (fromFile) {
        total.records += records;
        total.bytes += bytes;
        continue;
      }
      await this.services.cache.load(entry, block);
      for (const r of block.records ?? []) {
        if (r.state !== 'finished' || r.ts < start || r.ts >= stop || r.lsn > bound) continue;
        total.records++;
        total.bytes += r.size;
      }
    }
    return total;
  }

  async scanMeta(
    entryName: string,
    start: bigint,
    stop: bigint,
    maxRecords: number,
    maxBytes: number,
    accept?: (meta: RecordDesc) => boolean,
  ): Promise<{ records: RecordDesc[]; done: boolean }> {
    const records: RecordDesc[] = [];
    const entry = this.data.entries.get(entryName);
    if (!entry || start >= stop) return { records, done: true };
    const cache = this.services.cache;
    let bytes = 0;
    let from = start;
    let bi = entry.firstBlockIndex(start);
    for (;;) {
      const block = entry.blocks[bi];
      if (!block || block.id >= stop) return { records, done: true };
      await cache.load(entry, block);
      // no await from here to the end of the block: its descriptors stay as they are
      block.lastUse = Date.now();
      const recs = block.records!;
      for (let i = block.lowerBound(from); i < recs.length; i++) {
        const r = recs[i]!;
        if (r.ts >= stop) return { records, done: true };
        if (r.state !== 'finished' || (accept && !accept(r))) continue;
        if (records.length >= maxRecords || (records.length > 0 && bytes + r.size > maxBytes))
          return { records, done: false };
        records.push(r);
        bytes += r.size;
        from = r.ts + 1n;
      }
      // a block that left the entry while it was loaded: go on from the block that holds `from` now
      const idx = entry.blocks.indexOf(block);
      bi = idx >= 0 ? idx + 1 : entry.firstBlockIndex(from);
    }
  }

  rangeDigests(
    entry: string,
    queries: readonly DigestQuery[],
    filter?: RecordFilter,
  ): Promise<RangeDigest[]> {
    this.checkReady();
    return this.services.ranges.digests(this.liveEntry(entry), queries, filter);
  }

  recordSummaries(
    entry: string,
    start: bigint,
    stop: bigint,
    limit: number,
    filter?: RecordFilter,
  ): Promise<RecordSummary[]> {
    this.checkReady();
    return this.services.ranges.summaries(this.liveEntry(entry), start, stop, limit, filter);
  }

  /** An entry with records to compare: none while it is being deleted. */
  private liveEntry(name: string): Entry | undefined {
    const e = this.data.entries.get(name);
    return e && e.status !== 'DELETING' ? e : undefined;
  }

  // ---------------------------------------------------------------- compression

  blocks(entryName: string, from: bigint, to: bigint): BlockSummary[] {
    const entry = this.data.entries.get(entryName);
    if (!entry) return [];
    const last = entry.blocks[entry.blocks.length - 1];
    const out: BlockSummary[] = [];
    for (let i = entry.firstBlockIndex(from); i < entry.blocks.length; i++) {
      const b = entry.blocks[i]!;
      if (b.id >= to) break;
      if (b.id < from) continue;
      out.push({
        id: b.id,
        records: b.count,
        rawBytes: b.payloadBytes,
        maxTs: b.maxTs,
        compressed: b.compressed,
        sealed: b !== last,
      });
    }
    return out;
  }

  compressBlock(
    entryName: string,
    blockId: bigint,
    before: bigint,
  ): Promise<BlockCompressOutcome | undefined> {
    // Shared: a rename of the entry waits for it (the files it writes are in the entry's directory).
    return this.shared(async () => {
      const entry = this.data.entries.get(entryName);
      const block = entry?.blockById(blockId);
      if (!entry || !block || entry.status !== 'READY' || block.maxTs >= before) return undefined;
      return this.services.compression.compress(entry, block);
    });
  }

  // ---------------------------------------------------------------- updates and removals

  updateLabels(
    entryName: string,
    ts: bigint,
    changes: Record<string, string | null>,
    opts: LabelUpdateOptions = {},
  ): Promise<Labels> {
    return this.shared(() =>
      this.serialized(entryName, ts, async () => {
        checkLabelSet(changes);
        if (opts.origin) checkOrigin(opts.origin);
        const entry = this.data.getEntry(entryName);
        const found = await this.locate(entry, ts);
        if (found?.desc.state !== 'finished') throw Errors.recordNotFound(ts, this.name, entryName);
        const { block, desc } = found;
        const next: Labels = { ...desc.labels };
        const removed: string[] = [];
        let changed = false;
        for (const [k, v] of Object.entries(changes)) {
          if (v === null || v === '') {
            if (k in next) {
              delete next[k];
              removed.push(k);
              changed = true;
            }
          } else if (next[k] !== v) {
            next[k] = v;
            changed = true;
          }
        }
        // A no-op update is not logged: nothing to replicate, which also ends update ping-pong.
        if (!changed) return next;
        checkLabelSet(next);
        const op: UpdateOp = {
          type: OpType.Update,
          lsn: 0n,
          time: Date.now(),
          bucket: this.name,
          entry: entryName,
          ts,
          labels: next,
          removed,
          origin: opts.origin ?? '',
          size: desc.size,
          contentType: desc.contentType,
          digest: desc.digest,
        };
        await this.whileHeld(block, () =>
          this.services.commits.commit(op, () => {
            desc.labels = next;
            block.version++;
            // Descriptors only: block summaries (index.bin) do not hold labels.
            block.dirty = true;
          }),
        );
        return next;
      }),
    );
  }

  removeRecord(entryName: string, ts: bigint): Promise<void> {
    return this.shared(() => this.removeRecordNow(entryName, ts));
  }

  removeRange(
    entryName: string,
    start: bigint,
    stop: bigint,
    opts?: RangeRemovalOptions,
  ): Promise<RangeRemoval> {
    return this.shared(() => this.ranges.step(entryName, start, stop, opts));
  }

  /** `removeRecord` within an operation that already runs as `shared`. */
  private removeRecordNow(entryName: string, ts: bigint): Promise<void> {
    return this.serialized(entryName, ts, async () => {
      const entry = this.data.getEntry(entryName);
      const found = await this.locate(entry, ts);
      if (found?.desc.state !== 'finished') throw Errors.recordNotFound(ts, this.name, entryName);
      const { block, desc } = found;
      const op: RemoveRecordOp = {
        type: OpType.RemoveRecord,
        lsn: 0n,
        time: Date.now(),
        bucket: this.name,
        entry: entryName,
        ts,
      };
      await this.whileHeld(block, () =>
        this.services.commits.commit(op, () => {
          // Gone meanwhile (a bulk removal, FIFO): it was counted out then, not again now.
          if (block.removed || !block.records || block.remove(ts) === undefined) return;
          block.count--;
          block.slots--;
          block.accSize -= desc.size + desc.descSize;
          this.data.account.bytes -= desc.size + desc.descSize;
          block.dirty = true;
          entry.indexDirty = true;
          if (block.count > 0) {
            block.minTs = block.records!.find((r) => r.state === 'finished')?.ts ?? block.minTs;
            for (let i = block.records!.length - 1; i >= 0; i--) {
              if (block.records![i]!.state === 'finished') {
                block.maxTs = block.records![i]!.ts;
                break;
              }
            }
          }
        }),
      );
      // Concurrent removals of a block's last records all get here: only the first removes it.
      if (block.records?.length === 0 && block.inflight === 0 && !block.removed)
        await this.quota.removeBlockDurably(entry, block);
    });
  }

  /**
   * Runs changes of one record one after another: each computes its op from the state the previous
   * one left, which is applied only once durable (two concurrent updates must not both start from
   * the labels before either).
   */
  private serialized<T>(entry: string, ts: bigint, fn: () => Promise<T>): Promise<T> {
    const key = `${entry}\0${ts}`;
    const prev = this.recordChanges.get(key);
    const run = prev ? prev.then(fn, fn) : fn();
    const done = run.then(
      () => undefined,
      () => undefined,
    );
    this.recordChanges.set(key, done);
    void done.then(() => {
      if (this.recordChanges.get(key) === done) this.recordChanges.delete(key);
    });
    return run;
  }

  /** Keeps a block's descriptors loaded and the block in place (no eviction) while `fn` runs. */
  private async whileHeld<T>(block: Block, fn: () => Promise<T>): Promise<T> {
    block.inflight++;
    try {
      return await fn();
    } finally {
      block.inflight--;
    }
  }

  removeEntry(entryName: string): Promise<void> {
    return this.shared(async () => {
      const root = this.data.getEntry(entryName);
      const doomed = this.data.subtree(entryName);
      for (const e of doomed) e.status = 'DELETING';
      try {
        await this.services.commits.commit({
          type: OpType.RemoveEntry,
          lsn: 0n,
          time: Date.now(),
          bucket: this.name,
          entry: entryName,
        });
      } catch (e) {
        // Not removed: the entries stay usable.
        for (const d of doomed) d.status = 'READY';
        throw e;
      }
      // Deletion continues in the background; the entries answer 409 until they are gone.
      void (async () => {
        try {
          await this.services.files.forget(root.dir);
          await rm(root.dir, { recursive: true, force: true });
        } finally {
          // Writable again only once a checkpoint is past the removal: a crash before it replays
          // the removal, which would delete the files of records written to the entry anew. The
          // checkpoint writes nothing of the doomed entries (it would make their directory again).
          for (const e of doomed) {
            for (const b of e.blocks) this.data.account.bytes -= b.accSize;
            e.blocks = [];
            e.indexDirty = false;
          }
          await this.services.checkpoints.request();
          for (const e of doomed) this.data.entries.delete(e.name);
        }
      })();
    });
  }

  renameEntry(entryName: string, newName: string): Promise<void> {
    this.checkReady();
    return this.exclusiveOp(async () => {
      const data = this.data;
      const entry = data.getEntry(entryName);
      if (isMetaEntry(entryName) || isMetaEntry(newName))
        throw Errors.unprocessable('Cannot rename $meta entries');
      checkEntryName(newName);
      if (data.entries.has(newName))
        throw Errors.conflict(`Entry '${newName}' already exists in bucket '${this.name}'`);
      if (newName.startsWith(entryName + '/')) {
        throw Errors.conflict(`Cannot rename entry '${entryName}' into its own subtree '${newName}'`);
      }
      // Make every change so far durable in descriptor files first, so that the WAL holds nothing
      // that refers to the old name and would need replay.
      await this.services.checkpoints.checkpoint();
      const moved = data.subtree(entryName);
      const newDir = `${data.dir}/${newName}`;
      await this.services.files.forget(entry.dir);
      await mkdir(dirname(newDir), { recursive: true, mode: DATA_DIR_MODE });
      await rename(entry.dir, newDir);
      for (const e of moved) {
        data.entries.delete(e.name);
        const suffix = e.name.slice(entryName.length);
        e.name = newName + suffix;
        e.dir = newDir + suffix;
        for (const b of e.blocks) if (b.records) for (const r of b.records) r.entry = e.name;
        data.entries.set(e.name, e);
      }
      data.addPath(newName, false);
      await this.services.checkpoints.checkpoint();
    }).catch((e) => {
      throw e instanceof FerryError ? e : fromFsError(e);
    });
  }
}
