/**
 * Atomic, idempotent apply of a shipment across buckets (replication.md §8, the destination of a
 * consistency group). Every record is staged in its bucket (payload in its block file, slot
 * reserved, invisible), then one group-commit entry makes all of them durable in one WAL fsync,
 * opened by a `Shipment` frame that carries the stream's new position; the records and the
 * position are published together after it, with no other code in between. Recovery replays a
 * shipment's frames all or none (wal.ts), so a crash at any point leaves a state after some
 * whole shipment. Positions are kept in memory, in the WAL frames, and in
 * `.ferry/shipment-positions.json`, written by each checkpoint before the WAL it replaces goes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import type { Block, RecordDesc } from './block.js';
import type { BucketCatalogue } from './bucket-catalogue.js';
import type { BucketImpl } from './bucket.js';
import type { DescriptorCache } from './descriptor-cache.js';
import type { GroupCommit } from './group-commit.js';
import type { StagedBatch } from './record-writer.js';
import { OpType, type ShipmentOp, type UpdateOp, type WalOp } from './wal.js';
import { Errors, FerryError, isFerryError } from '../protocol/errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { checkLabelSet, checkOrigin } from '../protocol/field-bounds.js';
import { isShipmentKey } from '../protocol/shipment.js';
import { sameLabels } from '../protocol/labels.js';
import type { BatchItem, Labels, Shipment, ShipmentItem, ShipmentOutcome } from './types.js';

/** Applied positions of shipment streams, persisted by checkpoints. */
export class ShipmentPositions {
  private readonly positions = new Map<string, bigint>();
  private readonly file: string;

  constructor(
    metaDir: string,
    private readonly sync: boolean,
  ) {
    this.file = join(metaDir, 'shipment-positions.json');
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const parsed = parseJson(text) as { positions?: Record<string, bigint | number> };
    for (const [k, v] of Object.entries(parsed.positions ?? {})) this.positions.set(k, BigInt(v));
  }

  /** Positions of the shipments replayed by recovery (they are durable in the WAL). */
  replayed(ops: readonly WalOp[]): void {
    for (const op of ops) if (op.type === OpType.Shipment) this.set(op.key, op.position);
  }

  get(key: string): bigint {
    return this.positions.get(key) ?? 0n;
  }

  set(key: string, position: bigint): void {
    if (position > this.get(key)) this.positions.set(key, position);
  }

  /** Writes every position (a checkpoint, before `wal/checkpoint` moves past their frames). */
  persist(): Promise<void> {
    const positions = Object.fromEntries(this.positions);
    return writeFileAtomic(this.file, stringifyJson({ version: 1, positions }), { noSync: !this.sync });
  }
}

/** A label update of a shipment, resolved against the destination record. */
interface StagedUpdate {
  block: Block;
  desc: RecordDesc;
  labels: Labels;
}

export class ShipmentApplier {
  /** Shipments of one stream run one at a time. */
  private chains = new Map<string, Promise<unknown>>();

  constructor(
    private readonly catalogue: BucketCatalogue,
    private readonly cache: DescriptorCache,
    private readonly commits: GroupCommit,
    private readonly positions: ShipmentPositions,
  ) {}

  apply(s: Shipment): Promise<ShipmentOutcome> {
    if (!isShipmentKey(s.key)) return Promise.reject(Errors.shipmentInvalidKey(s.key));
    if (s.from < 0n || s.position <= s.from)
      return Promise.reject(Errors.shipmentInvalidRange(s.from, s.position));
    const prev = this.chains.get(s.key) ?? Promise.resolve();
    const run = prev.then(() => this.applyNow(s));
    const tail = run.catch(() => undefined);
    this.chains.set(s.key, tail);
    void tail.then(() => {
      if (this.chains.get(s.key) === tail) this.chains.delete(s.key);
    });
    return run;
  }

  private async applyNow(s: Shipment): Promise<ShipmentOutcome> {
    const applied = this.positions.get(s.key);
    const outcome: ShipmentOutcome = {
      applied: false,
      position: applied,
      written: 0,
      present: 0,
      updated: 0,
      missing: 0,
      skipped: 0,
    };
    if (s.position <= applied) {
      outcome.skipped = s.items.length;
      return outcome;
    }
    if (s.from > applied) throw Errors.shipmentGap(s.key, s.from, applied);
    const items = s.items.filter((it) => it.lsn > applied);
    outcome.skipped = s.items.length - items.length;
    const byBucket = new Map<string, ShipmentItem[]>();
    for (const it of items) {
      let list = byBucket.get(it.bucket);
      if (!list) byBucket.set(it.bucket, (list = []));
      list.push(it);
    }
    const buckets = [...byBucket.keys()].sort().map((name) => this.catalogue.get(name));
    // Every member counts the shipment as an operation in flight: renames and removals wait.
    await holdAll(buckets, 0, () => this.stageAndCommit(s, buckets, byBucket, outcome));
    return outcome;
  }

  private async stageAndCommit(
    s: Shipment,
    buckets: readonly BucketImpl[],
    byBucket: ReadonlyMap<string, readonly ShipmentItem[]>,
    outcome: ShipmentOutcome,
  ): Promise<void> {
    const batches: StagedBatch[] = [];
    const held: Block[] = [];
    let committed = false;
    try {
      const updates: StagedUpdate[] = [];
      const ops: UpdateOp[] = [];
      for (const bucket of buckets) {
        try {
          const list = byBucket.get(bucket.name)!;
          const written = list.filter((it) => it.kind === 'write');
          const writes = written.map(writeItem);
          checkFifoRoom(bucket, writes);
          const batch = await bucket.stage(writes);
          batches.push(batch);
          outcome.written += batch.writes.length;
          outcome.present += batch.presentAt.length;
          const mine = new Set<RecordDesc>(batch.writes.map((w) => w.desc));
          /** Labels this shipment gives records it did not write (a later update builds on them). */
          const relabelled = new Map<RecordDesc, Labels>();
          const relabel = (block: Block, desc: RecordDesc, labels: Labels, it: ShipmentItem): void => {
            block.inflight++;
            held.push(block);
            updates.push({ block, desc, labels });
            ops.push(updateOp(bucket.name, it, desc, labels));
            relabelled.set(desc, labels);
            outcome.updated++;
          };
          for (const at of batch.presentAt) {
            const it = written[at]!;
            // Kept as stored (same size and digest), but with the write's labels: the record as
            // the stream has it now (e.g. a member copy after labels changed while it was out).
            const found = await this.locate(bucket, it);
            if (!found || sameLabels(found.desc.labels, it.labels)) continue;
            const removedLabels = Object.keys(found.desc.labels).filter((k) => !Object.hasOwn(it.labels, k));
            relabel(found.block, found.desc, { ...it.labels }, { ...it, removedLabels });
          }
          for (const it of list) {
            if (it.kind !== 'update') continue;
            checkLabelSet(it.labels);
            if (it.origin) checkOrigin(it.origin);
            const found = await this.locate(bucket, it);
            if (!found) {
              outcome.missing++;
              continue;
            }
            const { block, desc } = found;
            const labels = updatedLabels(relabelled.get(desc) ?? desc.labels, it);
            if (mine.has(desc)) {
              // Written by this shipment: its frame carries the final labels (no update frame
              // before its write frame).
              desc.labels = labels;
              batch.writes.find((w) => w.desc === desc)!.op.labels = labels;
              outcome.updated++;
              continue;
            }
            if (desc.state !== 'finished') throw Errors.recordStillWritten(it.ts);
            relabel(block, desc, labels, it);
          }
        } catch (e) {
          // the source names the member whose destination refused (a group stops on it)
          throw inBucket(bucket.name, e);
        }
      }
      const writes = batches.flatMap((b) => b.writes);
      const paths = [...new Set(batches.flatMap((b) => b.paths))];
      const marker: ShipmentOp = {
        type: OpType.Shipment,
        lsn: 0n,
        time: Date.now(),
        bucket: '',
        key: s.key,
        position: s.position,
        count: ops.length + writes.length,
      };
      await this.commits.commitAll([marker, ...ops], writes, paths, () => {
        this.positions.set(s.key, s.position);
        for (const u of updates) {
          u.desc.labels = u.labels;
          u.block.dirty = true;
        }
      });
      committed = true;
      outcome.applied = true;
      outcome.position = s.position;
    } finally {
      for (const b of batches) b.settle(committed);
      for (const b of held) b.inflight--;
    }
  }

  private async locate(
    bucket: BucketImpl,
    it: ShipmentItem,
  ): Promise<{ block: Block; desc: RecordDesc } | undefined> {
    const entry = bucket.data.entries.get(it.entry);
    const block = entry?.blockFor(it.ts);
    if (!entry || !block) return undefined;
    await this.cache.load(entry, block);
    const desc = block.find(it.ts);
    return desc && { block, desc };
  }
}

/**
 * A FIFO quota evicts whole blocks of committed records, never the shipment's own staged ones:
 * writes beyond the quota could never be applied, and are refused at once (permanent: the
 * group suspends naming the member) instead of failing as a full quota, which is retried.
 */
function checkFifoRoom(bucket: BucketImpl, writes: readonly BatchItem[]): void {
  const s = bucket.data.settings;
  if (s.quota_type !== 'FIFO') return;
  let bytes = 0;
  for (const w of writes) bytes += w.payload.length;
  if (BigInt(bytes) > s.quota_size) throw Errors.shipmentOverFifoQuota(bucket.name, bytes, s.quota_size);
}

/** A refusal of bucket `name`'s part of a shipment, saying which bucket it was. */
function inBucket(name: string, e: unknown): unknown {
  return isFerryError(e) ? new FerryError(e.status, `Bucket '${name}': ${e.message}`) : e;
}

/** Runs `fn` while every bucket from `i` on counts it as an operation in flight. */
function holdAll<T>(buckets: readonly BucketImpl[], i: number, fn: () => Promise<T>): Promise<T> {
  const b = buckets[i];
  return b ? b.shared(() => holdAll(buckets, i + 1, fn)) : fn();
}

function writeItem(it: ShipmentItem): BatchItem {
  if (!it.payload)
    throw Errors.unprocessable(`Shipment write of ${it.bucket}/${it.entry} ${it.ts} has no payload`);
  return {
    entry: it.entry,
    ts: it.ts,
    payload: it.payload,
    opts: {
      size: it.payload.length,
      contentType: it.contentType,
      labels: it.labels,
      origin: it.origin,
      digest: it.digest,
    },
  };
}

/** The labels of a record after a shipped update: its own, minus the removed, plus the update's. */
function updatedLabels(current: Labels, it: ShipmentItem): Labels {
  const next: Labels = { ...current };
  for (const k of it.removedLabels ?? []) delete next[k];
  return Object.assign(next, it.labels);
}

function updateOp(bucket: string, it: ShipmentItem, desc: RecordDesc, labels: Labels): UpdateOp {
  return {
    type: OpType.Update,
    lsn: 0n,
    time: Date.now(),
    bucket,
    entry: it.entry,
    ts: it.ts,
    labels,
    removed: [...(it.removedLabels ?? [])],
    origin: it.origin ?? '',
    size: desc.size,
    contentType: desc.contentType,
    digest: desc.digest,
  };
}
