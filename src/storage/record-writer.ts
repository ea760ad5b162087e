/**
 * Record writes of one bucket: choose and reserve a place in a block, write the payload to the
 * block file, hand the WAL op to the group commit. A write goes down these layers once; the group
 * commit publishes the record (`Entry.publish`) when it is durable.
 */
import { createHash } from 'node:crypto';
import { compact, digestOf } from './digest.js';
import { Block, Desc, type RecordDesc } from './block.js';
import { checkEntryName, type BucketData } from './bucket-data.js';
import type { BucketServices } from './bucket-services.js';
import { descriptorSize } from './descriptor-size.js';
import { Entry } from './entry.js';
import type { BatchTicket } from './atomic-batch.js';
import type { StagedWrite } from './group-commit.js';
import type { Quota } from './quota.js';
import { OpType, type WriteOp } from './wal.js';
import { Errors, FerryError, fromFsError } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';
import { checkContentType, checkLabelSet, checkOrigin } from '../protocol/field-bounds.js';
import { DEFAULT_CONTENT_TYPE } from '../protocol/batch-v1.js';
import type { BatchItem, PayloadSource, WriteOptions, WriteOutcome } from './types.js';

/** Chunk writes of one streamed record that may be in flight at once. */
const MAX_INFLIGHT_CHUNK_WRITES = 4;
const EMPTY_DIGEST = Buffer.alloc(16);
/** Descriptors of `$meta` entries are small: their blocks hold at most this many payload bytes. */
const META_BLOCK_BYTES = 128 * 1024;

/** Records staged by `RecordWriter.stage`, committed by the caller. */
export interface StagedBatch {
  readonly writes: readonly StagedWrite[];
  /** Block files the staged payloads were written to (to be synced by the commit). */
  readonly paths: readonly string[];
  /** Indices (in the staged items) of records stored already with the same size and digest (left out). */
  readonly presentAt: readonly number[];
  /** Ends the staging once the commit settled: a commit that failed gives every reservation back. */
  settle(committed: boolean): void;
}

/** A batch record written to its block file, waiting for its digest and commit. */
interface Staged extends StagedWrite {
  /** Index of the record among the items of the call (-1 for a single write). */
  i: number;
  /** Its block file. */
  path: string;
}

export class RecordWriter {
  constructor(
    private readonly data: BucketData,
    private readonly services: BucketServices,
    private readonly quota: Quota,
  ) {}

  async write(
    entryName: string,
    ts: bigint,
    opts: WriteOptions,
    payload: PayloadSource,
  ): Promise<WriteOutcome> {
    const st = await this.stageOne(entryName, ts, opts, payload);
    if (st === 'already_present') return st;
    try {
      await this.commitStaged(opts.batch, [st], [st.path]);
      if (opts.commit) opts.commit.lsn = st.op.lsn; // given its LSN when it was framed
      return 'written';
    } catch (e) {
      // A write that never became durable leaves nothing behind: its timestamp is free again.
      this.release(st.entry, st.block, st.desc);
      throw e instanceof FerryError ? e : fromFsError(e);
    } finally {
      this.unhold(st);
    }
  }

  async writeMany(items: readonly BatchItem[]): Promise<Array<WriteOutcome | FerryError>> {
    const { services, data } = this;
    const results = new Array<WriteOutcome | FerryError>(items.length);
    // Records staged here are digested below, all at once; those of the single-record path
    // (quotas and unusual cases) come digested. All are committed together, in one commit.
    const fast: Staged[] = [];
    const staged: Staged[] = [];
    const paths = new Set<string>();
    const quota = data.settings.quota_type !== 'NONE';
    const time = Date.now();
    let lastName: string | undefined;
    let entry: Entry | undefined;
    try {
      services.slots.checkWritable(data.name);
    } catch (e) {
      return results.fill(e as FerryError);
    }
    const single = async (i: number): Promise<void> => {
      const it = items[i]!;
      const st = await this.stageOne(it.entry, it.ts, it.opts, it.payload);
      if (st === 'already_present') results[i] = st;
      else {
        st.i = i;
        staged.push(st);
        paths.add(st.path);
      }
    };
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      try {
        if (quota) {
          await single(i);
          continue;
        }
        if (it.entry !== lastName) {
          checkEntryName(it.entry);
          const got = data.ensureEntry(it.entry);
          entry = got instanceof Entry ? got : await got;
          lastName = it.entry;
        }
        const e = entry!;
        checkRecordFields(it.opts);
        const size = it.payload.length;
        if (size !== it.opts.size)
          throw size < it.opts.size ? Errors.contentSmaller() : Errors.contentBigger();
        const block = this.chooseBlock(e, it.ts, size);
        // Idempotent re-delivery, conflicts and blocks not in memory: the single-record rules.
        if (!block.records || block.compressed || block.transition || block.find(it.ts)) {
          await single(i);
          continue;
        }
        const desc = this.reserve(it.entry, block, it.ts, size, it.opts);
        block.inflight++;
        data.account.reserved += size;
        const path = e.dataPath(block);
        const st: Staged = {
          entry: e,
          block,
          desc,
          op: this.writeOpFor(desc, block, EMPTY_DIGEST, time),
          i,
          path,
        };
        try {
          const pending = services.files.writeAt(path, desc.offset, it.payload);
          if (pending) await pending;
        } catch (err) {
          this.release(e, block, desc);
          this.unhold(st);
          throw err;
        }
        fast.push(st);
        paths.add(path);
      } catch (err) {
        results[i] = err instanceof FerryError ? err : fromFsError(err);
      }
    }
    if (fast.length > 0) {
      const digests = await services.digests.digestMany(fast.map((st) => items[st.i]!.payload));
      for (let k = 0; k < fast.length; k++) {
        const st = fast[k]!;
        const digest = digests[k]!;
        try {
          checkDigest(items[st.i]!.opts, digest, st.desc.ts);
        } catch (err) {
          this.release(st.entry, st.block, st.desc);
          this.unhold(st);
          results[st.i] = err as FerryError;
          continue;
        }
        st.desc.digest = digest;
        st.op.digest = digest;
        staged.push(st);
      }
    }
    const ticket = items[0]?.opts.batch;
    if (staged.length === 0) {
      ticket?.leave();
      return results;
    }
    try {
      await this.commitStaged(ticket, staged, [...paths]);
      for (const st of staged) {
        results[st.i] = 'written';
        const commit = items[st.i]!.opts.commit;
        if (commit) commit.lsn = st.op.lsn;
      }
    } catch (err) {
      const fe = err instanceof FerryError ? err : fromFsError(err);
      for (const st of staged) {
        this.release(st.entry, st.block, st.desc);
        results[st.i] = fe;
      }
    } finally {
      for (const st of staged) this.unhold(st);
    }
    return results;
  }

  /**
   * Everything of a single-record write but its commit: checks, quota, reservation, payload and
   * digest. Throws (leaving nothing behind) when the record cannot be written; the caller
   * commits the staged record, releases it if that fails, and `unhold`s it in any case.
   */
  private async stageOne(
    entryName: string,
    ts: bigint,
    opts: WriteOptions,
    payload: PayloadSource,
  ): Promise<Staged | 'already_present'> {
    checkEntryName(entryName);
    checkRecordFields(opts);
    const { services, data } = this;
    services.slots.checkWritable(data.name);
    const size = opts.size;
    if (!Number.isSafeInteger(size) || size < 0) throw Errors.unprocessable('Invalid content length');
    // Before the entry exists: a refused write creates nothing.
    await this.quota.makeRoom(size, isMetaEntry(entryName));
    const got = data.ensureEntry(entryName);
    const entry = got instanceof Entry ? got : await got;

    // Choose and reserve without an await in between, so that concurrent writers see each
    // other's reservations (block-full rule, offsets).
    let block = this.chooseBlock(entry, ts, size);
    // A compressed block (lifecycle `compress`) is made plain again before anything is written.
    while (!block.records || block.compressed || block.transition) {
      await (block.records
        ? services.compression.makePlain(entry, block)
        : services.cache.load(entry, block));
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
        // a sender that gave a digest wants to know whether this is its record: not yet decided
        // while the one stored is still being written (perhaps this very record, sent twice)
        if (existing.state !== 'finished' && opts.digest && existing.size === size)
          throw Errors.recordStillWritten(ts);
        throw Errors.recordExists(ts);
      }
      desc = this.reserve(entryName, block, ts, size, opts);
    } catch (e) {
      block.inflight--;
      this.dropIfEmpty(entry, block);
      throw e;
    }

    data.account.reserved += size;
    const path = entry.dataPath(block);
    const st: Staged = { entry, block, desc, op: this.writeOpFor(desc, block, EMPTY_DIGEST), i: -1, path };
    try {
      const digest = await this.writePayload(path, desc.offset, size, payload);
      checkDigest(opts, digest, ts);
      desc.digest = digest;
      st.op.digest = digest;
      st.op.time = Date.now(); // its commit time: after a streamed payload arrived
      return st;
    } catch (e) {
      this.release(entry, block, desc);
      this.unhold(st);
      throw e instanceof FerryError ? e : fromFsError(e);
    }
  }

  /** Commits staged records on their own, or with the rest of their atomic batch. */
  private commitStaged(
    ticket: BatchTicket | undefined,
    writes: readonly StagedWrite[],
    paths: readonly string[],
  ): Promise<void> {
    const commits = this.services.commits;
    return ticket ? ticket.join(commits, writes, paths) : commits.commitWrites(writes, paths);
  }

  /** Ends a staged record's hold on its block and on the bucket's reserved bytes. */
  private unhold(st: Staged): void {
    this.data.account.reserved -= st.desc.size;
    st.block.inflight--;
    this.dropIfEmpty(st.entry, st.block);
  }

  /**
   * Stages records for a commit that the caller makes together with other buckets' records
   * (`Storage.applyShipment`): reserves them, writes their payloads and digests, and commits
   * nothing. All or nothing: a record that cannot be staged releases every other one and throws.
   * A record already stored with the same size and digest is left out (listed in `presentAt`).
   */
  async stage(items: readonly BatchItem[]): Promise<StagedBatch> {
    const { services, data } = this;
    services.slots.checkWritable(data.name);
    let total = 0;
    for (const it of items) {
      checkEntryName(it.entry);
      checkRecordFields(it.opts);
      if (it.payload.length !== it.opts.size)
        throw it.payload.length < it.opts.size ? Errors.contentSmaller() : Errors.contentBigger();
      total += it.opts.size;
    }
    await this.quota.makeRoom(total, items.length > 0 && items.every((it) => isMetaEntry(it.entry)));
    const staged: Staged[] = [];
    const paths = new Set<string>();
    const presentAt: number[] = [];
    const settle = (committed: boolean): void => {
      for (const st of staged) {
        if (!committed) this.release(st.entry, st.block, st.desc);
        st.block.inflight--;
        data.account.reserved -= st.desc.size;
        this.dropIfEmpty(st.entry, st.block);
      }
    };
    const time = Date.now();
    try {
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        const got = data.ensureEntry(it.entry);
        const entry = got instanceof Entry ? got : await got;
        let block = this.chooseBlock(entry, it.ts, it.opts.size);
        while (!block.records) {
          await services.cache.load(entry, block);
          block = this.chooseBlock(entry, it.ts, it.opts.size);
        }
        const existing = block.find(it.ts);
        if (existing) {
          const digest = it.opts.digest?.subarray(0, 16);
          const same = existing.state === 'finished' && existing.size === it.opts.size;
          if (same && digest && existing.digest.equals(digest)) {
            presentAt.push(i);
            continue;
          }
          throw Errors.recordExists(it.ts);
        }
        const desc = this.reserve(it.entry, block, it.ts, it.opts.size, it.opts);
        block.inflight++;
        data.account.reserved += desc.size;
        const path = entry.dataPath(block);
        staged.push({ entry, block, desc, op: this.writeOpFor(desc, block, EMPTY_DIGEST, time), i, path });
        paths.add(path);
        const pending = services.files.writeAt(path, desc.offset, it.payload);
        if (pending) await pending;
      }
      const digests = await services.digests.digestMany(staged.map((st) => items[st.i]!.payload));
      for (let k = 0; k < staged.length; k++) {
        const st = staged[k]!;
        checkDigest(items[st.i]!.opts, digests[k]!, st.desc.ts);
        st.desc.digest = digests[k]!;
        st.op.digest = digests[k]!;
      }
    } catch (e) {
      settle(false);
      throw e instanceof FerryError ? e : fromFsError(e);
    }
    return { writes: staged, paths: [...paths], presentAt, settle };
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
  private writeOpFor(desc: RecordDesc, block: Block, digest: Buffer, time = Date.now()): WriteOp {
    return {
      type: OpType.Write,
      lsn: 0n,
      time,
      bucket: this.data.name,
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

  private async writePayload(
    path: string,
    offset: number,
    size: number,
    payload: PayloadSource,
  ): Promise<Buffer> {
    const files = this.services.files;
    if (Buffer.isBuffer(payload)) {
      if (payload.length < size) throw Errors.contentSmaller();
      if (payload.length > size) throw Errors.contentBigger();
      if (size > 0) {
        const p = files.writeAt(path, offset, payload);
        if (p) await p;
      }
      // One-shot hashing is much cheaper than a Hash object for small payloads.
      return digestOf(payload);
    }
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

  /** Picks the block for a record (api.md §21.2: append, belated, or a new block when full). */
  private chooseBlock(entry: Entry, ts: bigint, size: number): Block {
    const blocks = entry.blocks;
    const last = blocks[blocks.length - 1];
    const s = this.data.settings;
    const maxSize = isMetaEntry(entry.name) ? META_BLOCK_BYTES : Number(s.max_block_size);
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
      this.services.cache.track(block);
    }
    return block;
  }

  /** Gives back the reservation of a write that failed (descriptor, block space). */
  private release(entry: Entry, block: Block, desc: RecordDesc): void {
    block.unreserve(desc);
    entry.indexDirty = true;
  }

  /** Drops a block that a failed write created and that holds nothing (nor anything in flight). */
  private dropIfEmpty(entry: Entry, block: Block): void {
    if (block.inflight === 0 && block.records && block.records.length === 0 && block.count === 0) {
      if (!block.removed) entry.removeBlock(block);
      this.services.cache.forget(block);
    }
  }
}

/**
 * 422 naming the field when a record's metadata breaks a bound of `limits.ts` — the last line of
 * defence behind the HTTP edge, so that the WAL encoder is never handed what it cannot frame.
 */
function checkRecordFields(opts: WriteOptions): void {
  if (opts.contentType) checkContentType(opts.contentType);
  if (opts.origin) checkOrigin(opts.origin);
  if (opts.labels) checkLabelSet(opts.labels);
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
