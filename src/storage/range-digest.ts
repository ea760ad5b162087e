/**
 * Range digests of an entry (replication.md §10): the SHA-256 of the sorted list of (timestamp,
 * size, content digest, content type + labels) of the finished records in a time range, built from
 * descriptors only (no payload is read). Two instances holding the same records in a range get the
 * same digest whatever their block layout, so a verifier compares ranges and descends only into
 * those that differ.
 *
 * Every record is one fixed 48-byte row: ts (u64 LE), size (u64 LE), content digest (16 bytes) and
 * the first 16 bytes of the SHA-256 of its content type and sorted labels. A range digest hashes the
 * rows back to back, so the rows of a block are kept (a slab per block, within a byte budget) and a
 * range is hashed with one native call per block. A slab is valid for the block version it was built
 * at: removals, label updates and late (out-of-order) writes bump the version (block.ts).
 */
import { createHash, hash as hashOnce } from 'node:crypto';
import { decodeMetaRegion, scanCleanBlockMeta, type Block, type RecordDesc } from './block.js';
import type { DescriptorCache } from './descriptor-cache.js';
import type { Entry } from './entry.js';
import type { Labels } from './types.js';

/** Bytes per record row. */
export const DIGEST_ROW_BYTES = 48;

/** One range asked for: `start <= ts < stop`; `split` > 1 also asks for inner boundaries. */
export interface DigestQuery {
  start: bigint;
  stop: bigint;
  /** Number of about equally populated sub-ranges whose boundaries to return (0 or 1 = none). */
  split?: number;
}

/** The digest of one range. */
export interface RangeDigest {
  /** Finished records in the range (that pass the filter). */
  count: number;
  /** SHA-256 of the records' rows, lower-case hex. */
  digest: string;
  /** Ascending timestamps inside (start, stop) cutting the range into about `split` equal parts. */
  bounds: bigint[];
}

/** What a verifier compares of one record. */
export interface RecordSummary {
  ts: bigint;
  size: number;
  /** Content digest, lower-case hex. */
  digest: string;
  contentType: string;
  labels: Labels;
}

/** Selects the records that take part (what a replication ships of an entry). */
export interface RecordFilter {
  /** Only records written after this LSN (a replication ships what was written after its creation). */
  afterLsn?: bigint;
  /** A record written earlier still takes part when this accepts it (a `since` backfill). */
  olderAccepted?: (ts: bigint) => boolean;
  /** Only records written up to this LSN (a one-shot copies what existed when it was created). */
  upToLsn?: bigint;
  /** Only records this accepts (a `when`, evaluated on metadata). */
  accept?: (ts: bigint, labels: Labels) => boolean;
}

/** Whether a finished record passes `f`. */
export function passes(f: RecordFilter, ts: bigint, labels: Labels, lsn: bigint): boolean {
  if (f.afterLsn !== undefined && lsn <= f.afterLsn && !f.olderAccepted?.(ts)) return false;
  if (f.upToLsn !== undefined && lsn > f.upToLsn) return false;
  return !f.accept || f.accept(ts, labels);
}

interface Slab {
  version: number;
  /** Smallest write LSN of its records (a filter by LSN passes whole slabs above it). */
  minLsn: bigint;
  /** Rows of the finished records in ts order. */
  rows: Buffer;
  count: number;
}

/** Default byte budget of cached slabs (about a million records). */
export const DEFAULT_SLAB_BUDGET = 48 * 1024 * 1024;

/** Blocks whose rows are read ahead of the one being hashed. */
const PREFETCH_BLOCKS = 4;

/** Cached metadata hashes: labels sets repeat a lot, their hash is computed once. */
const META_CACHE_MAX = 4096;

/** Builds and caches the rows of blocks; one per storage engine. */
export class RangeDigester {
  private readonly slabs = new Map<Block, Slab>();
  private bytes = 0;
  private readonly metaHashes = new Map<string, Buffer>();
  private readonly encodedHashes = new Map<number, { key: Buffer; hash: Buffer }>();

  constructor(
    private readonly cache: DescriptorCache,
    private readonly budget = DEFAULT_SLAB_BUDGET,
  ) {}

  /** Digests of `queries` over the records of `entry` (undefined entry = no records). */
  async digests(
    entry: Entry | undefined,
    queries: readonly DigestQuery[],
    filter?: RecordFilter,
  ): Promise<RangeDigest[]> {
    const out: RangeDigest[] = [];
    for (const q of queries) out.push(await this.digest(entry, q, filter));
    return out;
  }

  private async digest(
    entry: Entry | undefined,
    q: DigestQuery,
    filter?: RecordFilter,
  ): Promise<RangeDigest> {
    const h = createHash('sha256');
    const bounds: bigint[] = [];
    let count = 0;
    if (entry && q.start < q.stop) {
      const split = Math.max(1, Math.floor(q.split ?? 1));
      const parts: Array<{ block: Block; slab: Slab }> = [];
      let estimate = 0;
      for await (const got of this.slabsOf(entry, q.start, q.stop)) {
        parts.push(got);
        // exact without a per-record filter, an upper bound with one: enough to place boundaries
        estimate += lowerBound(got.slab, q.stop) - lowerBound(got.slab, q.start);
      }
      const step = split > 1 && estimate > split ? estimate / split : 0;
      let nextCut = step;
      for (const part of parts) {
        const block = part.block;
        let slab = part.slab;
        let descs: RecordDesc[] | undefined;
        if (filter && !passesWhole(filter, slab)) {
          await this.cache.load(entry, block);
          // the block may have changed while its descriptors loaded: rows and descriptors must agree
          if (slab.version !== block.version) slab = this.build(block);
          descs = block.records!.filter((r) => r.state === 'finished');
        }
        const i0 = lowerBound(slab, q.start);
        const i1 = lowerBound(slab, q.stop);
        if (i1 <= i0) continue;
        const take = (i: number): void => {
          if (step > 0 && count >= nextCut) {
            const ts = rowTs(slab.rows, i);
            if (ts > q.start && (bounds.length === 0 || ts > bounds[bounds.length - 1]!)) bounds.push(ts);
            while (nextCut <= count) nextCut += step;
          }
          count++;
        };
        if (!descs) {
          if (step > 0) {
            for (let i = i0; i < i1; i++) take(i);
          } else count += i1 - i0;
          h.update(slab.rows.subarray(i0 * DIGEST_ROW_BYTES, i1 * DIGEST_ROW_BYTES));
          continue;
        }
        for (let i = i0; i < i1; i++) {
          const r = descs[i]!;
          if (!passes(filter!, r.ts, r.labels, r.lsn)) continue;
          take(i);
          h.update(slab.rows.subarray(i * DIGEST_ROW_BYTES, (i + 1) * DIGEST_ROW_BYTES));
        }
      }
    }
    return { count, digest: h.digest('hex'), bounds };
  }

  /** Summaries of at most `limit` records with start <= ts < stop, ascending. */
  async summaries(
    entry: Entry | undefined,
    start: bigint,
    stop: bigint,
    limit: number,
    filter?: RecordFilter,
  ): Promise<RecordSummary[]> {
    const out: RecordSummary[] = [];
    if (!entry || start >= stop) return out;
    for (const block of blocksOf(entry, start, stop)) {
      await this.cache.load(entry, block);
      const recs = block.records!;
      for (let i = block.lowerBound(start); i < recs.length; i++) {
        const r = recs[i]!;
        if (r.ts >= stop || out.length >= limit) return out;
        if (r.state !== 'finished' || (filter && !passes(filter, r.ts, r.labels, r.lsn))) continue;
        out.push({
          ts: r.ts,
          size: r.size,
          digest: r.digest.toString('hex'),
          contentType: r.contentType,
          labels: { ...r.labels },
        });
      }
    }
    return out;
  }

  /** The slab of every non-empty block meeting [start, stop), in order. */
  private async *slabsOf(
    entry: Entry,
    start: bigint,
    stop: bigint,
  ): AsyncGenerator<{ block: Block; slab: Slab }> {
    // the next blocks' rows are read while this one is hashed (file reads dominate a cold run)
    const ahead: Array<{ block: Block; slab: Promise<Slab> }> = [];
    const blocks = blocksOf(entry, start, stop);
    const fill = (): void => {
      while (ahead.length < PREFETCH_BLOCKS) {
        const next = blocks.next();
        if (next.done) return;
        if (next.value.count === 0) continue;
        const slab = this.slab(entry, next.value);
        slab.catch(() => undefined); // awaited below; a failure then surfaces there
        ahead.push({ block: next.value, slab });
      }
    };
    fill();
    while (ahead.length > 0) {
      const { block, slab } = ahead.shift()!;
      const got = await slab;
      fill();
      yield { block, slab: got };
    }
  }

  private async slab(entry: Entry, block: Block): Promise<Slab> {
    for (;;) {
      const cached = this.slabs.get(block);
      if (cached && cached.version === block.version) {
        // most recently used last
        this.slabs.delete(block);
        this.slabs.set(block, cached);
        return cached;
      }
      if (cached) this.drop(block, cached);
      // from the `.meta` file when it is current, else from the descriptors
      const fromFile = await this.buildFromFile(entry, block);
      if (fromFile) {
        if (!block.removed) this.keep(block, fromFile);
        return fromFile;
      }
      await this.cache.load(entry, block);
      if (!block.records) continue; // unloaded again meanwhile
      const slab = this.build(block);
      if (!block.removed) this.keep(block, slab);
      return slab;
    }
  }

  /** The rows of a clean block read straight from its `.meta` file (no descriptor objects), if current. */
  private async buildFromFile(entry: Entry, block: Block): Promise<Slab | undefined> {
    const version = block.version;
    let rows = Buffer.allocUnsafeSlow(Math.max(1, block.count) * DIGEST_ROW_BYTES);
    let n = 0;
    let minLsn = Infinity;
    const ok = await scanCleanBlockMeta(block, entry.metaPath(block), (r) => {
      if ((n + 1) * DIGEST_ROW_BYTES > rows.length) {
        const bigger = Buffer.allocUnsafeSlow(rows.length * 2);
        rows.copy(bigger);
        rows = bigger;
      }
      if (r.lsn < minLsn) minLsn = r.lsn;
      const at = n * DIGEST_ROW_BYTES;
      // byte loops: Buffer#copy costs more in its checks than in copying 8 or 16 bytes (a cold
      // verify of a million records spent a third of its CPU there)
      copyBytes(r.buf, r.tsAt, rows, at, 8);
      writeSize(rows, r.size, at + 8);
      copyBytes(r.buf, r.digestAt, rows, at + 16, 16);
      copyBytes(this.encodedMetaHash(r.buf, r.metaStart, r.metaEnd), 0, rows, at + 32, 16);
      n++;
    });
    if (!ok) return undefined;
    const min = minLsn === Infinity ? 0n : BigInt(minLsn);
    return { version, minLsn: min, rows: rows.subarray(0, n * DIGEST_ROW_BYTES), count: n };
  }

  /**
   * `metaHash` of an encoded content type and labels, cached by their bytes: looked up by an
   * FNV-1a hash of the bytes and confirmed byte by byte (no string per record).
   */
  private encodedMetaHash(buf: Buffer, start: number, end: number): Buffer {
    let fnv = 0x811c9dc5;
    for (let i = start; i < end; i++) fnv = Math.imul(fnv ^ buf[i]!, 0x01000193);
    const known = this.encodedHashes.get(fnv);
    if (known && sameBytes(known.key, buf, start, end)) return known.hash;
    const { contentType, labels } = decodeMetaRegion(buf, start, end);
    const hash = this.metaHash(contentType, labels);
    if (this.encodedHashes.size >= META_CACHE_MAX) this.encodedHashes.clear();
    this.encodedHashes.set(fnv, { key: Buffer.from(buf.subarray(start, end)), hash });
    return hash;
  }

  private build(block: Block): Slab {
    const recs = block.records!;
    const rows = Buffer.allocUnsafeSlow(recs.length * DIGEST_ROW_BYTES);
    let n = 0;
    let minLsn: bigint | undefined;
    for (const r of recs) {
      if (r.state !== 'finished') continue;
      if (minLsn === undefined || r.lsn < minLsn) minLsn = r.lsn;
      const at = n * DIGEST_ROW_BYTES;
      rows.writeBigUInt64LE(r.ts, at);
      writeSize(rows, r.size, at + 8);
      r.digest.copy(rows, at + 16, 0, 16);
      this.metaHash(r.contentType, r.labels).copy(rows, at + 32, 0, 16);
      n++;
    }
    return {
      version: block.version,
      minLsn: minLsn ?? 0n,
      rows: n === recs.length ? rows : rows.subarray(0, n * DIGEST_ROW_BYTES),
      count: n,
    };
  }

  private keep(block: Block, slab: Slab): void {
    this.slabs.set(block, slab);
    this.bytes += slab.rows.length;
    for (const [b, s] of this.slabs) {
      if (this.bytes <= this.budget) break;
      this.drop(b, s);
    }
    // blocks that left their entry (evicted, emptied) are never asked for again
    if (this.slabs.size > 64 && Math.random() < 0.01) {
      for (const [b, s] of this.slabs) if (b.removed) this.drop(b, s);
    }
  }

  private drop(block: Block, slab: Slab): void {
    if (this.slabs.get(block) === slab) {
      this.slabs.delete(block);
      this.bytes -= slab.rows.length;
    }
  }

  /** 16 bytes of the SHA-256 of the content type and the labels sorted by name. */
  private metaHash(contentType: string, labels: Labels): Buffer {
    const keys = Object.keys(labels).sort();
    const parts: string[] = [contentType];
    for (const k of keys) parts.push(k, labels[k]!);
    const key = JSON.stringify(parts);
    let h = this.metaHashes.get(key);
    if (!h) {
      h = hashOnce('sha256', key, 'buffer') as unknown as Buffer;
      if (this.metaHashes.size >= META_CACHE_MAX) this.metaHashes.clear();
      this.metaHashes.set(key, h);
    }
    return h;
  }

  /** Bytes of cached slabs (tests). */
  get cachedBytes(): number {
    return this.bytes;
  }
}

/** Blocks of `entry` that may hold records with start <= ts < stop, in order (live while iterated). */
function* blocksOf(entry: Entry, start: bigint, stop: bigint): Generator<Block> {
  let bi = entry.firstBlockIndex(start);
  let last: bigint | undefined;
  for (;;) {
    const blocks = entry.blocks;
    // the array may have changed while the caller awaited: find the block after the last one
    if (last !== undefined && blocks[bi - 1]?.id !== last) {
      bi = entry.firstBlockIndex(last + 1n);
      while (blocks[bi] && blocks[bi]!.id <= last) bi++;
    }
    const block = blocks[bi];
    if (!block || block.id >= stop) return;
    last = block.id;
    bi++;
    yield block;
  }
}

/** Writes a payload size as a u64 little-endian (sizes are exact numbers below 2^53). */
function writeSize(rows: Buffer, size: number, at: number): void {
  let lo = size % 0x100000000;
  let hi = Math.floor(size / 0x100000000);
  for (let i = 0; i < 4; i++, lo = Math.floor(lo / 256), hi = Math.floor(hi / 256)) {
    rows[at + i] = lo & 0xff;
    rows[at + 4 + i] = hi & 0xff;
  }
}

/** Copies `n` bytes of `src` from `from` into `dst` at `at`. */
function copyBytes(src: Buffer, from: number, dst: Buffer, at: number, n: number): void {
  for (let i = 0; i < n; i++) dst[at + i] = src[from + i]!;
}

/** Whether `key` holds the bytes `buf[start, end)`. */
function sameBytes(key: Buffer, buf: Buffer, start: number, end: number): boolean {
  if (key.length !== end - start) return false;
  for (let i = 0; i < key.length; i++) if (key[i] !== buf[start + i]) return false;
  return true;
}

function rowTs(rows: Buffer, i: number): bigint {
  return rows.readBigUInt64LE(i * DIGEST_ROW_BYTES);
}

/** Index of the first row with ts >= `ts`. */
function lowerBound(slab: Slab, ts: bigint): number {
  let lo = 0;
  let hi = slab.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (rowTs(slab.rows, mid) < ts) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Every record of the slab passes `f` (no per-record condition, all written after its LSN). */
function passesWhole(f: RecordFilter, slab: Slab): boolean {
  return !f.accept && f.upToLsn === undefined && (f.afterLsn === undefined || slab.minLsn > f.afterLsn);
}
