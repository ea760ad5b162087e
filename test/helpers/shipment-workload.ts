/**
 * A seeded workload of shipments across member buckets for the atomic-apply tests: every change
 * carries a global sequence number (label `seq`, also its timestamp and LSN), so a reader can check
 * the prefix property — never a later record without every earlier one — on what it sees.
 */
import { digestOf } from '../../src/storage/digest.js';
import type { Shipment, ShipmentItem } from '../../src/storage/types.js';
import { seededBytes } from './seed.js';

/** The planned shipments and which bucket each sequence number went to. */
export interface ShipmentPlan {
  shipments: Shipment[];
  bucketOf: Map<number, string>;
}

/** Options of {@link planShipments}. */
export interface PlanOptions {
  key: string;
  buckets: readonly string[];
  count: number;
  /** Records per shipment: 1 to this many (default 8). */
  maxItems?: number;
  /** Payload bytes: 0 to this many (default 256). */
  maxPayload?: number;
  /** Entry of every record (default 'e'). */
  entry?: string;
}

/** `count` shipments, each from the previous one's position, of records with seq 1, 2, 3… */
export function planShipments(random: () => number, o: PlanOptions): ShipmentPlan {
  const shipments: Shipment[] = [];
  const bucketOf = new Map<number, string>();
  let seq = 0;
  for (let s = 0; s < o.count; s++) {
    const from = BigInt(seq);
    const n = 1 + Math.floor(random() * (o.maxItems ?? 8));
    const items: ShipmentItem[] = [];
    for (let i = 0; i < n; i++) {
      seq++;
      const bucket = o.buckets[Math.floor(random() * o.buckets.length)]!;
      bucketOf.set(seq, bucket);
      const payload = seededBytes(random, Math.floor(random() * ((o.maxPayload ?? 256) + 1)));
      items.push({
        kind: 'write',
        bucket,
        entry: o.entry ?? 'e',
        ts: BigInt(seq),
        lsn: BigInt(seq),
        contentType: 'application/octet-stream',
        labels: { seq: String(seq) },
        origin: 'source-instance',
        payload,
        digest: digestOf(payload),
      });
    }
    shipments.push({ key: o.key, from, position: BigInt(seq), items });
  }
  return { shipments, bucketOf };
}

/**
 * Checks what a reader saw, reading the members one after another in `reads` order: state only
 * grows and is always a prefix 1..n, so once a read showed seq m, every later read (of any member)
 * must show each of its own records with seq <= m. Returns the first violation, or null.
 */
export function prefixViolation(
  reads: ReadonlyArray<{ bucket: string; seqs: readonly number[] }>,
  bucketOf: ReadonlyMap<number, string>,
): string | null {
  let known = 0;
  for (const { bucket, seqs } of reads) {
    const seen = new Set(seqs);
    const top = Math.max(known, ...seqs);
    for (let q = 1; q <= top; q++) {
      if (bucketOf.get(q) === bucket && !seen.has(q))
        return `bucket '${bucket}' lacks seq ${q} while seq ${top} was visible (reads: ${reads.map((r) => `${r.bucket}:${r.seqs.length}`).join(' ')})`;
    }
    known = top;
  }
  return null;
}
