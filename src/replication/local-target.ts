/**
 * Destination bucket on this instance, no HTTP: small records go into the destination bucket in
 * one `writeMany` per request, large ones are streamed from the source block file; all of one
 * request are committed together (one commit, as a client batch).
 */
import { isFerryError } from '../protocol/errors.js';
import { AtomicBatch, type BatchTicket } from '../storage/atomic-batch.js';
import type { Storage, WriteOptions, WriteOutcome } from '../storage/types.js';
import {
  classifyStatus,
  labelChanges,
  missingBucketError,
  SMALL_PAYLOAD,
  TargetError,
  type ItemOutcome,
  type ShipRecord,
  type Target,
} from './target.js';
import { mapLimit } from './map-limit.js';
import { targetSettingsPatch, type TargetSettings } from './settings.js';

/** Options of a LocalTarget. */
export interface LocalTargetOptions {
  storage: Storage;
  dstBucket: string;
  createTarget: boolean;
  targetSettings?: TargetSettings;
}

/** Large records streamed concurrently per request. */
const LOCAL_CONCURRENCY = 4;
/** Label updates applied concurrently per request (they share group commits). */
const UPDATE_CONCURRENCY = 64;

function optionsOf(r: ShipRecord, batch: BatchTicket): WriteOptions {
  return {
    size: r.size,
    contentType: r.contentType,
    labels: r.labels,
    origin: r.origin,
    digest: r.digest,
    batch,
  };
}

function writeOutcome(res: WriteOutcome): ItemOutcome {
  return { kind: res === 'already_present' ? 'present' : 'written' };
}

function outcomeOf(e: unknown): ItemOutcome {
  if (isFerryError(e)) {
    // the destination bucket vanished: re-prepare and retry rather than fail the record
    if (e.status === 404) return { kind: 'temporary', status: 404, message: e.message };
    return classifyStatus(e.status, e.message);
  }
  return { kind: 'temporary', status: -1, message: (e as Error)?.message ?? String(e) };
}

/** Same-instance destination. */
export class LocalTarget implements Target {
  readonly description = 'local';
  available = false;

  constructor(private readonly opts: LocalTargetOptions) {}

  get instanceId(): string {
    return this.opts.storage.instanceId;
  }

  async prepare(): Promise<void> {
    const { storage, dstBucket } = this.opts;
    if (storage.hasBucket(dstBucket)) {
      this.available = true;
      return;
    }
    if (!this.opts.createTarget) {
      this.available = false;
      throw missingBucketError(dstBucket);
    }
    try {
      await storage.createBucket(dstBucket, targetSettingsPatch(this.opts.targetSettings));
    } catch (e) {
      if (!(isFerryError(e) && e.status === 409 && storage.hasBucket(dstBucket))) {
        this.available = false;
        const status = isFerryError(e) ? e.status : -1;
        // settings the storage refuses (422) stay refused: only a 409 (bucket being deleted),
        // 5xx or an unknown error may pass with time
        const temporary = status === 409 || classifyStatus(status, '').kind === 'temporary';
        throw new TargetError(
          status,
          `Failed to create destination bucket '${dstBucket}': ${(e as Error).message}`,
          temporary,
        );
      }
    }
    this.available = true;
  }

  async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const bucket = this.bucket();
    const out = new Array<ItemOutcome>(records.length);
    const small: number[] = [];
    records.forEach((r, i) => {
      if (r.size <= SMALL_PAYLOAD) small.push(i);
    });
    // One commit for the whole request, as for a client batch (atomic-batch.ts): a reader of the
    // destination sees all of it or none. Small records in one `writeMany`, large ones streamed
    // from the source file, a few at a time (each holds the commit back only until it is staged).
    const batch = new AtomicBatch();
    const writes: Array<Promise<unknown>> = [];
    if (small.length > 0) {
      // one after another: the source storage's read-ahead then serves neighbours from one read
      const payloads: Buffer[] = [];
      for (const i of small) payloads.push(await records[i]!.record.buffer());
      const ticket = batch.ticket();
      const many = bucket.writeMany(
        small.map((i, k) => {
          const r = records[i]!;
          return { entry, ts: r.ts, opts: optionsOf(r, ticket), payload: payloads[k]! };
        }),
      );
      writes.push(
        many
          .then((results) =>
            results.forEach((res, k) => {
              out[small[k]!] = typeof res === 'string' ? writeOutcome(res) : outcomeOf(res);
            }),
          )
          .finally(() => ticket.leave()),
      );
    }
    const large = records.map((_, i) => i).filter((i) => records[i]!.size > SMALL_PAYLOAD);
    try {
      await mapLimit(large, LOCAL_CONCURRENCY, async (i) => {
        const r = records[i]!;
        const ticket = batch.ticket();
        writes.push(
          bucket
            .write(entry, r.ts, optionsOf(r, ticket), r.record.stream())
            .then(
              (res) => void (out[i] = writeOutcome(res)),
              (e: unknown) => void (out[i] = outcomeOf(e)),
            )
            .finally(() => ticket.leave()),
        );
        await ticket.settled;
      });
    } finally {
      batch.seal();
      await Promise.all(writes);
    }
    // the storage answers 409 for a record of the same timestamp it still writes (another delivery
    // of the same record, e.g. re-shipped after a restart) as for a real conflict: tell them apart
    const conflicts = records
      .map((_, i) => i)
      .filter((i) => out[i]?.kind === 'permanent' && (out[i] as { status: number }).status === 409);
    await mapLimit(conflicts, LOCAL_CONCURRENCY, async (i) => {
      out[i] = await this.checkExisting(entry, records[i]!, out[i]!);
    });
    return out;
  }

  async update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const bucket = this.bucket();
    return mapLimit(records, UPDATE_CONCURRENCY, async (r): Promise<ItemOutcome> => {
      try {
        const current = (await bucket.read(entry, r.ts)).meta.labels;
        const changes = labelChanges(r);
        const differs = Object.entries(changes).some(([k, v]) =>
          v === null ? current[k] !== undefined : current[k] !== v,
        );
        // an update that changes nothing is not applied: this ends label ping-pong between two
        // local replications pointing at each other
        if (!differs) return { kind: 'present' };
        await bucket.updateLabels(entry, r.ts, changes, { origin: r.origin });
        return { kind: 'written' };
      } catch (e) {
        if (isFerryError(e) && e.status === 404 && this.opts.storage.hasBucket(this.opts.dstBucket)) {
          return { kind: 'missing' };
        }
        return outcomeOf(e);
      }
    });
  }

  /**
   * A 409 for a write: the record is already present when the destination holds it finished with
   * the same size and digest; one still being written is retried later (it may be this same
   * record, delivered twice), anything else stays the conflict `refused`.
   */
  private async checkExisting(entry: string, r: ShipRecord, refused: ItemOutcome): Promise<ItemOutcome> {
    try {
      const meta = (await this.bucket().read(entry, r.ts)).meta;
      if (meta.size === r.size && meta.digest.equals(r.digest.subarray(0, meta.digest.length))) {
        return { kind: 'present' };
      }
      return refused;
    } catch (e) {
      // 425 (still being written) or 404 (removed meanwhile): the next attempt tells
      if (isFerryError(e) && (e.status === 425 || e.status === 404)) {
        return { kind: 'temporary', status: e.status, message: e.message };
      }
      return outcomeOf(e);
    }
  }

  private bucket() {
    try {
      return this.opts.storage.bucket(this.opts.dstBucket);
    } catch (e) {
      this.available = false;
      const status = isFerryError(e) ? e.status : -1;
      throw new TargetError(status, (e as Error).message, true);
    }
  }

  /** Nothing to abandon: storage calls settle by themselves. */
  async reset(): Promise<void> {}

  async close(): Promise<void> {}
}
