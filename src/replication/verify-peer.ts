/**
 * The destination side of a verification (replication.md §10): what a verifier asks the
 * destination bucket, whether it is a bucket of this instance (`LocalPeer`, storage calls) or of
 * another one (`RemotePeer` in verify-remote.ts: a Ferry's range-digest route, or a plain
 * ReductStore's query API). Writes of a repair go through the replication's `Target`; a peer only
 * compares and, when a record must be replaced or an extra one is removed on request, removes.
 */
import { createHash } from 'node:crypto';
import { isFerryError } from '../protocol/errors.js';
import type { DigestQuery, RangeDigest, RecordSummary, Storage } from '../storage/types.js';

/** One range of a destination entry. */
export interface PeerQuery extends DigestQuery {
  entry: string;
}

/** A page of record summaries; `more` = the range holds more records after the last one. */
export interface PeerPage {
  records: RecordSummary[];
  more: boolean;
}

/** Bytes and round trips a peer exchanged. */
export interface Exchange {
  round_trips: number;
  bytes_sent: number;
  bytes_received: number;
}

/** Outcome of removing one record at the destination. */
export type RemoveOutcome = { ok: true } | { ok: false; status: number; message: string };

/** The destination of a verification. */
export interface VerifyPeer {
  /**
   * `digest`: range digests (a Ferry). `metadata`: only listings without content digests (a plain
   * ReductStore); known after `open()`.
   */
  readonly method: 'digest' | 'metadata';
  readonly exchange: Exchange;
  /** Finds out what the destination can answer. */
  open(): Promise<void>;
  /** Digests of the ranges, in order (method `digest` only). One round trip. */
  digests(queries: readonly PeerQuery[]): Promise<RangeDigest[]>;
  /** Up to `limit` records of each range, in order. One round trip. */
  list(queries: ReadonlyArray<PeerQuery & { limit: number }>): Promise<PeerPage[]>;
  /** Removes records of one entry (to replace them, or `remove_extra`). */
  remove(entry: string, ts: readonly bigint[]): Promise<RemoveOutcome[]>;
  close(): Promise<void>;
}

/** The destination bucket on this instance. */
export class LocalPeer implements VerifyPeer {
  readonly method = 'digest';
  readonly exchange: Exchange = { round_trips: 0, bytes_sent: 0, bytes_received: 0 };

  constructor(
    private readonly storage: Storage,
    private readonly bucket: string,
  ) {}

  async open(): Promise<void> {}

  /** A missing destination bucket holds no records. */
  private found() {
    return this.storage.hasBucket(this.bucket) ? this.storage.bucket(this.bucket) : undefined;
  }

  async digests(queries: readonly PeerQuery[]): Promise<RangeDigest[]> {
    this.exchange.round_trips++;
    const b = this.found();
    const out: RangeDigest[] = [];
    for (const q of queries) {
      out.push(b ? (await b.rangeDigests(q.entry, [q]))[0]! : emptyDigest());
    }
    return out;
  }

  async list(queries: ReadonlyArray<PeerQuery & { limit: number }>): Promise<PeerPage[]> {
    this.exchange.round_trips++;
    const b = this.found();
    const out: PeerPage[] = [];
    for (const q of queries) {
      const got = b ? await b.recordSummaries(q.entry, q.start, q.stop, q.limit + 1) : [];
      out.push({ records: got.slice(0, q.limit), more: got.length > q.limit });
    }
    return out;
  }

  async remove(entry: string, ts: readonly bigint[]): Promise<RemoveOutcome[]> {
    const b = this.found();
    const out: RemoveOutcome[] = [];
    for (const t of ts) {
      try {
        if (b) await b.removeRecord(entry, t);
        out.push({ ok: true });
      } catch (e) {
        // already gone is what was asked for
        if (isFerryError(e) && e.status === 404) out.push({ ok: true });
        else out.push({ ok: false, status: isFerryError(e) ? e.status : -1, message: (e as Error).message });
      }
    }
    return out;
  }

  async close(): Promise<void> {}
}

/** The digest of a range without records (SHA-256 of nothing). */
export const EMPTY_DIGEST = createHash('sha256').digest('hex');
const emptyDigest = (): RangeDigest => ({ count: 0, digest: EMPTY_DIGEST, bounds: [] });
