/**
 * Bucket implementation: entries, record writes with quotas, reads, scans, label updates and
 * removals. Durability and ordering come from the engine's group commit (`engine.commit`).
 */
import { createHash } from 'node:crypto';
import { compact, digestOf } from './digest.js';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Block, Desc, type RecordDesc } from './block.js';
import { Entry } from './entry.js';
import { BlockRecord } from './block-record.js';
import { descriptorSize } from './descriptor-size.js';
import { OpType, type WriteOp } from './wal.js';
import type { EngineInternals } from './engine-internals.js';
import { Errors, FerryError, fromFsError } from '../protocol/errors.js';
import { isMetaEntry, validateEntryName } from '../protocol/names.js';
import { DEFAULT_CONTENT_TYPE } from '../protocol/batch-v1.js';
import type {
  BatchItem,
  Bucket,
  BucketInfo,
  BucketSettings,
  EntryInfo,
  LabelUpdateOptions,
  Labels,
  PayloadSource,
  Status,
  StoredRecord,
  WriteOptions,
  WriteOutcome,
} from './types.js';

/** Chunk writes of one streamed record that may be in flight at once. */
const MAX_INFLIGHT_CHUNK_WRITES = 4;
const EMPTY_DIGEST = Buffer.alloc(16);
/** Entry names are path components: only names valid per api.md §3.7 ever reach the file system. */
const checkEntryName = (name: string): void => validateEntryName(name, { allowMeta: true });

export class BucketImpl implements Bucket {
  entriesMap = new Map<string, Entry>();
  status: Status = 'READY';
  /** Σ payload + descriptor sizes of finished records. */
  accSize = 0;
  /** Payload bytes of writes in flight (counted against quotas). */
  reservedBytes = 0;
  private active = 0;
  private exclusive: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  constructor(
    public name: string,
    public dir: string,
    private currentSettings: BucketSettings,
    readonly provisioned: boolean,
    private readonly engine: EngineInternals,
  ) {}

  // ---------------------------------------------------------------- concurrency

  /** Runs an operation that may run alongside others (writes, updates, removals of records). */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
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
    if (this.status === 'DELETING') throw Errors.bucketDeleting(this.name);
  }

  // ---------------------------------------------------------------- info

  settings(): BucketSettings {
    return { ...this.currentSettings };
  }

  setSettings(s: BucketSettings): void {
    this.currentSettings = s;
  }

  info(): BucketInfo {
    let count = 0n;
    let oldest = 0n;
    let latest = 0n;
    let first = true;
    for (const e of this.entriesMap.values()) {
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
      size: BigInt(this.accSize),
      oldest_record: oldest,
      latest_record: latest,
      is_provisioned: this.provisioned,
      status: this.status,
    };
  }

  entries(): EntryInfo[] {
    return [...this.entriesMap.values()]
      .filter((e) => !isMetaEntry(e.name))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => e.info());
  }

  entryNames(): string[] {
    return [...this.entriesMap.keys()].sort();
  }

  hasEntry(entry: string): boolean {
    return this.entriesMap.has(entry);
  }

  private getEntry(name: string): Entry {
    const e = this.entriesMap.get(name);
    if (!e) throw Errors.entryNotFound(name, this.name);
    if (e.status === 'DELETING') throw Errors.entryDeleting(name, this.name);
    return e;
  }

  /** Finds or creates an entry and its implicit parents. */
  ensureEntry(name: string): Entry | Promise<Entry> {
    const existing = this.entriesMap.get(name);
    if (existing) {
      if (existing.status === 'DELETING') throw Errors.entryDeleting(name, this.name);
      return existing;
    }
    return this.createEntry(name);
  }

  /** The entry `name` and every entry below it. */
  subtree(name: string): Entry[] {
    const below = name + '/';
    return [...this.entriesMap.values()].filter((e) => e.name === name || e.name.startsWith(below));
  }

  /** Registers the parents of `name` that are missing (and `name` itself when `inclusive`). */
  private addPath(name: string, inclusive: boolean): void {
    const parts = name.split('/');
    for (let i = 1; i <= (inclusive ? parts.length : parts.length - 1); i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.entriesMap.has(p)) this.entriesMap.set(p, new Entry(p, `${this.dir}/${p}`));
    }
  }

  private async createEntry(name: string): Promise<Entry> {
    checkEntryName(name);
    const dir = `${this.dir}/${name}`;
    await mkdir(dir, { recursive: true });
    this.addPath(name, true);
    return this.entriesMap.get(name)!;
  }

  // ---------------------------------------------------------------- writes

  write(entryName: string, ts: bigint, opts: WriteOptions, payload: PayloadSource): Promise<WriteOutcome> {
    return this.shared(() => this.doWrite(entryName, ts, opts, payload));
  }

  private async doWrite(
    entryName: string,
    ts: bigint,
    opts: WriteOptions,
    payload: PayloadSource,
  ): Promise<WriteOutcome> {
    checkEntryName(entryName);
    this.engine.checkWritable(this.name);
    const size = opts.size;
    if (!Number.isSafeInteger(size) || size < 0) throw Errors.unprocessable('Invalid content length');
    const got = this.ensureEntry(entryName);
    const entry = got instanceof Entry ? got : await got;
    if (this.currentSettings.quota_type !== 'NONE') await this.enforceQuota(size, isMetaEntry(entryName));

    // Choose and reserve without an await in between, so that concurrent writers see each
    // other's reservations (block-full rule, offsets).
    let block = this.chooseBlock(entry, ts, size);
    while (!block.records) {
      await this.engine.loadBlock(entry, block);
      block = this.chooseBlock(entry, ts, size);
    }
    block.inflight++;
    let desc: RecordDesc;
    try {
      const existing = block.find(ts);
      if (existing) {
        if (existing.state === 'finished' && opts.digest && existing.size === size) {
          if (existing.digest.equals(opts.digest.subarray(0, 16))) {
            // A failed drain leaves through the catch below, which releases the block once.
            await drain(payload);
            block.inflight--;
            return 'already_present';
          }
        }
        if (existing.state !== 'errored' || existing.size !== size) throw Errors.recordExists(ts);
        // An errored upload of the same size may be overwritten (retried transfers, api.md §3.8).
        desc = existing;
        desc.state = 'started';
        desc.labels = opts.labels ?? {};
        desc.contentType = opts.contentType || DEFAULT_CONTENT_TYPE;
        desc.origin = opts.origin ?? '';
      } else {
        desc = this.reserve(entryName, block, ts, size, opts);
      }
    } catch (e) {
      block.inflight--;
      this.dropIfEmpty(entry, block);
      throw e;
    }

    this.reservedBytes += size;
    const path = entry.dataPath(block);
    try {
      const digest = await this.writePayload(path, desc.offset, size, payload);
      checkDigest(opts, digest, ts);
      await this.engine.commit(this.writeOpFor(block, desc, digest), path, (lsn) =>
        this.finishWrite(entry, block, desc, digest, lsn),
      );
      return 'written';
    } catch (e) {
      desc.state = 'errored';
      throw e instanceof FerryError ? e : fromFsError(e);
    } finally {
      this.reservedBytes -= size;
      block.inflight--;
    }
  }

  /** Reserves the next offset of `block` for a new record (no await may precede it). */
  private reserve(entryName: string, block: Block, ts: bigint, size: number, opts: WriteOptions): RecordDesc {
    const contentType = opts.contentType || DEFAULT_CONTENT_TYPE;
    const labels = opts.labels ?? {};
    const offset = block.payloadBytes;
    block.payloadBytes += size;
    block.slots++;
    const desc = new Desc(
      entryName,
      ts,
      size,
      contentType,
      labels,
      'started',
      opts.origin ?? '',
      offset,
      descriptorSize(ts, offset, size, contentType, labels),
      0n,
      EMPTY_DIGEST,
    );
    block.insert(desc);
    return desc;
  }

  /** The WAL op that makes a written record durable. */
  private writeOpFor(block: Block, desc: RecordDesc, digest: Buffer, time = Date.now()): WriteOp {
    return {
      type: OpType.Write,
      lsn: 0n,
      time,
      bucket: this.name,
      entry: desc.entry,
      ts: desc.ts,
      blockId: block.id,
      offset: desc.offset,
      size: desc.size,
      descSize: desc.descSize,
      contentType: desc.contentType,
      labels: desc.labels,
      digest,
      origin: desc.origin,
    };
  }

  /** Makes a durable record visible and accounts for it. */
  private finishWrite(entry: Entry, block: Block, desc: RecordDesc, digest: Buffer, lsn: bigint): void {
    desc.digest = digest;
    desc.lsn = lsn;
    desc.state = 'finished';
    const ts = desc.ts;
    block.count++;
    block.accSize += desc.size + desc.descSize;
    if (block.count === 1 || ts < block.minTs) block.minTs = ts;
    if (block.count === 1 || ts > block.maxTs) block.maxTs = ts;
    if (lsn > block.maxLsn) block.maxLsn = lsn;
    block.dirty = true;
    entry.indexDirty = true;
    this.accSize += desc.size + desc.descSize;
  }

  writeMany(items: readonly BatchItem[]): Promise<Array<WriteOutcome | FerryError>> {
    return this.shared(() => this.doWriteMany(items));
  }

  private async doWriteMany(items: readonly BatchItem[]): Promise<Array<WriteOutcome | FerryError>> {
    const results = new Array<WriteOutcome | FerryError>(items.length);
    // Quotas and unusual cases take the single-record path; the common case is done in one pass.
    const slow: number[] = [];
    const ops: WriteOp[] = [];
    const staged: Array<{ entry: Entry; block: Block; desc: RecordDesc; digest: Buffer; i: number }> = [];
    const paths = new Set<string>();
    const quota = this.currentSettings.quota_type !== 'NONE';
    let lastName: string | undefined;
    let entry: Entry | undefined;
    try {
      this.engine.checkWritable(this.name);
    } catch (e) {
      return results.fill(e as FerryError);
    }
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (quota) {
        slow.push(i);
        continue;
      }
      try {
        if (it.entry !== lastName) {
          checkEntryName(it.entry);
          const got = this.ensureEntry(it.entry);
          entry = got instanceof Entry ? got : await got;
          lastName = it.entry;
        }
        const e = entry!;
        const size = it.payload.length;
        if (size !== it.opts.size)
          throw size < it.opts.size ? Errors.contentSmaller() : Errors.contentBigger();
        const block = this.chooseBlock(e, it.ts, size);
        if (!block.records) {
          slow.push(i);
          continue;
        }
        const existing = block.find(it.ts);
        if (existing) {
          // Idempotent re-delivery, errored overwrite and conflicts: the single-record rules.
          slow.push(i);
          continue;
        }
        const desc = this.reserve(it.entry, block, it.ts, size, it.opts);
        block.inflight++;
        this.reservedBytes += size;
        const path = e.dataPath(block);
        try {
          const pending = this.engine.files.writeAt(path, desc.offset, it.payload);
          if (pending) await pending;
          // Staged only once its bytes are written; digested below, all at once.
          staged.push({ entry: e, block, desc, digest: EMPTY_DIGEST, i });
          paths.add(path);
        } catch (err) {
          desc.state = 'errored';
          block.inflight--;
          this.reservedBytes -= size;
          throw err;
        }
      } catch (err) {
        results[i] = err instanceof FerryError ? err : fromFsError(err);
      }
    }
    if (staged.length > 0) {
      const digests = await this.engine.digests.digestMany(staged.map((st) => items[st.i]!.payload));
      const time = Date.now();
      let kept = 0;
      for (let k = 0; k < staged.length; k++) {
        const st = staged[k]!;
        st.digest = digests[k]!;
        try {
          checkDigest(items[st.i]!.opts, st.digest, st.desc.ts);
        } catch (err) {
          st.desc.state = 'errored';
          st.block.inflight--;
          this.reservedBytes -= st.desc.size;
          results[st.i] = err as FerryError;
          continue;
        }
        // `staged` and `ops` stay aligned.
        staged[kept++] = st;
        ops.push(this.writeOpFor(st.block, st.desc, st.digest, time));
      }
      staged.length = kept;
    }
    if (ops.length > 0) {
      try {
        await this.engine.commitMany(ops, [...paths], () => {
          for (let k = 0; k < staged.length; k++) {
            const st = staged[k]!;
            this.finishWrite(st.entry, st.block, st.desc, st.digest, ops[k]!.lsn);
            results[st.i] = 'written';
          }
        });
      } catch (err) {
        const fe = err instanceof FerryError ? err : fromFsError(err);
        for (const st of staged) {
          st.desc.state = 'errored';
          results[st.i] = fe;
        }
      } finally {
        for (const st of staged) {
          st.block.inflight--;
          this.reservedBytes -= st.desc.size;
        }
      }
    }
    for (const i of slow) {
      const it = items[i]!;
      try {
        results[i] = await this.doWrite(it.entry, it.ts, it.opts, it.payload);
      } catch (err) {
        results[i] = err instanceof FerryError ? err : fromFsError(err);
      }
    }
    return results;
  }

  private async writePayload(
    path: string,
    offset: number,
    size: number,
    payload: PayloadSource,
  ): Promise<Buffer> {
    const files = this.engine.files;
    if (Buffer.isBuffer(payload)) {
      if (payload.length < size) throw Errors.contentSmaller();
      if (payload.length > size) throw Errors.contentBigger();
      if (size > 0) {
        const p = files.writeAt(path, offset, payload);
        if (p) await p;
      }
      // One-shot hashing is much cheaper than a Hash object for small payloads.
      return digestOf(payload);
    } else {
      const hash = createHash('sha256');
      let written = 0;
      // Positional writes of distinct ranges are independent: keep a few in flight so that reading
      // the next chunk of the body overlaps with writing the previous ones (bounded memory).
      const inflight = new Set<Promise<void>>();
      let failure: unknown;
      try {
        for await (const chunk of payload) {
          if (chunk.length === 0) continue;
          if (written + chunk.length > size) throw Errors.contentBigger();
          hash.update(chunk);
          const p = files.writeAt(path, offset + written, chunk);
          written += chunk.length;
          if (p) {
            const tracked: Promise<void> = p.then(
              () => void inflight.delete(tracked),
              (e: unknown) => {
                inflight.delete(tracked);
                failure ??= e;
              },
            );
            inflight.add(tracked);
            if (inflight.size >= MAX_INFLIGHT_CHUNK_WRITES) await Promise.race(inflight);
          }
          if (failure !== undefined) throw failure;
        }
      } finally {
        await Promise.all(inflight);
      }
      if (failure !== undefined) throw failure;
      if (written < size) throw Errors.contentSmaller();
      return compact(hash.digest());
    }
  }

  /** Picks the block for a record (api.md §21.2: append, belated, or a new block when full). */
  private chooseBlock(entry: Entry, ts: bigint, size: number): Block {
    const blocks = entry.blocks;
    const last = blocks[blocks.length - 1];
    const s = this.currentSettings;
    const meta = isMetaEntry(entry.name);
    const maxSize = meta ? 128 * 1024 : Number(s.max_block_size);
    const maxRecords = Number(s.max_block_records);
    let block: Block | undefined;
    if (last && ts >= last.id) {
      const full = last.slots > 0 && (last.payloadBytes + size > maxSize || last.slots + 1 > maxRecords);
      // Compare with the highest timestamp reserved in the block (in-flight writes included), so
      // that block ranges never overlap and scans stay in order.
      const recs = last.records;
      const lastTs = recs && recs.length > 0 ? recs[recs.length - 1]!.ts : last.maxTs;
      block = full && ts > lastTs ? undefined : last;
    } else if (last) {
      block = entry.blockFor(ts);
    }
    if (!block) {
      block = new Block(ts);
      block.records = [];
      block.dirty = true;
      entry.addBlock(block);
      this.engine.track(block);
    }
    return block;
  }

  private dropIfEmpty(entry: Entry, block: Block): void {
    if (block.inflight === 0 && block.records && block.records.length === 0 && block.count === 0) {
      entry.removeBlock(block);
    }
  }

  /** Quotas (api.md §7.5): HARD refuses, FIFO evicts whole oldest blocks of non-`$meta` entries. */
  private async enforceQuota(incoming: number, isMeta: boolean): Promise<void> {
    const s = this.currentSettings;
    if (s.quota_type === 'NONE') return;
    const quota = Number(s.quota_size);
    const used = () => this.accSize + this.reservedBytes;
    if (s.quota_type === 'HARD') {
      if (used() + incoming > quota) throw Errors.quotaExceeded(this.name);
      return;
    }
    if (isMeta && this.name === '$system') return;
    while (used() + incoming > quota) {
      const victim = this.pickEvictionVictim();
      if (!victim) throw Errors.quotaKeepFailed(this.name);
      await this.removeBlockDurably(victim.entry, victim.block);
    }
  }

  private pickEvictionVictim(): { entry: Entry; block: Block } | undefined {
    let best: { entry: Entry; block: Block } | undefined;
    for (const e of this.entriesMap.values()) {
      if (isMetaEntry(e.name) || e.status === 'DELETING') continue;
      const b = e.blocks.find((x) => x.count > 0 || x.inflight === 0);
      if (!b || b.inflight > 0) continue;
      if (this.engine.isProtected(this.name, b)) continue;
      if (!best || b.minTs < best.block.minTs) best = { entry: e, block: b };
    }
    return best;
  }

  /** Removes a whole block: logged durably first, files deleted afterwards. */
  async removeBlockDurably(entry: Entry, block: Block): Promise<void> {
    entry.removeBlock(block);
    this.accSize -= block.accSize;
    this.engine.notifyEvicted(this.name, block);
    await this.engine.commit(
      {
        type: OpType.RemoveBlock,
        lsn: 0n,
        time: Date.now(),
        bucket: this.name,
        entry: entry.name,
        blockId: block.id,
      },
      undefined,
      () => {},
    );
    await this.engine.deleteBlockFiles(entry, block);
  }

  // ---------------------------------------------------------------- reads

  async read(entryName: string, ts?: bigint): Promise<StoredRecord> {
    this.checkReady();
    const entry = this.getEntry(entryName);
    if (ts === undefined) {
      for (let i = entry.blocks.length - 1; i >= 0; i--) {
        const b = entry.blocks[i]!;
        if (b.count === 0) continue;
        await this.engine.loadBlock(entry, b);
        const recs = b.records!;
        for (let j = recs.length - 1; j >= 0; j--)
          if (recs[j]!.state === 'finished') return this.stored(entry, b, recs[j]!);
      }
      throw Errors.recordNotFound(0n, this.name, entryName);
    }
    const found = await this.locate(entry, ts);
    if (!found) throw Errors.recordNotFound(ts, this.name, entryName);
    const { block, desc } = found;
    if (desc.state === 'started') throw Errors.recordStillWritten(ts);
    if (desc.state === 'errored') throw Errors.recordErrored(ts);
    return this.stored(entry, block, desc);
  }

  /** The record at `ts` and its block (descriptors loaded), or undefined when there is none. */
  private async locate(entry: Entry, ts: bigint): Promise<{ block: Block; desc: RecordDesc } | undefined> {
    const block = entry.blockFor(ts);
    if (!block) return undefined;
    await this.engine.loadBlock(entry, block);
    const desc = block.find(ts);
    return desc && { block, desc };
  }

  private stored(entry: Entry, block: Block, desc: RecordDesc): StoredRecord {
    return new BlockRecord(this.engine.files, entry.dataPath(block), desc);
  }

  async *scan(entryName: string, start: bigint, stop: bigint): AsyncIterable<StoredRecord> {
    const entry = this.entriesMap.get(entryName);
    if (!entry || start >= stop) return;
    let lastTs: bigint | undefined;
    let bi = entry.firstBlockIndex(start);
    for (;;) {
      const block = entry.blocks[bi];
      if (!block || block.id >= stop) return;
      await this.engine.loadBlock(entry, block);
      // Read the next block's descriptors while this one is being consumed.
      const next = entry.blocks[bi + 1];
      if (next && next.id < stop && !next.records) void this.engine.loadBlock(entry, next).catch(() => {});
      const from = lastTs === undefined ? start : lastTs + 1n;
      for (let i = block.lowerBound(from); i < block.records!.length; i++) {
        const r = block.records![i]!;
        if (r.ts >= stop) return;
        if (r.state !== 'finished') continue;
        lastTs = r.ts;
        yield this.stored(entry, block, r);
        // While the consumer held the record the block may have changed, or its descriptors may
        // have been unloaded (memory budget): reload them if so.
        if (!block.records) await this.engine.loadBlock(entry, block);
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

  // ---------------------------------------------------------------- updates and removals

  updateLabels(
    entryName: string,
    ts: bigint,
    changes: Record<string, string | null>,
    opts: LabelUpdateOptions = {},
  ): Promise<Labels> {
    return this.shared(async () => {
      const entry = this.getEntry(entryName);
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
      desc.labels = next;
      // Descriptors only: block summaries (index.bin) do not hold labels.
      block.dirty = true;
      await this.engine.commit(
        {
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
        },
        undefined,
        () => {},
      );
      return next;
    });
  }

  removeRecord(entryName: string, ts: bigint): Promise<void> {
    return this.shared(async () => {
      const entry = this.getEntry(entryName);
      const found = await this.locate(entry, ts);
      if (!found || found.desc.state === 'started') throw Errors.recordNotFound(ts, this.name, entryName);
      const { block, desc } = found;
      block.remove(ts);
      if (desc.state === 'finished') {
        block.count--;
        block.accSize -= desc.size + desc.descSize;
        this.accSize -= desc.size + desc.descSize;
      }
      block.slots--;
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
      await this.engine.commit(
        { type: OpType.RemoveRecord, lsn: 0n, time: Date.now(), bucket: this.name, entry: entryName, ts },
        undefined,
        () => {},
      );
      if (block.records!.length === 0 && block.inflight === 0) await this.removeBlockDurably(entry, block);
    });
  }

  removeEntry(entryName: string): Promise<void> {
    return this.shared(async () => {
      const root = this.getEntry(entryName);
      const doomed = this.subtree(entryName);
      for (const e of doomed) e.status = 'DELETING';
      await this.engine.commit(
        { type: OpType.RemoveEntry, lsn: 0n, time: Date.now(), bucket: this.name, entry: entryName },
        undefined,
        () => {},
      );
      // Deletion continues in the background; the entries answer 409 until they are gone.
      void (async () => {
        try {
          await this.engine.files.forget(root.dir);
          for (const e of doomed) this.removeAccounting(e);
          await rm(root.dir, { recursive: true, force: true });
        } finally {
          for (const e of doomed) this.entriesMap.delete(e.name);
          await this.engine.requestCheckpoint();
        }
      })();
    });
  }

  private removeAccounting(e: Entry): void {
    for (const b of e.blocks) this.accSize -= b.accSize;
    e.blocks = [];
  }

  renameEntry(entryName: string, newName: string): Promise<void> {
    this.checkReady();
    return this.exclusiveOp(async () => {
      const entry = this.getEntry(entryName);
      if (isMetaEntry(entryName) || isMetaEntry(newName))
        throw Errors.unprocessable('Cannot rename $meta entries');
      checkEntryName(newName);
      if (this.entriesMap.has(newName))
        throw Errors.conflict(`Entry '${newName}' already exists in bucket '${this.name}'`);
      if (newName.startsWith(entryName + '/')) {
        throw Errors.conflict(`Cannot rename entry '${entryName}' into its own subtree '${newName}'`);
      }
      // Make every change so far durable in descriptor files first, so that the WAL holds nothing
      // that refers to the old name and would need replay.
      await this.engine.checkpoint();
      const moved = this.subtree(entryName);
      const newDir = `${this.dir}/${newName}`;
      await this.engine.files.forget(entry.dir);
      await mkdir(dirname(newDir), { recursive: true });
      await rename(entry.dir, newDir);
      for (const e of moved) {
        this.entriesMap.delete(e.name);
        const suffix = e.name.slice(entryName.length);
        e.name = newName + suffix;
        e.dir = newDir + suffix;
        for (const b of e.blocks) if (b.records) for (const r of b.records) r.entry = e.name;
        this.entriesMap.set(e.name, e);
      }
      this.addPath(newName, false);
      await this.engine.checkpoint();
    }).catch((e) => {
      throw e instanceof FerryError ? e : fromFsError(e);
    });
  }
}

/** 400 when the digest a sender computed does not match the payload received. */
function checkDigest(opts: WriteOptions, digest: Buffer, ts: bigint): void {
  if (opts.digest && !opts.digest.subarray(0, 16).equals(digest)) {
    throw Errors.badRequest(`Content digest mismatch for record ${ts}: the payload was damaged in transit`);
  }
}

async function drain(payload: PayloadSource): Promise<void> {
  if (Buffer.isBuffer(payload)) return;
  for await (const _ of payload) {
    /* discard */
  }
}
