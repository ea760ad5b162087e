/**
 * Blocks: the unit of storage of an entry (api.md §3.10, §21). A block has a data file
 * (`<id>.blk`, payloads back to back) and, once checkpointed, a descriptor file (`<id>.meta`) with
 * its record descriptors. Per entry, `index.bin` summarises every block so that start-up and info
 * requests never open descriptors (start-up time does not grow with the number of records).
 */
import { readFile } from 'node:fs/promises';
import { BinaryReader, BinaryWriter, type InternCache } from './binary-codec.js';
import { crc32 } from './crc32.js';
import type { Labels, RecordMeta, RecordState } from './types.js';

/** A record descriptor: public metadata plus its place in the block. */
export interface RecordDesc extends RecordMeta {
  offset: number;
  /** Accounted descriptor size (api.md §3.9), fixed at write start. */
  descSize: number;
  lsn: bigint;
}

export class Block {
  /** Records sorted by timestamp, or undefined until loaded from `<id>.meta`. */
  records: RecordDesc[] | undefined;
  /** Finished records. */
  count = 0;
  /** Records including in-flight reservations (for the block-full rule). */
  slots = 0;
  /** Next write offset (payload bytes reserved so far). */
  payloadBytes = 0;
  /** Σ payload + descriptor of finished records. */
  accSize = 0;
  minTs = 0n;
  maxTs = 0n;
  /** Highest LSN of a write into this block (FIFO protection of pending replication). */
  maxLsn = 0n;
  /** Descriptors changed since the last checkpoint. */
  dirty = false;
  /** Set once the block left its entry (evicted or emptied): never written again. */
  removed = false;
  /** Writes in flight (a block is never evicted while it has some). */
  inflight = 0;
  /**
   * Checkpoint writes of its descriptors under way: the block is clean in memory while its
   * `.meta` on disk is still the old one, so it must stay loaded until the write is done.
   */
  persisting = 0;
  /**
   * Bumped by every change of its records (insert, publish, removal, label update): cached range
   * digests of the block (range-digest.ts) are valid only for the version they were taken at.
   */
  version = 0;
  /** Time of the last use (ms), for unloading idle descriptors. */
  lastUse = 0;
  /** The data file is `<id>.blk.zst` (compressed-block.ts), not `<id>.blk`. */
  compressed = false;
  /** A compression or restore of the data file under way (writers wait for it). */
  transition: Promise<void> | undefined;
  /** Removal of the plain data file a compression replaced, once no read still needs it. */
  retiring: Promise<void> | undefined;
  /** Reads that chose a data file and hold no descriptor of it yet (block-record.ts). */
  readers = 0;
  /** Cached data file path and the entry directory it was built from (see `Entry.dataPath`). */
  path = '';
  pathDir = '';

  constructor(readonly id: bigint) {}

  /** Index of the first record with ts >= `ts` (records must be loaded). */
  lowerBound(ts: bigint): number {
    const r = this.records!;
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r[mid]!.ts < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  find(ts: bigint): RecordDesc | undefined {
    const r = this.records!;
    // Appends (the common case) are newer than everything in the block: no search needed.
    if (r.length === 0 || r[r.length - 1]!.ts < ts) return undefined;
    const i = this.lowerBound(ts);
    const found = r[i];
    return found && found.ts === ts ? found : undefined;
  }

  insert(desc: RecordDesc): void {
    this.version++;
    const r = this.records!;
    if (r.length === 0 || r[r.length - 1]!.ts < desc.ts) r.push(desc);
    else r.splice(this.lowerBound(desc.ts), 0, desc);
  }

  remove(ts: bigint): RecordDesc | undefined {
    this.version++;
    const i = this.lowerBound(ts);
    const r = this.records![i];
    if (!r || r.ts !== ts) return undefined;
    this.records!.splice(i, 1);
    return r;
  }

  /** Counts a durable record (reserved earlier by `insert`) as finished in the block's summary. */
  publish(desc: RecordDesc, lsn: bigint): void {
    this.version++;
    desc.lsn = lsn;
    desc.state = 'finished';
    const ts = desc.ts;
    this.count++;
    this.accSize += desc.size + desc.descSize;
    if (this.count === 1 || ts < this.minTs) this.minTs = ts;
    if (this.count === 1 || ts > this.maxTs) this.maxTs = ts;
    if (lsn > this.maxLsn) this.maxLsn = lsn;
    this.dirty = true;
  }

  /**
   * Gives back the reservation of a write that never became durable: its descriptor goes and, when
   * it was the last reservation, its payload space too (a hole between other records' payloads is
   * left; it is never counted in any size).
   */
  unreserve(desc: RecordDesc): void {
    this.version++;
    const r = this.records;
    if (r) {
      const i = this.lowerBound(desc.ts);
      if (r[i] === desc) {
        r.splice(i, 1);
        this.slots--;
      }
    }
    if (desc.offset + desc.size === this.payloadBytes) this.payloadBytes = desc.offset;
  }

  /** Recomputes summary fields from loaded records (after replay or removals). */
  recompute(): void {
    let count = 0;
    let acc = 0;
    let minTs = 0n;
    let maxTs = 0n;
    let end = 0;
    let maxLsn = this.maxLsn;
    for (const r of this.records!) {
      if (r.offset + r.size > end) end = r.offset + r.size;
      if (r.state !== 'finished') continue;
      if (count === 0 || r.ts < minTs) minTs = r.ts;
      if (count === 0 || r.ts > maxTs) maxTs = r.ts;
      count++;
      acc += r.size + r.descSize;
      if (r.lsn > maxLsn) maxLsn = r.lsn;
    }
    this.count = count;
    this.slots = this.records!.length;
    this.accSize = acc;
    this.minTs = minTs;
    this.maxTs = maxTs;
    this.maxLsn = maxLsn;
    if (end > this.payloadBytes) this.payloadBytes = end;
  }
}

const META_MAGIC = 0x4d524546; // 'FERM'
const INDEX_MAGIC = 0x49524546; // 'FERI'
const STATE_CODE: Record<RecordState, number> = { started: 0, finished: 1, errored: 2 };
const CODE_STATE: RecordState[] = ['started', 'finished', 'errored'];

/**
 * The record descriptor kept in memory for every loaded record. The 16-byte digest is not a Buffer
 * of its own (a Buffer object costs ~100 bytes per record) but a place in a shared slab — the
 * `.meta` file buffer or the digest arena — viewed on demand.
 */
export class Desc implements RecordDesc {
  private digestSrc: ArrayBufferLike;
  private digestAt: number;

  constructor(
    public entry: string,
    public ts: bigint,
    public size: number,
    public contentType: string,
    public labels: Labels,
    public state: RecordState,
    public origin: string,
    public offset: number,
    public descSize: number,
    public lsn: bigint,
    digest: Buffer,
  ) {
    this.digestSrc = digest.buffer;
    this.digestAt = digest.byteOffset;
  }

  /** Every stored digest is 16 bytes (digest.ts); only the first 16 bytes of `value` are kept. */
  get digest(): Buffer {
    return Buffer.from(this.digestSrc, this.digestAt, 16);
  }

  set digest(value: Buffer) {
    this.digestSrc = value.buffer;
    this.digestAt = value.byteOffset;
  }
}

/** Ends a metadata file: its bytes followed by their CRC-32. */
function seal(w: BinaryWriter): Buffer {
  w.u32(crc32(w.view()));
  return w.view();
}

/**
 * Reads a file written by `seal`: a reader positioned after its magic number, or undefined when
 * the file is missing, shorter than `minLength`, fails its CRC or has another magic number.
 */
async function readSealed(
  path: string,
  minLength: number,
  magic: number,
): Promise<{ buf: Buffer; r: BinaryReader } | undefined> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch {
    return undefined;
  }
  if (buf.length < minLength || crc32(buf, 0, buf.length - 4) !== buf.readUInt32LE(buf.length - 4))
    return undefined;
  const r = new BinaryReader(buf, 0, buf.length - 4);
  return r.u32() === magic ? { buf, r } : undefined;
}

/** Serialises the finished records of a block. */
export function encodeBlockMeta(block: Block): Buffer {
  const records = block.records!.filter((r) => r.state === 'finished');
  const w = new BinaryWriter(64 + records.length * 96);
  w.u32(META_MAGIC).u32(records.length).u64(block.id);
  for (const r of records) {
    w.u64(r.ts).num(r.offset).num(r.size).u32(r.descSize).u64(r.lsn).u8(STATE_CODE[r.state]);
    w.str16(r.contentType).labels(r.labels).bytes(r.digest).str16(r.origin);
  }
  return seal(w);
}

/** Reads `<id>.meta`; returns undefined if missing or corrupt (the WAL then rebuilds it). */
export async function loadBlockMeta(path: string, entry: string): Promise<RecordDesc[] | undefined> {
  const sealed = await readSealed(path, 20, META_MAGIC);
  if (!sealed) return undefined;
  const { buf, r } = sealed;
  const n = r.u32();
  r.u64();
  const out: RecordDesc[] = new Array(n);
  const cts: InternCache = [];
  const names: InternCache = [];
  for (let i = 0; i < n; i++) {
    const ts = r.u64();
    const offset = r.num();
    const size = r.num();
    const descSize = r.u32();
    const lsn = r.u64();
    const state = CODE_STATE[r.u8()] ?? 'finished';
    const contentType = r.str16Interned(cts);
    const labels: Labels = r.labels(names);
    const digestAt = r.skip(16);
    const origin = r.str16();
    const digest = buf.subarray(digestAt, digestAt + 16);
    out[i] = new Desc(entry, ts, size, contentType, labels, state, origin, offset, descSize, lsn, digest);
  }
  return out;
}

/** Fields of one record of `<id>.meta` as `scanBlockMeta` hands them over (views into the file buffer). */
export interface MetaRow {
  /** Where the timestamp (u64 little-endian) starts in `buf`. */
  tsAt: number;
  size: number;
  /** The write LSN (exact: LSNs stay far below 2^53). */
  lsn: number;
  buf: Buffer;
  /** Where the 16-byte content digest starts in `buf`. */
  digestAt: number;
  /** The content type and labels, encoded, are `buf[metaStart, metaEnd)`. */
  metaStart: number;
  metaEnd: number;
}

/**
 * Visits the rows of a block whose descriptors are not in memory straight from its `.meta` file
 * (a clean block's file is current), building no descriptor. False, with the visits to be
 * discarded, when the block has descriptors in memory or unsaved changes, when the file is missing,
 * or when the block changed while it was read: the caller then uses the descriptors.
 */
export async function scanCleanBlockMeta(
  block: Block,
  path: string,
  visit: (row: MetaRow) => void,
): Promise<boolean> {
  if (block.records || block.dirty) return false;
  const version = block.version;
  return (await scanBlockMeta(path, visit)) && block.version === version;
}

/**
 * Visits the finished records of `<id>.meta` in order without building descriptors (a verifier
 * reads every block once: objects per record would cost more than the reading). Returns false when
 * the file is missing or corrupt. `row` is reused between calls.
 */
export async function scanBlockMeta(path: string, visit: (row: MetaRow) => void): Promise<boolean> {
  const sealed = await readSealed(path, 20, META_MAGIC);
  if (!sealed) return false;
  const { buf, r } = sealed;
  const n = r.u32();
  r.u64();
  const row: MetaRow = { tsAt: 0, size: 0, lsn: 0, buf, digestAt: 0, metaStart: 0, metaEnd: 0 };
  for (let i = 0; i < n; i++) {
    row.tsAt = r.skip(8);
    r.num();
    row.size = r.num();
    r.u32();
    row.lsn = r.num();
    const state = CODE_STATE[r.u8()] ?? 'finished';
    row.metaStart = r.pos;
    r.skip(r.u16());
    const labels = r.u16();
    for (let k = 0; k < labels; k++) {
      r.skip(r.u16());
      r.skip(r.u32());
    }
    row.metaEnd = r.pos;
    row.digestAt = r.skip(16);
    r.skip(r.u16());
    if (state === 'finished') visit(row);
  }
  return true;
}

/** Decodes the content type and labels of a `MetaRow` (its `metaStart`/`metaEnd` region). */
export function decodeMetaRegion(
  buf: Buffer,
  start: number,
  end: number,
): { contentType: string; labels: Labels } {
  const r = new BinaryReader(buf, start, end);
  return { contentType: r.str16(), labels: r.labels() };
}

/** Serialises the block summaries of an entry. */
export function encodeEntryIndex(blocks: Block[]): Buffer {
  const w = new BinaryWriter(16 + blocks.length * 64);
  w.u32(INDEX_MAGIC).u32(blocks.length);
  for (const b of blocks) {
    w.u64(b.id).u32(b.count).num(b.payloadBytes).num(b.accSize).u64(b.minTs).u64(b.maxTs).u64(b.maxLsn);
  }
  return seal(w);
}

/** Reads `index.bin`; undefined when missing or corrupt. */
export async function loadEntryIndex(path: string): Promise<Block[] | undefined> {
  const r = (await readSealed(path, 12, INDEX_MAGIC))?.r;
  if (!r) return undefined;
  const n = r.u32();
  const out: Block[] = [];
  for (let i = 0; i < n; i++) {
    const b = new Block(r.u64());
    b.count = r.u32();
    b.slots = b.count;
    b.payloadBytes = r.num();
    b.accSize = r.num();
    b.minTs = r.u64();
    b.maxTs = r.u64();
    b.maxLsn = r.u64();
    out.push(b);
  }
  return out;
}
