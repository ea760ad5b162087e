/**
 * Bulk removal of a time range of one entry (`Bucket.removeRange`: lifecycle `delete` jobs and
 * remove-by-query). Removing record by record costs one WAL op, one group-commit entry, a splice
 * of the block's descriptor array and a summary scan per record; retention removes whole blocks:
 *
 * - a sealed block (not its entry's newest) whose finished records all lie in the range, are all
 *   selected and none protected, with no write, label update or compression under way, is dropped
 *   whole: one RemoveBlock op (several blocks share one group-commit entry), the size account down
 *   by its summary, its files deleted once the ops are durable (recovery replays the ops when a
 *   crash came first). Without a `select` its descriptors are not even loaded;
 * - every other block in the range (the boundary ones, those with records to keep) loses its
 *   doomed records in one group-commit entry of RemoveRecord ops, applied to memory at once; a
 *   block left empty is then dropped whole as well.
 *
 * Accounting is exact: the bucket's size goes down by the payload + descriptor size of exactly
 * the records reported removed.
 */
import type { Block, RecordDesc } from './block.js';
import type { BucketData } from './bucket-data.js';
import type { BucketServices } from './bucket-services.js';
import type { Entry } from './entry.js';
import type { Quota } from './quota.js';
import { OpType, type RemoveRecordOp } from './wal.js';
import type { RangeRemoval, RangeRemovalOptions } from './types.js';

/** Records looked at per step by default (16 blocks of the default 1024 records). */
export const DEFAULT_REMOVAL_STEP = 16_384;

export class RangeRemover {
  constructor(
    private readonly data: BucketData,
    private readonly services: BucketServices,
    private readonly quota: Quota,
  ) {}

  /** One step of `Bucket.removeRange` (the caller runs it as a shared bucket operation). */
  async step(
    entryName: string,
    start: bigint,
    stop: bigint,
    opts: RangeRemovalOptions = {},
  ): Promise<RangeRemoval> {
    const out: RangeRemoval = {
      removed: 0,
      removedBytes: 0,
      scanned: 0,
      protected: 0,
      wholeBlocks: 0,
      next: stop,
      done: true,
    };
    const entry = this.data.entries.get(entryName);
    if (!entry || entry.status === 'DELETING' || start >= stop) return out;
    const limit = Math.max(1, opts.limit ?? DEFAULT_REMOVAL_STEP);
    /** Blocks to drop whole, collected so that neighbours share one commit. */
    let whole: Block[] = [];
    const dropWhole = async (): Promise<void> => {
      const blocks = whole;
      whole = [];
      if (!opts.dryRun) await this.quota.dropDetached(entry, blocks);
    };

    let from = start;
    while (from < stop) {
      const block = entry.blocks[entry.firstBlockIndex(from)];
      if (!block || block.id >= stop || (block.maxTs < from && block === entry.blocks.at(-1))) break;
      if (block.maxTs < from) {
        // the block before `from` (firstBlockIndex may return it): go on with the next one
        const next = entry.blocks[entry.blocks.indexOf(block) + 1];
        if (!next || next.id >= stop) break;
        from = next.id;
        continue;
      }
      if (out.scanned >= limit) {
        out.next = from;
        out.done = false;
        break;
      }
      if (block.transition) {
        // a compression (or its way back) is under way: decide once it is done
        await dropWhole();
        await block.transition.catch(() => undefined);
        continue;
      }
      const wholeCandidate =
        block !== entry.blocks.at(-1) &&
        block.count > 0 &&
        block.minTs >= start &&
        block.maxTs < stop &&
        !(opts.keep?.anyIn(block.minTs, block.maxTs, block.maxLsn) ?? false);
      if (wholeCandidate && !opts.select && this.droppable(block)) {
        this.takeWhole(entry, block, whole, out, opts.dryRun === true);
        from = block.maxTs + 1n;
        continue;
      }
      // Records one by one: the descriptors are needed.
      const picked = await this.pick(entry, block, from, stop, opts, out);
      if (picked === undefined) continue; // the block left its entry meanwhile: look again
      const { doomed, finished } = picked;
      from = picked.next;
      if (wholeCandidate && finished === block.count && doomed.length === finished && this.droppable(block)) {
        this.takeWhole(entry, block, whole, out, opts.dryRun === true, true);
        continue;
      }
      await dropWhole();
      if (doomed.length > 0) await this.removeRecords(entry, block, doomed, out, opts.dryRun === true);
    }
    await dropWhole();
    return out;
  }

  /** Nothing under way in the block: no write or reservation, label update, removal, compression. */
  private droppable(block: Block): boolean {
    return !block.removed && block.inflight === 0 && block.slots === block.count && !block.transition;
  }

  /** Counts `block` as removed whole and detaches it (`scanned`: its records were counted looked at). */
  private takeWhole(
    entry: Entry,
    block: Block,
    whole: Block[],
    out: RangeRemoval,
    dryRun: boolean,
    scanned = false,
  ): void {
    if (!scanned) out.scanned += block.count;
    out.removed += block.count;
    out.removedBytes += block.accSize;
    out.wholeBlocks++;
    if (dryRun) return;
    // Out of the entry at once (no writer chooses it any more); the op is logged with its neighbours.
    this.quota.detachBlocks(entry, [block]);
    whole.push(block);
  }

  /**
   * Looks at the finished records of `block` in [from, stop): counts them, applies `select` and
   * `keep`. Undefined when the block left its entry while its descriptors were loaded.
   */
  private async pick(
    entry: Entry,
    block: Block,
    from: bigint,
    stop: bigint,
    opts: RangeRemovalOptions,
    out: RangeRemoval,
  ): Promise<{ doomed: RecordDesc[]; finished: number; next: bigint } | undefined> {
    while (!block.records) {
      await this.services.cache.load(entry, block);
      if (block.removed) return undefined;
    }
    const recs = block.records;
    const doomed: RecordDesc[] = [];
    let finished = 0;
    let next = from;
    for (let i = block.lowerBound(from); i < recs.length; i++) {
      const r = recs[i]!;
      if (r.ts >= stop) break;
      next = r.ts + 1n;
      if (r.state !== 'finished') continue;
      finished++;
      if (opts.select && !opts.select(r)) continue;
      if (opts.keep?.has(r.ts, r.lsn)) out.protected++;
      else doomed.push(r);
    }
    out.scanned += finished;
    // nothing of the block before `stop` is left to look at
    if (block.maxTs + 1n > next) next = block.maxTs + 1n < stop ? block.maxTs + 1n : stop;
    return { doomed, finished, next };
  }

  /** Removes `doomed` (finished records of `block`) with one group-commit entry. */
  private async removeRecords(
    entry: Entry,
    block: Block,
    doomed: RecordDesc[],
    out: RangeRemoval,
    dryRun: boolean,
  ): Promise<void> {
    if (dryRun) {
      out.removed += doomed.length;
      for (const d of doomed) out.removedBytes += d.size + d.descSize;
      return;
    }
    const time = Date.now();
    const ops = doomed.map((d): RemoveRecordOp => ({
      type: OpType.RemoveRecord,
      lsn: 0n,
      time,
      bucket: this.data.name,
      entry: entry.name,
      ts: d.ts,
    }));
    block.inflight++; // descriptors stay loaded, the block stays in place
    try {
      await this.services.commits.commitAll(ops, [], [], () => {
        if (block.removed || !block.records) return; // dropped meanwhile (FIFO): already counted
        let n = 0;
        let bytes = 0;
        const gone = new Set(doomed);
        // one pass instead of a splice per record; a record removed meanwhile is not counted twice
        block.records = block.records.filter((r) => {
          if (!gone.has(r)) return true;
          n++;
          bytes += r.size + r.descSize;
          return false;
        });
        if (n === 0) return;
        block.version++;
        block.recompute();
        block.dirty = true;
        entry.indexDirty = true;
        this.data.account.bytes -= bytes;
        out.removed += n;
        out.removedBytes += bytes;
      });
    } finally {
      block.inflight--;
    }
    if (block.records?.length === 0 && block.inflight === 0 && !block.removed) {
      await this.quota.removeBlockDurably(entry, block);
    }
  }
}
