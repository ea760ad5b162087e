/**
 * Repair after a verification (replication.md §10): what is missing at the destination is shipped
 * through the replication's own `Target` (the same writes the engine makes, idempotent), records
 * whose payload or content type differ are removed at the destination and shipped again, records
 * whose labels differ get the source's labels (labels only the destination has are removed), and
 * extra records are removed only when the user asked for it (`remove_extra`).
 */
import { isFerryError } from '../protocol/errors.js';
import type { RepairSummary } from '../protocol/verify.js';
import type { Bucket, Labels, StoredRecord } from '../storage/types.js';
import { boundMessage, type ItemOutcome, type ShipRecord, type Target } from './target.js';
import type { ScopeDiff } from './verify-compare.js';
import type { VerifyPeer } from './verify-peer.js';

/** Records shipped per target call. */
const SHIP_CHUNK = 256;
/** Failures listed in the summary. */
const MAX_ERRORS = 20;

/** Inputs of a repair. */
export interface RepairOptions {
  source: Bucket;
  target: Target;
  peer: VerifyPeer;
  removeExtra: boolean;
  onProgress?(done: number, total: number): void;
}

function shipRecord(rec: StoredRecord, removedLabels: readonly string[] = []): ShipRecord {
  const m = rec.meta;
  return {
    lsn: 0n,
    ts: m.ts,
    size: m.size,
    contentType: m.contentType,
    labels: m.labels,
    removedLabels,
    digest: m.digest,
    origin: m.origin,
    record: rec,
  };
}

/** Repairs every diff; returns what was done. */
export async function repairDiffs(diffs: readonly ScopeDiff[], o: RepairOptions): Promise<RepairSummary> {
  const sum: RepairSummary = { written: 0, relabelled: 0, removed: 0, failed: 0, errors: [] };
  const fail = (entry: string, ts: bigint, status: number, message: string): void => {
    sum.failed++;
    if (sum.errors.length < MAX_ERRORS)
      sum.errors.push({ entry, ts, status, message: boundMessage(message) });
  };
  let total = 0;
  for (const d of diffs)
    total += d.missing.length + d.different.length + (o.removeExtra ? d.extra.length : 0);
  let done = 0;
  const step = (n: number): void => {
    done += n;
    o.onProgress?.(done, total);
  };
  if (total === 0) return sum;
  await o.target.prepare();
  for (const d of diffs) {
    const dst = d.scope.dstEntry;
    const rewrite = d.different.filter(
      (x) => x.parts.includes('payload') || x.parts.includes('content_type'),
    );
    const relabel = d.different.filter((x) => !rewrite.includes(x));
    // a record with another payload or content type cannot be overwritten: it goes first
    const removed = await o.peer.remove(
      dst,
      rewrite.map((x) => x.ts),
    );
    const ship: bigint[] = [...d.missing];
    removed.forEach((r, i) => {
      if (r.ok) ship.push(rewrite[i]!.ts);
      else fail(dst, rewrite[i]!.ts, r.status, r.message);
    });
    ship.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = 0; i < ship.length; i += SHIP_CHUNK) {
      const records = await readAll(o.source, d.scope.srcEntry, ship.slice(i, i + SHIP_CHUNK));
      // one target call per origin, as the engine ships them
      const byOrigin = new Map<string, ShipRecord[]>();
      for (const r of records) {
        const list = byOrigin.get(r.meta.origin) ?? [];
        list.push(shipRecord(r));
        byOrigin.set(r.meta.origin, list);
      }
      for (const list of byOrigin.values()) {
        const out = await o.target.write(dst, list);
        count(out, list, dst, () => sum.written++, fail);
      }
      step(Math.min(SHIP_CHUNK, ship.length - i));
    }
    const dstLabels = new Map<bigint, Labels>(relabel.map((x) => [x.ts, x.dstLabels ?? {}]));
    for (let i = 0; i < relabel.length; i += SHIP_CHUNK) {
      const records = await readAll(
        o.source,
        d.scope.srcEntry,
        relabel.slice(i, i + SHIP_CHUNK).map((x) => x.ts),
      );
      const list = records.map((r) => {
        const at = dstLabels.get(r.meta.ts) ?? {};
        return shipRecord(
          r,
          Object.keys(at).filter((k) => r.meta.labels[k] === undefined),
        );
      });
      if (list.length > 0) {
        const out = await o.target.update(dst, list);
        count(out, list, dst, () => sum.relabelled++, fail);
      }
      step(Math.min(SHIP_CHUNK, relabel.length - i));
    }
    if (o.removeExtra && d.extra.length > 0) {
      const out = await o.peer.remove(dst, d.extra);
      out.forEach((r, i) => {
        if (r.ok) sum.removed++;
        else fail(dst, d.extra[i]!, r.status, r.message);
      });
      step(d.extra.length);
    }
  }
  return sum;
}

/** The source records still there (one removed meanwhile has nothing to ship). */
async function readAll(source: Bucket, entry: string, ts: readonly bigint[]): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for (const t of ts) {
    try {
      out.push(await source.read(entry, t));
    } catch (e) {
      if (!(isFerryError(e) && e.status === 404)) throw e;
    }
  }
  return out;
}

function count(
  out: readonly ItemOutcome[],
  list: readonly ShipRecord[],
  entry: string,
  ok: () => void,
  fail: (entry: string, ts: bigint, status: number, message: string) => void,
): void {
  out.forEach((o, i) => {
    if (o.kind === 'written' || o.kind === 'present') ok();
    else if (o.kind === 'missing') fail(entry, list[i]!.ts, 404, 'Record missing at the destination');
    else fail(entry, list[i]!.ts, o.status, o.message);
  });
}
