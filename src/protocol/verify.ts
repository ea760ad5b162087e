/**
 * JSON shapes of verify and repair (replication.md §10): the range-digest route a Ferry destination
 * answers (`POST /api/v1/ferry/b/{bucket}/digests`, read access to the bucket) and the result of
 * `POST|GET /api/v1/replications/{name}/verify`. Timestamps are u64 µs (`bigint` after bigint-safe
 * parsing); digests are lower-case hex.
 */
import { Errors } from './errors.js';
import type { Labels } from './labels.js';
import {
  MAX_DIGEST_LIST_RECORDS,
  MAX_DIGEST_QUERIES,
  MAX_DIGEST_SPLIT,
  MAX_ENTRY_NAME_BYTES,
} from './limits.js';
import { utf8Length } from './utf8.js';

/** One range of a range-digest request: its digest, or (`list` > 0) its first `list` records. */
export interface DigestRequestItem {
  entry: string;
  start: bigint;
  stop: bigint;
  /** Also return boundaries cutting the range into about this many equally populated parts. */
  split?: number;
  /** List up to this many records instead of a digest. */
  list?: number;
}

/** `POST /api/v1/ferry/b/{bucket}/digests` body. */
export interface DigestRequest {
  queries: DigestRequestItem[];
}

/** A record as a verifier compares it: `[ts, size, content digest, content type, labels]`. */
export type WireRecordSummary = [bigint, number, string, string, Labels];

/** The answer for one range, in the order of the queries. */
export type DigestAnswerItem =
  { count: number; digest: string; bounds: bigint[] } | { records: WireRecordSummary[]; more: boolean };

/** `POST /api/v1/ferry/b/{bucket}/digests` answer. */
export interface DigestAnswer {
  results: DigestAnswerItem[];
}

const U64_MAX = (1n << 64n) - 1n;

function u64(v: unknown, what: string): bigint {
  if (typeof v === 'bigint' && v >= 0n && v <= U64_MAX) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v) && BigInt(v) <= U64_MAX) return BigInt(v);
  throw Errors.digestRequestInvalid(`'${what}' must be an unsigned 64-bit integer`);
}

function count(v: unknown, what: string, max: number): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max) return v;
  throw Errors.digestRequestInvalid(`'${what}' must be an integer from 0 to ${max}`);
}

/** Validates a range-digest request body (every bound of limits.ts; 422 naming the field). */
export function parseDigestRequest(body: unknown): DigestRequest {
  const queries = (body as { queries?: unknown } | null)?.queries;
  if (typeof body !== 'object' || body === null || !Array.isArray(queries)) {
    throw Errors.digestRequestInvalid("the body must be an object with an array 'queries'");
  }
  if (queries.length > MAX_DIGEST_QUERIES) {
    throw Errors.digestRequestInvalid(`at most ${MAX_DIGEST_QUERIES} queries per request`);
  }
  let listed = 0;
  const out: DigestRequestItem[] = queries.map((q: unknown, i) => {
    if (typeof q !== 'object' || q === null)
      throw Errors.digestRequestInvalid(`queries[${i}] must be an object`);
    const r = q as Record<string, unknown>;
    if (typeof r.entry !== 'string' || r.entry === '' || utf8Length(r.entry) > MAX_ENTRY_NAME_BYTES) {
      throw Errors.digestRequestInvalid(`queries[${i}].entry must be an entry name`);
    }
    const start = u64(r.start, `queries[${i}].start`);
    const stop = u64(r.stop, `queries[${i}].stop`);
    const split = count(r.split, `queries[${i}].split`, MAX_DIGEST_SPLIT);
    const list = count(r.list, `queries[${i}].list`, MAX_DIGEST_LIST_RECORDS);
    listed += list;
    const item: DigestRequestItem = { entry: r.entry, start, stop };
    if (split > 1) item.split = split;
    if (list > 0) item.list = list;
    return item;
  });
  if (listed > MAX_DIGEST_LIST_RECORDS) {
    throw Errors.digestRequestInvalid(`at most ${MAX_DIGEST_LIST_RECORDS} records listed per request`);
  }
  return { queries: out };
}

/** Which parts of a record differ between the source and the destination. */
export type DifferentPart = 'payload' | 'labels' | 'content_type';

/** Records of one kind of difference in one entry: how many, and the first timestamps. */
export interface DifferenceList {
  count: number;
  /** Ascending, at most `VERIFY_FIRST_LISTED` of them. */
  first: bigint[];
}

/** Different records: how many, and the first with what differs. */
export interface DifferentList {
  count: number;
  first: Array<{ ts: bigint; parts: DifferentPart[] }>;
}

/** Timestamps listed per kind of difference and entry in a verify result. */
export const VERIFY_FIRST_LISTED = 100;

/** The comparison of one destination entry. */
export interface EntryVerification {
  /** Destination entry name (`dst_prefix` applied). */
  entry: string;
  source_entry: string;
  /** Compared range `[start, stop)`. */
  start: bigint;
  stop: bigint;
  source_records: number;
  missing: DifferenceList;
  extra: DifferenceList;
  different: DifferentList;
  /** Records changed at the source after the delivered position (in flight): not judged. */
  in_flight: number;
}

/** What a repair did. */
export interface RepairSummary {
  /** Records shipped (missing at the destination, or rewritten because payload or content type differed). */
  written: number;
  /** Records whose labels were brought to the source's. */
  relabelled: number;
  /** Extra records removed (`remove_extra: true` only). */
  removed: number;
  failed: number;
  /** First failures (bounded). */
  errors: Array<{ entry: string; ts: bigint; status: number; message: string }>;
}

/** `GET|POST /api/v1/replications/{name}/verify` answer. */
export interface VerifyResult {
  replication: string;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  /** `clean` = no difference; `differences` = some; `failed` = the comparison could not finish. */
  outcome: 'clean' | 'differences' | 'failed';
  error: string | null;
  /** `digest` = Ferry range digests; `metadata` = a plain ReductStore's query API. */
  method: 'digest' | 'metadata';
  /** False against a plain ReductStore: payloads were not compared, only their sizes. */
  payloads_compared: boolean;
  /** The replication's persisted cursor when the verify started: later changes are in flight. */
  delivered_lsn: bigint;
  entries: EntryVerification[];
  totals: { missing: number; extra: number; different: number; in_flight: number; source_records: number };
  exchange: { round_trips: number; bytes_sent: number; bytes_received: number };
  /** Set for `?repair=true`: what was repaired; `entries` is then the verification after it. */
  repair: RepairSummary | null;
  /** The first verification's totals when a repair ran. */
  before_repair: VerifyResult['totals'] | null;
  /** Whether `needs_verify` was cleared by this run (a repair that left the copy clean). */
  needs_verify_cleared: boolean;
}

/** A verification in `GET /api/v1/active_tasks` and in the replication's status. */
export interface VerificationTask {
  type: 'verification';
  name: string;
  started_on: string;
  updated_on: string;
  phase: 'verifying' | 'repairing' | 'reverifying';
  repair: boolean;
  /** Source records whose ranges were compared or judged so far, of the total in scope. */
  progress: { records_done: number; records_total: number; percent: number };
  round_trips: number;
  /** `base`: the check of the replication's `base` claim (before it ships anything). */
  purpose?: 'base';
}
