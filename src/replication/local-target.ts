/**
 * Destination bucket on this instance: records go straight into `storage.bucket(dst).write`, the
 * payload streamed from the source file, no HTTP and no intermediate copy.
 */
import { isFerryError } from '../protocol/errors.js';
import type { Storage } from '../storage/types.js';
import {
  classifyStatus,
  lazyPayload,
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

/** Records applied concurrently per request. */
const LOCAL_CONCURRENCY = 64;

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
      throw new TargetError(
        404,
        `Destination bucket '${dstBucket}' does not exist (create_target is false)`,
        true,
      );
    }
    try {
      await storage.createBucket(dstBucket, targetSettingsPatch(this.opts.targetSettings));
    } catch (e) {
      if (!(isFerryError(e) && e.status === 409 && storage.hasBucket(dstBucket))) {
        this.available = false;
        const status = isFerryError(e) ? e.status : -1;
        throw new TargetError(
          status,
          `Failed to create destination bucket '${dstBucket}': ${(e as Error).message}`,
          true,
        );
      }
    }
    this.available = true;
  }

  async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const bucket = this.bucket();
    // concurrent writes share group commits (one fsync for many records)
    return mapLimit(records, LOCAL_CONCURRENCY, async (r): Promise<ItemOutcome> => {
      try {
        const res = await bucket.write(
          entry,
          r.ts,
          { size: r.size, contentType: r.contentType, labels: r.labels, origin: r.origin, digest: r.digest },
          r.size <= SMALL_PAYLOAD ? await r.buffer() : lazyPayload(() => r.open()),
        );
        return { kind: res === 'already_present' ? 'present' : 'written' };
      } catch (e) {
        return outcomeOf(e);
      }
    });
  }

  async update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const bucket = this.bucket();
    return mapLimit(records, LOCAL_CONCURRENCY, async (r): Promise<ItemOutcome> => {
      try {
        const current = (await bucket.read(entry, r.ts)).meta.labels;
        const changes: Record<string, string | null> = {};
        let differs = false;
        for (const [k, v] of Object.entries(r.labels)) {
          changes[k] = v;
          if (current[k] !== v) differs = true;
        }
        for (const k of r.removedLabels) {
          if (r.labels[k] !== undefined) continue;
          changes[k] = null;
          if (current[k] !== undefined) differs = true;
        }
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

  private bucket() {
    try {
      return this.opts.storage.bucket(this.opts.dstBucket);
    } catch (e) {
      this.available = false;
      const status = isFerryError(e) ? e.status : -1;
      throw new TargetError(status, (e as Error).message, true);
    }
  }

  async close(): Promise<void> {}
}
