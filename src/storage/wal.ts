/**
 * Write-ahead log: the single durable, ordered log of every metadata change of the instance.
 * It is both the storage engine's redo log (replayed from the last checkpoint at start) and the
 * replication transaction log (replication slots read it by LSN), so a write is logged for
 * replication in the same fsync that makes it durable.
 *
 * Layout: `wal/<20-digit first LSN>.wal` segments of frames `[u32 len][u32 crc32][payload]`.
 * A torn or corrupt tail is cut at the last valid frame; nothing before it is ever discarded.
 */
import { open, readdir, unlink, mkdir, stat, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from './crc32.js';
import { BinaryReader, BinaryWriter, type InternCache } from './binary-codec.js';
import { DATA_DIR_MODE, DATA_FILE_MODE, fsyncDir } from './atomic-file.js';
import { writeFully, writeFullySync } from './block-files.js';
import { SyncPoint } from './sync-point.js';
import type { Change, Labels, StorageFaults } from './types.js';

export const enum OpType {
  Write = 1,
  Update = 2,
  RemoveRecord = 3,
  RemoveBlock = 4,
  RemoveEntry = 5,
  RemoveBucket = 6,
  /** Opens a shipment: the `count` frames after it are one all-or-nothing unit (recovery). */
  Shipment = 7,
}

export interface WriteOp {
  type: OpType.Write;
  lsn: bigint;
  time: number;
  bucket: string;
  entry: string;
  ts: bigint;
  blockId: bigint;
  offset: number;
  size: number;
  descSize: number;
  contentType: string;
  labels: Labels;
  digest: Buffer;
  origin: string;
}

export interface UpdateOp {
  type: OpType.Update;
  lsn: bigint;
  time: number;
  bucket: string;
  entry: string;
  ts: bigint;
  /** Complete label set after the update. */
  labels: Labels;
  removed: string[];
  origin: string;
  size: number;
  contentType: string;
  digest: Buffer;
}

export interface RemoveRecordOp {
  type: OpType.RemoveRecord;
  lsn: bigint;
  time: number;
  bucket: string;
  entry: string;
  ts: bigint;
}

export interface RemoveBlockOp {
  type: OpType.RemoveBlock;
  lsn: bigint;
  time: number;
  bucket: string;
  entry: string;
  blockId: bigint;
}

export interface RemoveEntryOp {
  type: OpType.RemoveEntry;
  lsn: bigint;
  time: number;
  bucket: string;
  entry: string;
}

export interface RemoveBucketOp {
  type: OpType.RemoveBucket;
  lsn: bigint;
  time: number;
  bucket: string;
}

/**
 * The first frame of a shipment applied across buckets (`Storage.applyShipment`): the `count`
 * frames that follow it belong to it, and recovery replays all of them or none (a log that ends
 * within them is cut before this frame). Records the stream's applied position in the same fsync.
 */
export interface ShipmentOp {
  type: OpType.Shipment;
  lsn: bigint;
  time: number;
  /** Always '' (a shipment spans buckets). */
  bucket: string;
  /** The shipment stream (one per group replication). */
  key: string;
  /** The stream's position once this shipment is applied. */
  position: bigint;
  count: number;
}

/**
 * Set on every frame of a commit (one writer's batch, a shipment) but its last, so that the change
 * log tells where a reader may cut without splitting a commit. Frames of earlier versions never
 * have it (each op its own commit).
 */
interface CommitFlag {
  more?: boolean;
}

export type WalOp = (
  WriteOp | UpdateOp | RemoveRecordOp | RemoveBlockOp | RemoveEntryOp | RemoveBucketOp | ShipmentOp
) &
  CommitFlag;

/** High bit of a frame's type byte: `WalOp.more`. */
const MORE = 0x80;
/**
 * Set on the first frame of each write (one group commit). Block files and the WAL are synced in
 * parallel, and two groups may be in flight, so only the last two groups of a log can have durable
 * frames whose payloads are not: recovery checks their payloads (see `lastGroups`). Frames of earlier versions never have it.
 */
const GROUP = 0x40;

/**
 * Group commits in flight at once (group-commit.ts): one may be written while the one before it is
 * synced, so a crash can leave this many last groups with durable frames over incomplete payloads.
 */
export const GROUPS_IN_FLIGHT = 2;

const HEADER = 8;
/** Default size after which a new segment is started. */
export const SEGMENT_BYTES = 64 * 1024 * 1024;
/** No frame is ever larger than this (a corrupt length beyond it ends the valid log). */
const MAX_FRAME_BYTES = 128 * 1024 * 1024;
const SPARSE_EVERY = 512;
/** Groups of frames smaller than this are written with a synchronous syscall (page cache only). */
const SYNC_WRITE_BYTES = 256 * 1024;
const TAIL_CAPACITY = 20_000;
/** Bounds of the buffer that change-log reads from disk fill, and the frame size it is sized by. */
const READ_BUFFER_MIN = 64 * 1024;
const READ_BUFFER_MAX = 1 << 20;
const READ_BYTES_PER_FRAME = 160;

/** Serialises one op into a frame appended to `w`. */
export function encodeOp(w: BinaryWriter, op: WalOp, first = false): void {
  const start = w.length;
  w.u32(0).u32(0);
  w.u8(op.type | (op.more ? MORE : 0) | (first ? GROUP : 0))
    .u64(op.lsn)
    .num(op.time)
    .str16Cached(op.bucket);
  switch (op.type) {
    case OpType.Write:
      w.str16Cached(op.entry).u64(op.ts).u64(op.blockId).num(op.offset).num(op.size).u32(op.descSize);
      w.str16Cached(op.contentType).labels(op.labels).prefix(op.digest, 16).str16Cached(op.origin);
      break;
    case OpType.Update:
      w.str16(op.entry).u64(op.ts).labels(op.labels).u16(op.removed.length);
      for (const r of op.removed) w.str16(r);
      w.str16(op.origin).num(op.size).str16(op.contentType).bytes(op.digest.subarray(0, 16));
      break;
    case OpType.RemoveRecord:
      w.str16(op.entry).u64(op.ts);
      break;
    case OpType.RemoveBlock:
      w.str16(op.entry).u64(op.blockId);
      break;
    case OpType.RemoveEntry:
      w.str16(op.entry);
      break;
    case OpType.RemoveBucket:
      break;
    case OpType.Shipment:
      w.str16(op.key).u64(op.position).u32(op.count);
      break;
  }
  const len = w.length - start - HEADER;
  w.patchU32(start, len);
  w.patchU32(start + 4, w.crcFrom(start + HEADER));
}

/**
 * Decodes the frame payload at `[start, end)` of `buf`. `names`: strings decoded earlier from the
 * same buffer (bucket, entry, content type, origin and label names repeat from frame to frame;
 * decoding each once spares the change log's readers an allocation per field).
 */
function decodeOp(buf: Buffer, start: number, end: number, names?: InternCache): WalOp {
  const r = new BinaryReader(buf, start, end);
  const raw = r.u8();
  const op = decodeFields(r, (raw & ~(MORE | GROUP)) as OpType, names);
  if (raw & MORE) op.more = true;
  return op;
}

/** A u16-prefixed string, interned in `names` when given. */
const str16Of = (r: BinaryReader, names: InternCache | undefined): string =>
  names ? r.str16Interned(names) : r.str16();

/** The LSN of the frame whose header starts at `at` (it follows the type byte). */
const frameLsn = (buf: Buffer, at: number): bigint => buf.readBigUInt64LE(at + HEADER + 1);

function decodeFields(r: BinaryReader, type: OpType, names?: InternCache): WalOp {
  const lsn = r.u64();
  const time = r.num();
  const bucket = str16Of(r, names);
  switch (type) {
    case OpType.Write: {
      const entry = str16Of(r, names);
      const ts = r.u64();
      const blockId = r.u64();
      const offset = r.num();
      const size = r.num();
      const descSize = r.u32();
      const contentType = str16Of(r, names);
      const labels = r.labels(names);
      const digest = Buffer.from(r.bytes(16));
      const origin = str16Of(r, names);
      return {
        type,
        lsn,
        time,
        bucket,
        entry,
        ts,
        blockId,
        offset,
        size,
        descSize,
        contentType,
        labels,
        digest,
        origin,
      };
    }
    case OpType.Update: {
      const entry = str16Of(r, names);
      const ts = r.u64();
      const labels = r.labels(names);
      const n = r.u16();
      const removed: string[] = [];
      for (let i = 0; i < n; i++) removed.push(r.str16());
      const origin = str16Of(r, names);
      const size = r.num();
      const contentType = str16Of(r, names);
      const digest = Buffer.from(r.bytes(16));
      return { type, lsn, time, bucket, entry, ts, labels, removed, origin, size, contentType, digest };
    }
    case OpType.RemoveRecord:
      return { type, lsn, time, bucket, entry: r.str16(), ts: r.u64() };
    case OpType.RemoveBlock:
      return { type, lsn, time, bucket, entry: r.str16(), blockId: r.u64() };
    case OpType.RemoveEntry:
      return { type, lsn, time, bucket, entry: r.str16() };
    case OpType.RemoveBucket:
      return { type, lsn, time, bucket };
    case OpType.Shipment:
      return { type, lsn, time, bucket, key: r.str16(), position: r.u64(), count: r.u32() };
    default:
      throw new RangeError(`unknown WAL op type ${type as number}`);
  }
}

/** The replication view of a WAL op (writes and label updates only). */
export function toChange(op: WalOp): Change | undefined {
  if (op.type !== OpType.Write && op.type !== OpType.Update) return undefined;
  const change: Change = {
    lsn: op.lsn,
    kind: op.type === OpType.Write ? 'write' : 'update',
    bucket: op.bucket,
    entry: op.entry,
    ts: op.ts,
    size: op.size,
    contentType: op.contentType,
    labels: op.labels,
    digest: op.digest,
    origin: op.origin,
    commitTime: op.time,
  };
  if (op.type === OpType.Update) change.removedLabels = op.removed;
  if (op.more) change.commitContinues = true;
  return change;
}

export interface Segment {
  startLsn: bigint;
  path: string;
  size: number;
  /** Sparse (lsn, offset) pairs for seeking; complete for segments written or scanned by this process. */
  sparse: Array<{ lsn: bigint; offset: number }> | undefined;
}

/** Where a written group starts in the log (`Wal.write`, `Wal.lastGroups`), for `Wal.cut`. */
export interface GroupStart {
  /** LSN of the group's first frame. */
  lsn: bigint;
  segment: Segment;
  /** Offset of its first frame in `segment`. */
  offset: number;
}

/** Frames written to the log by `Wal.write`, not yet known durable (`Wal.syncWritten`, `Wal.durable`). */
export interface WrittenGroup {
  start: GroupStart;
  ops: WalOp[];
  /** Offset where the group's frames end in `start.segment`. */
  end: number;
}

/** A position in the frames of the next flush (`Wal.mark`). */
export interface WalMark {
  length: number;
  lsn: bigint;
  frames: number;
  sparse: number;
  sinceSparse: number;
}

const segName = (lsn: bigint): string => `${lsn.toString().padStart(20, '0')}.wal`;

export class Wal {
  private segments: Segment[] = [];
  private fh: FileHandle | undefined;
  private nextLsn = 1n;
  private durableLsn = 0n;
  private framesSinceSparse = 0;
  /** Recent changes kept in memory so that live replication never touches the disk. */
  private tail: Change[] = [];
  private tailKept = false;
  /** The buffer of the last read from disk, for the next one (none while a read holds it). */
  private readBuffer: Buffer | undefined;
  private readonly writer = new BinaryWriter(1 << 16);
  /** Ops encoded for the next flush, and their sparse points (offsets within the group's bytes). */
  private group: WalOp[] = [];
  private groupSparse: Array<{ lsn: bigint; offset: number }> = [];
  /** fdatasyncs of the current segment, one at a time (pipelined groups share one under way). */
  private readonly syncs = new SyncPoint(() => this.fh!.datasync());
  /** The log's last group when it is after the replay start (found by `open`). */
  private lastGroupStarts: GroupStart[] = [];

  private constructor(
    readonly dir: string,
    private readonly sync: boolean,
    private readonly segmentBytes: number,
    private readonly faults: StorageFaults | undefined,
  ) {}

  /**
   * Opens the log, cutting a torn tail. `replayFrom`: ops with lsn > replayFrom are passed to
   * `apply` in order (redo after the last checkpoint).
   */
  static async open(
    dir: string,
    sync: boolean,
    replayFrom: bigint,
    apply: (op: WalOp) => void,
    segmentBytes = SEGMENT_BYTES,
    faults?: StorageFaults,
  ): Promise<Wal> {
    const wal = new Wal(dir, sync, segmentBytes, faults);
    await mkdir(dir, { recursive: true, mode: DATA_DIR_MODE });
    const names = (await readdir(dir)).filter((n) => /^\d{20}\.wal$/.test(n)).sort();
    for (const n of names) {
      const p = join(dir, n);
      wal.segments.push({
        startLsn: BigInt(n.slice(0, 20)),
        path: p,
        size: (await stat(p)).size,
        sparse: undefined,
      });
    }
    let last = replayFrom;
    /** The last groups found so far (at most `GROUPS_IN_FLIGHT`, in log order). */
    const lastGroups: GroupStart[] = [];
    const take = (op: WalOp): void => {
      if (op.lsn > last) last = op.lsn;
      if (op.lsn > replayFrom) apply(op);
    };
    // Scan segments that may hold ops after replayFrom, plus the last one to find its valid end.
    for (let i = 0; i < wal.segments.length; i++) {
      const seg = wal.segments[i]!;
      const next = wal.segments[i + 1];
      // `next` exists exactly when this is not the last segment.
      if (next && next.startLsn - 1n <= replayFrom) continue;
      // A shipment's frames are held back until its last one is read, and so are those of any
      // commit (`more` on all of its frames but the last: one client batch, issue 12). One flush
      // writes them all, so only a torn tail can end within one.
      let open: { offset: number; left: number; ops: WalOp[] } | undefined;
      let commit: { offset: number; ops: WalOp[] } | undefined;
      const groupsHere: GroupStart[] = [];
      let validEnd = await wal.scanSegment(seg, (op, offset, first) => {
        if (first) {
          groupsHere.push({ lsn: op.lsn, segment: seg, offset });
          if (groupsHere.length > GROUPS_IN_FLIGHT) groupsHere.shift();
        }
        if (open) {
          open.ops.push(op);
          if (--open.left === 0) {
            for (const o of open.ops) take(o);
            open = undefined;
          }
        } else if (op.type === OpType.Shipment && op.count > 0) {
          open = { offset, left: op.count, ops: [op] };
        } else if (op.more || commit) {
          (commit ??= { offset, ops: [] }).ops.push(op);
          if (!op.more) {
            for (const o of commit.ops) take(o);
            commit = undefined;
          }
        } else {
          take(op);
        }
      });
      const torn = open ?? commit;
      if (torn) {
        // A shipment or commit torn off: none of it was acknowledged, none of it may be replayed.
        validEnd = torn.offset;
        seg.sparse = seg.sparse!.filter((p) => p.offset < validEnd);
      }
      // A group cut off with the shipment is gone: the ones before it are checked (one write
      // holds a whole group, and a torn write is the last one).
      for (const g of groupsHere) {
        if (g.offset >= validEnd) continue;
        lastGroups.push(g);
        if (lastGroups.length > GROUPS_IN_FLIGHT) lastGroups.shift();
      }
      if (validEnd < seg.size) {
        // Torn or corrupt tail: keep everything before it, drop the rest of the log after it.
        await truncate(seg.path, validEnd);
        seg.size = validEnd;
        for (const later of wal.segments.splice(i + 1)) await unlink(later.path).catch(() => {});
        break;
      }
    }
    wal.nextLsn = last + 1n;
    wal.durableLsn = last;
    wal.lastGroupStarts = lastGroups.filter((g) => g.lsn > replayFrom);
    await wal.openCurrent();
    return wal;
  }

  /** Reads a whole segment, calling `fn` per valid frame; returns the offset where valid data ends. */
  private async scanSegment(
    seg: Segment,
    fn: (op: WalOp, offset: number, first: boolean) => void,
  ): Promise<number> {
    const fh = await open(seg.path, 'r');
    const sparse: Array<{ lsn: bigint; offset: number }> = [];
    let validEnd = 0;
    let count = 0;
    try {
      let fileOff = 0;
      let carry: Buffer = Buffer.alloc(0);
      const chunk = Buffer.allocUnsafe(4 << 20);
      for (;;) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, fileOff);
        if (bytesRead === 0) break;
        const data = carry.length
          ? Buffer.concat([carry, chunk.subarray(0, bytesRead)])
          : chunk.subarray(0, bytesRead);
        const base = fileOff - carry.length;
        fileOff += bytesRead;
        let rel = 0;
        let bad = false;
        while (rel + HEADER <= data.length) {
          const len = data.readUInt32LE(rel);
          if (len === 0 || len > MAX_FRAME_BYTES) {
            bad = true;
            break;
          }
          if (rel + HEADER + len > data.length) break;
          if (crc32(data, rel + HEADER, rel + HEADER + len) !== data.readUInt32LE(rel + 4)) {
            bad = true;
            break;
          }
          let op: WalOp;
          try {
            op = decodeOp(data, rel + HEADER, rel + HEADER + len);
          } catch {
            bad = true;
            break;
          }
          if (count++ % SPARSE_EVERY === 0) sparse.push({ lsn: op.lsn, offset: base + rel });
          fn(op, base + rel, (data[rel + HEADER]! & GROUP) !== 0);
          rel += HEADER + len;
          validEnd = base + rel;
        }
        if (bad) break;
        carry = Buffer.from(data.subarray(rel));
      }
    } finally {
      await fh.close();
    }
    seg.sparse = sparse;
    return validEnd;
  }

  private async openCurrent(): Promise<void> {
    let seg = this.segments[this.segments.length - 1];
    if (!seg) {
      seg = { startLsn: this.nextLsn, path: join(this.dir, segName(this.nextLsn)), size: 0, sparse: [] };
      this.segments.push(seg);
      this.fh = await open(seg.path, 'a', DATA_FILE_MODE);
      if (this.sync) await fsyncDir(this.dir);
    } else {
      this.fh = await open(seg.path, 'a', DATA_FILE_MODE);
    }
    if (!seg.sparse) seg.sparse = [];
    this.framesSinceSparse = SPARSE_EVERY; // force a sparse point at the next append
  }

  lastDurableLsn(): bigint {
    return this.durableLsn;
  }

  /** Where the frames of the next `flush` end now (see `rewind`). */
  mark(): WalMark {
    return {
      length: this.writer.length,
      lsn: this.nextLsn,
      frames: this.group.length,
      sparse: this.groupSparse.length,
      sinceSparse: this.framesSinceSparse,
    };
  }

  /** Forgets the frames encoded after `m` (a writer whose op could not be encoded, or a failed flush). */
  rewind(m: WalMark): void {
    this.writer.rewind(m.length);
    this.nextLsn = m.lsn;
    this.group.length = m.frames;
    this.groupSparse.length = m.sparse;
    this.framesSinceSparse = m.sinceSparse;
  }

  /**
   * Assigns `op` the next LSN and encodes its frame for the next `flush`. LSNs are assigned here, in
   * commit order, so that an op that fails to encode (or a failed flush) leaves no gap. A failure
   * leaves nothing behind.
   */
  encode(op: WalOp, more = false): void {
    // Only the frame can fail, and it comes before any other state changes (no mark object per op).
    const before = this.writer.length;
    op.lsn = this.nextLsn;
    // no `delete` on the write path (it would turn the op into a slow dictionary object)
    if (more || op.more !== undefined) op.more = more;
    try {
      encodeOp(this.writer, op, this.group.length === 0);
    } catch (e) {
      this.writer.rewind(before);
      throw e;
    }
    this.nextLsn++;
    if (this.framesSinceSparse++ >= SPARSE_EVERY) {
      this.groupSparse.push({ lsn: op.lsn, offset: before });
      this.framesSinceSparse = 1;
    }
    this.group.push(op);
  }

  /**
   * Writes the frames encoded since the last flush durably: one write and one fdatasync. Returns
   * where they start (undefined when there were none), so that `cut` can take them back.
   */
  async flush(): Promise<GroupStart | undefined> {
    const written = await this.write();
    if (!written) return undefined;
    try {
      await this.syncWritten();
    } catch (e) {
      await this.cut(written.start).catch(() => {});
      throw e;
    }
    this.durable(written);
    return written.start;
  }

  /**
   * Writes the frames encoded since the last write (one write, no sync): the group commit syncs
   * them with `syncWritten` while the next group is encoded and written after them (pipelining).
   * A failed write leaves nothing behind (no frame, no LSN). Undefined when there were none.
   */
  async write(): Promise<WrittenGroup | undefined> {
    const ops = this.group;
    if (ops.length === 0) return undefined;
    let seg = this.segments[this.segments.length - 1]!;
    if (seg.size >= this.segmentBytes) {
      // only between groups (`canOverlap`): the segment's last group is durable already; a failed
      // rotation (disk full) is retried at the next write
      if (
        await this.rotate(ops[0]!.lsn).then(
          () => true,
          () => false,
        )
      )
        seg = this.segments[this.segments.length - 1]!;
    }
    const start: GroupStart = { lsn: ops[0]!.lsn, segment: seg, offset: seg.size };
    // No copy: the next group is encoded only once this write is over.
    const data = this.writer.view();
    try {
      await this.faults?.walAppend?.();
      // a group's frames are small (metadata only): one syscall, no threadpool round trip
      if (data.length < SYNC_WRITE_BYTES) writeFullySync(this.fh!.fd, [data], null);
      else await writeFully(this.fh!, [data], null);
    } catch (e) {
      // Never leave a partial frame behind: later frames would be unreachable after a restart.
      await this.fh!.truncate(seg.size).catch(() => {});
      this.rewind(this.emptyMark(ops[0]!.lsn));
      throw e;
    }
    for (const p of this.groupSparse) seg.sparse!.push({ lsn: p.lsn, offset: seg.size + p.offset });
    seg.size += data.length;
    this.syncs.wrote();
    // the group's ops are handed over (the next group fills a new array)
    this.group = [];
    this.rewind(this.emptyMark(this.nextLsn));
    return { start, ops, end: seg.size };
  }

  /** Makes every frame written so far durable (one fdatasync; a later write's covers earlier ones). */
  async syncWritten(): Promise<void> {
    if (this.sync) await this.syncs.syncTo();
  }

  /**
   * Whether the next group may be written before the last one is durable: not when a segment is
   * full (its rotation waits until no group is in flight, so that a group never spans segments).
   */
  canOverlap(): boolean {
    return this.segments[this.segments.length - 1]!.size < this.segmentBytes;
  }

  /** Marks a written group durable (in log order): readers of the change log see it from now on. */
  durable(w: WrittenGroup): void {
    const ops = w.ops;
    this.durableLsn = ops[ops.length - 1]!.lsn;
    if (this.tailKept) {
      for (const op of ops) {
        const c = toChange(op);
        if (c) this.tail.push(c);
      }
      if (this.tail.length > TAIL_CAPACITY * 1.5)
        this.tail = this.tail.slice(this.tail.length - TAIL_CAPACITY);
    }
  }

  /**
   * The log's last groups (at most `GROUPS_IN_FLIGHT`, in log order) that are after the replay
   * start: their frames may be durable while the block file bytes of their records are not (a
   * crash during their commits), which recovery checks. Every earlier group's commit had finished
   * before the later ones were written.
   */
  lastGroups(): readonly GroupStart[] {
    return this.lastGroupStarts;
  }

  /**
   * Removes the log from `at` on, durably: a group none of whose writers was answered (its block
   * files could not be synced, or recovery found its payloads incomplete). Its LSNs are given out
   * again. Nothing may be encoded and not yet flushed.
   */
  async cut(at: GroupStart): Promise<void> {
    await this.faults?.walCut?.();
    const k = this.segments.indexOf(at.segment);
    if (k < 0) throw new Error(`WAL segment of LSN ${at.lsn} is gone`);
    if (k < this.segments.length - 1) {
      // a rotation after the group: its segment becomes the current one again
      const fh = await open(at.segment.path, 'a', DATA_FILE_MODE);
      const old = this.fh;
      this.fh = fh;
      await old?.close().catch(() => {});
      for (const later of this.segments.splice(k + 1)) await unlink(later.path).catch(() => {});
      if (this.sync) await fsyncDir(this.dir);
    }
    await this.fh!.truncate(at.offset);
    if (this.sync) await this.fh!.datasync();
    at.segment.size = at.offset;
    at.segment.sparse = at.segment.sparse?.filter((p) => p.offset < at.offset);
    this.nextLsn = at.lsn;
    this.durableLsn = at.lsn - 1n;
    this.tail = this.tail.filter((c) => c.lsn < at.lsn);
    this.lastGroupStarts = this.lastGroupStarts.filter((g) => g.lsn < at.lsn);
    this.rewind(this.emptyMark(at.lsn));
    this.framesSinceSparse = SPARSE_EVERY;
  }

  private emptyMark(lsn: bigint): WalMark {
    return { length: 0, lsn, frames: 0, sparse: 0, sinceSparse: this.framesSinceSparse };
  }

  /** Encodes and flushes `ops` (assigning their LSNs). */
  async append(ops: readonly WalOp[]): Promise<void> {
    for (const op of ops) this.encode(op);
    await this.flush();
  }

  /**
   * Starts a new segment if the current one holds anything. Called after a final checkpoint, so
   * that the next start has nothing to scan (start-up time does not grow with the data).
   */
  async rotateIfUsed(): Promise<void> {
    const seg = this.segments[this.segments.length - 1];
    if (seg && seg.size > 0) await this.rotate();
  }

  private async rotate(startLsn = this.nextLsn): Promise<void> {
    const seg: Segment = {
      startLsn,
      path: join(this.dir, segName(startLsn)),
      size: 0,
      sparse: [],
    };
    // Open the new segment before closing the current one: if that fails (disk full), appends go
    // on in the current segment instead of hitting a closed handle forever.
    const fh = await open(seg.path, 'a', DATA_FILE_MODE);
    if (this.sync) await fsyncDir(this.dir).catch(() => {});
    const old = this.fh;
    this.fh = fh;
    this.segments.push(seg);
    await old?.close();
    this.framesSinceSparse = SPARSE_EVERY;
  }

  /**
   * Keeps recent changes in memory for `read` (while some reader follows the log) or not (no
   * reader: no memory or CPU spent per write). The tail stays contiguous either way.
   */
  keepTail(on: boolean): void {
    this.tailKept = on;
    if (!on) this.tail = [];
  }

  /** Reads up to `max` changes (writes and updates) with lsn > after, durable ones only. */
  async read(after: bigint, max: number): Promise<Change[]> {
    const tail = this.tail;
    if (tail.length > 0 && tail[0]!.lsn <= after + 1n) {
      // Binary search the first change with lsn > after.
      let lo = 0;
      let hi = tail.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (tail[mid]!.lsn <= after) lo = mid + 1;
        else hi = mid;
      }
      return tail.slice(lo, lo + max);
    }
    if (after >= this.durableLsn) return [];
    return this.readFromDisk(after, max);
  }

  private async readFromDisk(after: bigint, max: number): Promise<Change[]> {
    const out: Change[] = [];
    let i = 0;
    for (let j = 0; j < this.segments.length; j++) if (this.segments[j]!.startLsn <= after + 1n) i = j;
    // Filled with about the frames wanted (a frame larger than that is read alone), from a buffer
    // that is reused (a larger one too): decoded changes copy what they keep, so nothing refers
    // to it once a read is over.
    const want = Math.min(READ_BUFFER_MAX, Math.max(READ_BUFFER_MIN, max * READ_BYTES_PER_FRAME));
    let chunk = this.readBuffer !== undefined && this.readBuffer.length >= want ? this.readBuffer : undefined;
    this.readBuffer = undefined;
    chunk ??= Buffer.allocUnsafeSlow(want);
    try {
      for (; i < this.segments.length && out.length < max; i++) {
        const seg = this.segments[i]!;
        if (!seg.sparse) await this.scanSegment(seg, () => {});
        let startOffset = 0;
        for (const p of seg.sparse!) {
          if (p.lsn <= after + 1n) startOffset = p.offset;
          else break;
        }
        const fh = await open(seg.path, 'r');
        try {
          if (!(await this.readSegment(fh, seg, startOffset, after, max, chunk.subarray(0, want), out)))
            return out;
        } finally {
          await fh.close();
        }
      }
      return out;
    } finally {
      // another read may have given its buffer back meanwhile: the larger one is kept
      const kept = this.readBuffer as Buffer | undefined;
      if (kept === undefined || kept.length < chunk.length) this.readBuffer = chunk;
    }
  }

  /**
   * Appends the changes of `seg` from `offset` on with lsn > `after` to `out` (up to `max` in all);
   * false once past the durable end. Frames up to `after` (the sparse index points up to 511
   * frames before it) are stepped over without being decoded.
   */
  private async readSegment(
    fh: FileHandle,
    seg: Segment,
    offset: number,
    after: bigint,
    max: number,
    chunk: Buffer,
    out: Change[],
  ): Promise<boolean> {
    /** Adds the change of `op`; false once past the durable end. */
    const take = (op: WalOp): boolean => {
      if (op.lsn > this.durableLsn) return false;
      const c = toChange(op);
      if (c) out.push(c);
      return true;
    };
    while (offset < seg.size && out.length < max) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, seg.size - offset), offset);
      // the interned strings refer to positions in this fill of the chunk
      const names: InternCache = [];
      let rel = 0;
      while (rel + HEADER <= bytesRead && out.length < max) {
        const len = chunk.readUInt32LE(rel);
        if (rel + HEADER + len > bytesRead) break;
        if (frameLsn(chunk, rel) > after && !take(decodeOp(chunk, rel + HEADER, rel + HEADER + len, names)))
          return false;
        rel += HEADER + len;
      }
      if (rel === 0) {
        // A frame larger than the chunk: read it alone.
        const len = chunk.readUInt32LE(0);
        const big = Buffer.allocUnsafe(HEADER + len);
        await fh.read(big, 0, big.length, offset);
        if (frameLsn(big, 0) > after && !take(decodeOp(big, HEADER, HEADER + len))) return false;
        rel = HEADER + len;
      }
      offset += rel;
    }
    return true;
  }

  /** Deletes whole segments whose every op has lsn <= keepAfter (never the current one). */
  async truncateUpTo(keepAfter: bigint): Promise<void> {
    while (this.segments.length > 1) {
      const next = this.segments[1]!;
      if (next.startLsn - 1n > keepAfter) break;
      const seg = this.segments.shift()!;
      await unlink(seg.path).catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }
}
