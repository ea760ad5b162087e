/**
 * The one destination interface of the replication engine (replication.md §1.5): the same task
 * ships to a bucket of this instance (`LocalTarget`, no HTTP) or of another instance
 * (`RemoteTarget`, batch protocol v1 over keep-alive HTTP).
 */
import { MAX_REPLICATION_MESSAGE_CHARS } from '../protocol/limits.js';
import { payloadChunks, readPayloads, type PayloadAccess } from '../storage/payload-chunks.js';
import type { Labels, StoredRecord } from '../storage/types.js';

/** One record to apply at the destination, read from the source storage at send time. */
export interface ShipRecord {
  /** LSN of the source change. */
  lsn: bigint;
  ts: bigint;
  size: number;
  contentType: string;
  /** Current labels of the source record. */
  labels: Labels;
  /** Labels removed by a label update (sent as `k=` so the destination drops them too). */
  removedLabels: readonly string[];
  /** First 16 bytes of the payload's SHA-256. */
  digest: Buffer;
  /** Origin instance of the change ('' = written by a client of the source instance). */
  origin: string;
  /** The source record: its payload is read (writes only) when the request body is produced. */
  record: StoredRecord;
}

/** Payloads up to this size are read whole instead of streamed. */
export const SMALL_PAYLOAD = 64 * 1024;

/**
 * A write of at most this many records and payload bytes, each at most `SMALL_PAYLOAD`, may share
 * a request with other entries' writes (a target that `joinsWrites`).
 */
export const JOINABLE_RECORDS = 128;
export const JOINABLE_BYTES = 256 * 1024;

/** Whether a write group is small enough to share a request (see `JOINABLE_RECORDS`). */
export function joinable<T>(items: readonly T[], size: (item: T) => number): boolean {
  if (items.length > JOINABLE_RECORDS) return false;
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (n > SMALL_PAYLOAD) return false;
    bytes += n;
  }
  return bytes <= JOINABLE_BYTES;
}

/** Small payloads are coalesced into chunks of about this size before they reach a socket. */
const COALESCE_BYTES = 256 * 1024;

/** Outcome of one record at the destination. */
export type ItemOutcome =
  | { kind: 'written' }
  | { kind: 'present' }
  /** A label update for a record the destination does not hold. */
  | { kind: 'missing' }
  | { kind: 'temporary'; status: number; message: string; retryAfterMs?: number }
  | { kind: 'permanent'; status: number; message: string };

/**
 * A message as kept in status, diagnostics and failure logs: at most
 * `MAX_REPLICATION_MESSAGE_CHARS` characters, a cut one saying how much was left out.
 */
export function boundMessage(message: string): string {
  if (message.length <= MAX_REPLICATION_MESSAGE_CHARS) return message;
  const rest = message.length - MAX_REPLICATION_MESSAGE_CHARS;
  return `${message.slice(0, MAX_REPLICATION_MESSAGE_CHARS)}… (${rest} more characters)`;
}

/** Status, message and retry hint of a failed delivery attempt. */
export interface TargetFailure {
  status: number;
  message: string;
  retryAfterMs?: number;
}

/** A whole-request failure (connection, timeout, refusal of the request as such). */
export class TargetError extends Error {
  constructor(
    /** HTTP status, or a negative client code (-1 unknown, -2 timeout, -3 connection error). */
    readonly status: number,
    message: string,
    /** Temporary failures are retried with backoff; permanent ones apply to every record sent. */
    readonly temporary: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(boundMessage(message));
    this.name = 'TargetError';
  }

  /** `e` itself when it is a TargetError, else a temporary one with status -1 and its message. */
  static from(e: unknown): TargetError {
    return e instanceof TargetError ? e : new TargetError(-1, (e as Error)?.message ?? String(e), true);
  }

  /** Status, message and (when set) the retry hint. */
  toFailure(): TargetFailure {
    return this.retryAfterMs === undefined
      ? { status: this.status, message: this.message }
      : { status: this.status, message: this.message, retryAfterMs: this.retryAfterMs };
  }
}

/** The destination bucket is missing and may not be created (retried: someone may create it). */
export function missingBucketError(bucket: string): TargetError {
  return new TargetError(404, `Destination bucket '${bucket}' does not exist (create_target is false)`, true);
}

/**
 * Label changes that bring a destination record to the labels of `r`: every current label, and
 * `null` for each removed one that is not set again.
 */
export function labelChanges(r: ShipRecord): Record<string, string | null> {
  const changes: Record<string, string | null> = { ...r.labels };
  for (const k of r.removedLabels) if (r.labels[k] === undefined) changes[k] = null;
  return changes;
}

/** A replication destination. Requests may run concurrently. */
export interface Target {
  /** `local` or the destination URL without credentials (for status). */
  readonly description: string;
  /**
   * Instance id of the destination when known (local: this instance; remote: from the
   * `x-ferry-instance` header; '' for a ReductStore destination or before the first contact).
   */
  readonly instanceId: string;
  /** True once `prepare()` succeeded and no request has failed since. */
  readonly available: boolean;
  /**
   * Small writes of several entries started together share requests (write-coalescer.ts), so the
   * engine may start many at once without each waiting for a connection of its own.
   */
  readonly joinsWrites?: boolean;
  /** Makes sure the destination bucket exists (creating it when allowed). Throws TargetError. */
  prepare(): Promise<void>;
  /** Writes records of one destination entry, all with the same origin, ascending ts. */
  write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]>;
  /** Applies label updates of one destination entry. */
  update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]>;
  /**
   * Abandons every request in flight (they settle with an error) and starts afresh: the engine
   * calls it when a call did not settle in time, so that nothing it gave up on lands later.
   */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** Classifies a per-record status from a destination (409 handled by the caller). */
export function classifyStatus(status: number, text: string, retryAfterMs?: number): ItemOutcome {
  const message = boundMessage(text);
  if (status < 0 || status === 429 || status === 425 || status >= 500) {
    return retryAfterMs === undefined
      ? { kind: 'temporary', status, message }
      : { kind: 'temporary', status, message, retryAfterMs };
  }
  return { kind: 'permanent', status, message };
}

const SHIPPED: PayloadAccess<ShipRecord> = {
  size: (r) => r.size,
  read: (r) => r.record.buffer(),
  open: (r) => r.record.stream(),
  stored: (r) => r.record,
};

/**
 * The body of a v1 batch write whose payloads together are at most `COALESCE_BYTES`, as one buffer
 * (null when larger): a buffer body goes out with the request's headers in one socket write, where
 * a stream costs extra event-loop turns before its first byte is sent (sync replication waits on it).
 */
export async function smallBatchBody(records: readonly ShipRecord[]): Promise<Buffer | null> {
  let total = 0;
  for (const r of records) if ((total += r.size) > COALESCE_BYTES) return null;
  const parts = await readPayloads(records, SHIPPED);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

/** The body of a v1 batch write: the records' payloads in order (small ones gathered). */
export function batchBody(records: readonly ShipRecord[]): AsyncGenerator<Buffer> {
  return payloadChunks(records, SHIPPED, { smallBytes: SMALL_PAYLOAD, chunkBytes: COALESCE_BYTES });
}
