/**
 * Public contract of the storage engine. The HTTP layer, the query executor and the replication
 * engine depend on these types only; `engine.ts` and the parts it wires implement them.
 *
 * Conventions: timestamps are u64 microseconds as `bigint`; payload sizes are `number` (bytes,
 * exact up to 2^53); info objects are returned in their wire shape (snake_case, bigint for u64).
 */
import type { Readable } from 'node:stream';
import type { FerryError } from '../protocol/errors.js';
import type { StorageHealthInfo } from '../protocol/server-info.js';
import type { ShipmentAnswer } from '../protocol/shipment.js';
import type { Labels } from '../protocol/labels.js';
import type { BucketInfo, BucketSettings, BucketSettingsPatch, EntryInfo } from '../protocol/buckets.js';
import type { DigestQuery, RangeDigest, RecordFilter, RecordSummary } from './range-digest.js';
import type { BatchTicket } from './atomic-batch.js';

// The wire shapes live in protocol/ (shared with the SDK and the CLI); re-exported for this layer.
export type { Labels } from '../protocol/labels.js';
export type {
  BucketInfo,
  BucketSettings,
  BucketSettingsPatch,
  EntryInfo,
  QuotaType,
  Status,
} from '../protocol/buckets.js';
export { QUOTA_TYPES } from '../protocol/buckets.js';

export type { DigestQuery, RangeDigest, RecordFilter, RecordSummary } from './range-digest.js';

export type RecordState = 'started' | 'finished' | 'errored';

/** Metadata of one stored record. */
export interface RecordMeta {
  entry: string;
  ts: bigint;
  /** Payload length in bytes. */
  size: number;
  contentType: string;
  labels: Labels;
  state: RecordState;
  /** First 16 bytes of the SHA-256 of the payload, computed while it was written. */
  digest: Buffer;
  /** Instance id of the instance where the record was first written ('' = this instance). */
  origin: string;
}

/** A record that can be read. */
export interface StoredRecord {
  readonly meta: RecordMeta;
  /** Streams the payload from disk. */
  stream(): Readable;
  /** Reads the whole payload (only for small records). */
  buffer(): Promise<Buffer>;
}

/** Options of one record write. */
export interface WriteOptions {
  /** Declared payload length; the body must deliver exactly this many bytes. */
  size: number;
  contentType?: string;
  labels?: Labels;
  /** Origin instance id when the record arrives through replication ('' or undefined = local). */
  origin?: string;
  /**
   * Digest the sender computed. When a record with the same timestamp already exists with the same
   * size and digest, the write is an idempotent no-op (`already_present`) instead of a 409.
   */
  digest?: Buffer;
  /**
   * Receives the write's commit LSN once it is durable (its position in the change log), so that a
   * writer can wait for that position's delivery (sync replication). Left as is for an
   * `already_present` write, which commits nothing.
   */
  commit?: { lsn: bigint };
  /**
   * The write's place in an atomic client batch: its records are committed with the batch's
   * others instead of on their own (atomic-batch.ts). All items of one `writeMany` carry the same.
   */
  batch?: BatchTicket;
}

export type WriteOutcome = 'written' | 'already_present';

/** One record of `Bucket.writeMany`. */
export interface BatchItem {
  entry: string;
  ts: bigint;
  opts: WriteOptions;
  payload: Buffer;
}

/**
 * Payload source: a Buffer or any async iterable of Buffers delivering exactly `size` bytes. The
 * engine may hold on to the given buffers until the write resolves (no defensive copy, as with
 * `fs.write`): a caller must not modify a buffer it passed before then.
 */
export type PayloadSource = Buffer | AsyncIterable<Buffer>;

export interface LabelUpdateOptions {
  /** Origin instance id of the update when it arrives through replication. */
  origin?: string;
}

/** One bucket. Obtained from `Storage.bucket(name)`. */
export interface Bucket {
  readonly name: string;
  settings(): BucketSettings;
  info(): BucketInfo;
  /** Visible entries (no `$meta`), sorted by name, including implicit parents. */
  entries(): EntryInfo[];
  /** All entry names including `$meta` ones. */
  entryNames(): string[];
  hasEntry(entry: string): boolean;

  /**
   * Writes one record. Resolves once the record is durable (group commit) — only then may a
   * client be answered 200. Rejects with FerryError: 409 exists, 400 quota / short / long body,
   * 500 FIFO failure, 507 disk full, 422 invalid entry name or a field over its bound (limits.ts).
   * A failed write leaves nothing (its timestamp stays free). In a `<entry>/$meta` entry, a record
   * with label `key` K replaces the other records with key K once it is stored (api.md §14.1).
   */
  write(entry: string, ts: bigint, opts: WriteOptions, payload: PayloadSource): Promise<WriteOutcome>;

  /**
   * Writes many fully buffered records (a batch) with one group-commit entry: per-record work is
   * done synchronously where possible, and one promise covers the whole batch. Returns, per item,
   * its outcome or the FerryError that refused it; resolves once every written record is durable.
   */
  writeMany(items: readonly BatchItem[]): Promise<Array<WriteOutcome | FerryError>>;

  /** Reads one record (latest when ts is undefined). 404 / 425 / 500 as api.md §8.2. */
  read(entry: string, ts?: bigint): Promise<StoredRecord>;

  /**
   * Iterates records of one entry with start <= ts < stop in ascending order (finished ones only),
   * loading block metadata lazily. Safe to run while writes continue.
   */
  scan(entry: string, start: bigint, stop: bigint): AsyncIterable<StoredRecord>;

  /**
   * The metadata of one batch of what `scan` yields: the finished records of `entry` with
   * start <= ts < stop that `accept` takes (all without it), ascending, at most `maxRecords` and
   * `maxBytes` of payload (a first record larger than that comes alone). `done`: none is left
   * below `stop` after them. One await per block instead of one per record, and no readable
   * record made per record (the initial copy plans and counts this way).
   */
  /**
   * Records and payload bytes of the finished records of `entry` with start <= ts < stop (and a
   * write LSN <= `maxLsn` when given), without loading descriptors that are not in memory: the
   * `.meta` files of clean blocks are read and dropped. For progress totals: blocks that change
   * meanwhile are counted as they are when reached.
   */
  countRange(
    entry: string,
    start: bigint,
    stop: bigint,
    maxLsn?: bigint,
  ): Promise<{ records: number; bytes: number }>;

  scanMeta(
    entry: string,
    start: bigint,
    stop: bigint,
    maxRecords: number,
    maxBytes: number,
    accept?: (meta: RecordMeta & { lsn: bigint }) => boolean,
  ): Promise<{ records: Array<RecordMeta & { lsn: bigint }>; done: boolean }>;

  /**
   * Changes labels: a value of '' or null deletes the label. Durable on resolve.
   * Returns the complete new label set. 404 if the record does not exist.
   */
  updateLabels(
    entry: string,
    ts: bigint,
    changes: Record<string, string | null>,
    opts?: LabelUpdateOptions,
  ): Promise<Labels>;

  /**
   * Digests of time ranges of an entry (replication.md §10), from descriptors only: equal digests
   * mean equal (ts, size, content digest, content type, labels) lists. A missing entry has no
   * records (count 0). `filter` narrows the records that take part.
   */
  rangeDigests(entry: string, queries: readonly DigestQuery[], filter?: RecordFilter): Promise<RangeDigest[]>;

  /** What a verifier compares of at most `limit` records with start <= ts < stop, ascending. */
  recordSummaries(
    entry: string,
    start: bigint,
    stop: bigint,
    limit: number,
    filter?: RecordFilter,
  ): Promise<RecordSummary[]>;

  /** Removes one record (404 if missing). */
  removeRecord(entry: string, ts: bigint): Promise<void>;
  /**
   * Bulk removal for retention (lifecycle `delete`, remove-by-query): the finished records of
   * `entry` with start <= ts < stop that `select` accepts and `keep` does not protect, one step of
   * at most about `opts.limit` records looked at (whole blocks; at least one). A sealed block whose
   * records all go is dropped whole (one block-removal op, no per-record work, descriptors not even
   * loaded when there is no `select`); the other blocks lose their records in one commit per
   * block. Crash-safe: what the returned promise reports removed is durable. Call again from
   * `next` until `done`. A missing entry has nothing to remove.
   */
  removeRange(entry: string, start: bigint, stop: bigint, opts?: RangeRemovalOptions): Promise<RangeRemoval>;
  /** Removes an entry and all its sub-entries (404 if missing). Asynchronous: DELETING first. */
  removeEntry(entry: string): Promise<void>;
  /** Renames an entry and its children (404 / 409 as api.md §8.5). */
  renameEntry(entry: string, newName: string): Promise<void>;

  /** Summaries of an entry's blocks with ids in [from, to), in id order (none loads descriptors). */
  blocks(entry: string, from: bigint, to: bigint): BlockSummary[];
  /**
   * Compresses a sealed block whose records are all older than `before` (block-compression.ts):
   * its records read back byte for byte the same and no size changes. Undefined when the block is
   * not eligible (the newest of its entry, newer records, compressed already, writes in flight).
   */
  compressBlock(entry: string, blockId: bigint, before: bigint): Promise<BlockCompressOutcome | undefined>;
}

/** Records that a bulk removal must keep (records a replication still has to ship). */
export interface RemovalGuard {
  /**
   * True when some record of the entry with from <= ts <= to may have to be kept; `maxLsn` is the
   * highest write LSN among them (a guard keeps what was written after it last looked).
   */
  anyIn(from: bigint, to: bigint, maxLsn: bigint): boolean;
  /** True when the record at `ts`, written at `lsn`, must be kept. */
  has(ts: bigint, lsn: bigint): boolean;
}

/** Options of `Bucket.removeRange`. */
export interface RangeRemovalOptions {
  /** Chooses records (called once per finished record in the range, in timestamp order). */
  select?: (meta: RecordMeta) => boolean;
  keep?: RemovalGuard;
  /** Records to look at in this step (whole blocks, at least one; default 16,384). */
  limit?: number;
  /** Count what would be removed, change nothing. */
  dryRun?: boolean;
}

/** What one step of `Bucket.removeRange` did. */
export interface RangeRemoval {
  /** Records removed (dry run: that would be). */
  removed: number;
  /** Their payload + descriptor bytes (the bucket's size went down by exactly this much). */
  removedBytes: number;
  /** Finished records in the range looked at. */
  scanned: number;
  /** Selected records kept because `keep` protects them. */
  protected: number;
  /** Blocks dropped whole (dry run: that would be). */
  wholeBlocks: number;
  /** Every record before it (in the range) has been looked at: the next step starts here. */
  next: bigint;
  /** Nothing is left to look at before `stop`. */
  done: boolean;
}

/** One block of an entry, as a lifecycle `compress` job sees it. */
export interface BlockSummary {
  id: bigint;
  records: number;
  /** Payload bytes (the plain data file). */
  rawBytes: number;
  maxTs: bigint;
  compressed: boolean;
  /** Not the newest block of its entry (which still takes appends). */
  sealed: boolean;
}

/** What compressing one block did. */
export interface BlockCompressOutcome {
  /** Payload bytes of the block. */
  raw: number;
  /** Bytes of its compressed data file. */
  stored: number;
  records: number;
}

export interface CreateBucketOptions {
  provisioned?: boolean;
}

/** A committed change as seen by replication (api.md §20.6 notify, replication.md §11 log). */
export interface Change {
  /** Log sequence number, strictly increasing across the whole instance. */
  lsn: bigint;
  kind: 'write' | 'update';
  bucket: string;
  entry: string;
  ts: bigint;
  /** Payload size of the record. */
  size: number;
  contentType: string;
  /** Labels after the change (for updates: the complete new set). */
  labels: Labels;
  /** For updates: the labels that were removed by it. */
  removedLabels?: string[];
  digest: Buffer;
  /** Origin instance of the change ('' = written by a client of this instance). */
  origin: string;
  /** Wall-clock commit time in ms since epoch. */
  commitTime: number;
  /**
   * Set when the change after it in the log belongs to the same commit (a batch write, a shipment):
   * a reader that must not split commits (a consistency group) cuts only after a change without it.
   */
  commitContinues?: true;
}

/**
 * A replication slot pins the change log from `lsn` on (exclusive) so that it is not truncated,
 * and protects the records of its scope from FIFO eviction until they are shipped.
 */
export interface SlotState {
  name: string;
  /** Bucket whose records the slot protects from FIFO eviction. */
  bucket: string;
  /**
   * A consistency group's replication: every member bucket it ships (then `bucket` is not
   * used). Their writes count against `maxBytes` together.
   */
  buckets?: readonly string[];
  /** Every change with lsn <= this has been shipped (or filtered). */
  lsn: bigint;
  /**
   * Upper bound of pending payload bytes (writes to `bucket` after `lsn`) the slot may hold.
   * Within it, the slot's unshipped records are protected from FIFO eviction.
   */
  maxBytes: number;
  /**
   * What happens past `maxBytes`: `evict` (default) lets FIFO eviction pass and reports it through
   * `onSlotOverflow`; `block` refuses new writes to the bucket with 503 until the slot catches up.
   */
  onOverflow?: 'evict' | 'block';
}

/** True when `slot` protects (and counts) the records of `bucket`. */
export function slotCovers(slot: SlotState, bucket: string): boolean {
  return slot.buckets !== undefined ? slot.buckets.includes(bucket) : slot.bucket === bucket;
}

/** The durable, ordered change log (the storage WAL), read by replication. */
export interface ChangeLog {
  /** LSN of the latest durable change (0n when none). */
  lastLsn(): bigint;
  /** Reads up to `max` durable changes with lsn > `after`, in order. */
  read(after: bigint, max: number): Promise<Change[]>;
  /** Called after every group commit with the new last LSN. Returns an unsubscribe function. */
  onCommit(listener: (lastLsn: bigint) => void): () => void;
  /** Creates or replaces a slot (persisted). */
  setSlot(slot: SlotState): Promise<void>;
  /** Advances a slot's LSN (persisted lazily, at least on the next commit or checkpoint). */
  advanceSlot(name: string, lsn: bigint): void;
  /**
   * Everything up to `lsn` has been delivered: release its FIFO protection and pending bytes now,
   * in memory only. The persisted slot (log retention) still moves with `advanceSlot`, so a
   * restart resumes from the last persisted cursor and nothing the log still owes is truncated.
   */
  releaseShipped(name: string, lsn: bigint): void;
  getSlot(name: string): SlotState | undefined;
  /** Every slot (to find slots left behind by a crash during a replication's removal). */
  listSlots(): SlotState[];
  /** Payload bytes written to the slot's bucket after its LSN (what it still pins). */
  slotPendingBytes(name: string): number;
  dropSlot(name: string): Promise<void>;
  /** Registers a callback for FIFO eviction that had to pass a slot's protection. */
  onSlotOverflow(listener: (slot: string, evictedUpToLsn: bigint) => void): () => void;
}

/** One change of a shipment (`Storage.applyShipment`). */
export interface ShipmentItem {
  kind: 'write' | 'update';
  bucket: string;
  entry: string;
  ts: bigint;
  /** Position of the change in the stream (its source LSN): skipped when already applied. */
  lsn: bigint;
  /** Writes: the record's content type. */
  contentType?: string;
  /** Writes: the record's labels; updates: the complete label set after the update. */
  labels: Labels;
  /** Updates: labels the update removed. */
  removedLabels?: readonly string[];
  origin?: string;
  /** Writes: the whole payload. */
  payload?: Buffer;
  /** Writes: the payload's digest from the source (a record stored with it already is kept). */
  digest?: Buffer;
}

/**
 * Changes of several buckets that become visible all at once and durably, or not at all: one
 * step of a shipment stream (`key`, e.g. a group replication) from position `from` (exclusive)
 * to `position`.
 */
export interface Shipment {
  key: string;
  from: bigint;
  position: bigint;
  items: readonly ShipmentItem[];
}

/** What `applyShipment` did (the answer of the remote apply route, too). */
export type ShipmentOutcome = ShipmentAnswer;

/** The storage engine: buckets plus the change log. */
export interface Storage {
  /** Persistent id of this instance (uuid), created at first start. */
  readonly instanceId: string;
  readonly changes: ChangeLog;

  listBuckets(): BucketInfo[];
  /** Returns a bucket; 404 if missing, 409 while it is being deleted. */
  bucket(name: string): Bucket;
  hasBucket(name: string): boolean;
  createBucket(name: string, settings?: BucketSettingsPatch, opts?: CreateBucketOptions): Promise<Bucket>;
  updateBucketSettings(name: string, patch: BucketSettingsPatch): Promise<void>;
  /** Starts asynchronous deletion (DELETING status), resolves when it has been scheduled. */
  removeBucket(name: string): Promise<void>;
  renameBucket(name: string, newName: string): Promise<void>;
  /** Defaults for new buckets (api.md §6 `defaults.bucket`). */
  defaultSettings(): BucketSettings;
  /** Σ bucket sizes, oldest and latest record over all buckets. */
  usage(): { usage: bigint; oldest_record: bigint; latest_record: bigint };

  /**
   * Applies a shipment atomically and idempotently: its records and label updates across buckets
   * are made durable in one WAL commit together with the stream's new position, and published
   * together (a reader sees all of them or none, also after a crash). Changes with lsn <= the
   * applied position are left out; a shipment entirely at or before it changes nothing. 409 when
   * `from` is beyond the applied position (a shipment is missing) or a record conflicts, 404 for
   * a missing bucket, 422 for an invalid field: then nothing of it is applied.
   */
  applyShipment(shipment: Shipment): Promise<ShipmentOutcome>;
  /** Applied position of a shipment stream (0n when none was applied). */
  shipmentPosition(key: string): bigint;

  /** Checkpoint failures the server has not recovered from (`/info`). */
  health(): StorageHealth;

  /** Flushes, checkpoints and closes files. */
  close(): Promise<void>;
}

/** Engine configuration. */
export interface StorageOptions {
  dataPath: string;
  defaults?: Partial<BucketSettings>;
  /**
   * `fsync` (default): every acknowledged write is on stable storage (group commit).
   * `none`: no fsync — for throw-away data only.
   */
  durability?: 'fsync' | 'none';
  /** Checkpoint interval (ms, default 30 s). */
  checkpointIntervalMs?: number;
  /** WAL segment size (default 64 MiB); whole segments are deleted once nothing needs them. */
  walSegmentBytes?: number;
  /** The server's logger (storage failures that no request reports, e.g. a periodic checkpoint). */
  log?: (line: string) => void;
  /** Fault injection for tests: a hook that throws makes the operation fail as an I/O error would. */
  faults?: StorageFaults;
  /** Record descriptors kept in memory before clean, idle blocks are unloaded (tests; default 50,000). */
  descriptorBudget?: number;
}

/** Points where tests inject I/O failures into real storage (each hook may throw or reject). */
export interface StorageFaults {
  /** Before a WAL group is written. */
  walAppend?: () => void | Promise<void>;
  /** Before a failed group's WAL frames are cut out of the log. */
  walCut?: () => void | Promise<void>;
  /** Before queued payload bytes are written to the block file `path` (once per flush). */
  blockWrite?: (path: string) => void | Promise<void>;
  /** Before the block files of a group commit are synced (while its WAL frames are written). */
  blockSync?: () => void | Promise<void>;
  /** Before a checkpoint writes one descriptor, index or checkpoint file. */
  checkpointWrite?: (path: string) => void | Promise<void>;
  /** Before a checkpoint syncs a directory. */
  fsyncDir?: (dir: string) => void | Promise<void>;
}

/** Health of the storage engine as `/info` shows it (Ferry's `storage` field). */
export type StorageHealth = StorageHealthInfo;
