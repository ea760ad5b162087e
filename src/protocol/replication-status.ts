/**
 * JSON shapes of Ferry's replication monitoring routes (replication.md §9), shared by the server
 * and the SDK: `GET /api/v1/replications/{name}/status`, `GET /api/v1/active_tasks` and the
 * events stream `GET /api/v1/replications/{name}/events`. Snake_case like the rest of the API;
 * times are ISO 8601 strings; LSNs are u64 (`bigint` after bigint-safe parsing).
 *
 * The compatible `GET /api/v1/replications/{name}` keeps ReductStore's shape; these routes are
 * where Ferry's richer view lives.
 */

import type { ReplicationMode, ReplicationSettingsJson } from './replications.js';
import type { VerificationTask } from './verify.js';
import type { RemoteRef } from './remotes.js';

/** Visible state of a replication. */
export type ReplicationState =
  'initializing' | 'replicating' | 'idle' | 'retrying' | 'paused' | 'suspended' | 'completed';

/** Every state, in the order of replication.md §9. */
export const REPLICATION_STATES: readonly ReplicationState[] = [
  'initializing',
  'replicating',
  'idle',
  'retrying',
  'paused',
  'suspended',
  'completed',
];

/** States after which a run does not change any more (the events stream ends there). */
export const FINAL_STATES: ReadonlySet<string> = new Set<ReplicationState>(['completed']);

/** Cumulative counters of a replication (persisted with its checkpoint). */
export interface ReplicationCounters {
  records_read: number;
  bytes_read: number;
  records_written: number;
  bytes_written: number;
  records_already_present: number;
  records_filtered: number;
  records_loop_skipped: number;
  records_failed: number;
  records_missing_at_source: number;
  records_dropped_overflow: number;
  label_updates_written: number;
}

/** A delivery rate. */
export interface Rate {
  records_per_sec: number;
  bytes_per_sec: number;
}

/** Delivery rates: the engine's recent rate plus averages over fixed windows. */
export interface Throughput extends Rate {
  /** Average over the last 10 seconds (records delivered = written + already present). */
  last_10s: Rate;
  /** Average over the last minute. */
  last_1m: Rate;
}

/** A failure as the engine last saw it. */
export interface ReplicationError {
  status: number;
  message: string;
  at: string;
}

/** The stored filter a replication runs with (null when it names none). */
export interface FilterRef {
  name: string;
  /** Version of the filter the running task uses; replications follow filter changes. */
  version: number;
  updated_at: string;
}

/** Where a replication reads. */
export interface ReplicationSource {
  /** The source bucket ('' for a consistency group). */
  bucket: string;
  /** The consistency group replicated instead of one bucket (`src_group`). */
  group?: string;
  /** Entry patterns ([] = every entry). */
  entries: string[];
}

/** Where a replication writes; never carries credentials. */
export interface ReplicationDestination {
  /** Destination URL without user info, query or token ('' = this instance). */
  host: string;
  bucket: string;
  prefix: string;
  /** Instance id of the destination, once it answered (null before). */
  instance_id: string | null;
  /** Whether the last contact with the destination succeeded. */
  available: boolean;
}

/** What the last PUT did to the running state. */
export interface LastUpdate {
  at: string;
  cursor: 'kept' | 'reset';
  filter_state: 'kept' | 'reset';
  /** The initial copy or one-shot run: started again from its beginning, kept, or none. */
  copy?: 'restarted' | 'kept' | 'none';
}

/** Progress of an initial copy or one-shot run (replication.md §6). */
export interface CopyProgress {
  /** Records and payload bytes delivered (written, already present, filtered out or skipped). */
  records_done: number;
  bytes_done: number;
  /** What the copy covers; null while it is being counted. */
  records_total: number | null;
  bytes_total: number | null;
  /** 0–100 (by records), null while counting. */
  percent: number | null;
  /** Average rate of this run of the copy (since the task started). */
  records_per_sec: number;
  bytes_per_sec: number;
  /** At the current rate; null when unknown (no rate yet, or still counting). */
  eta_seconds: number | null;
  entries_total: number;
  entries_done: number;
}

/** Plan and per-entry cursors of a copy. */
export interface CopyStatus {
  since: bigint;
  until: bigint | null;
  started_at: string;
  completed_at: string | null;
}

/** Where a copy stands in one source entry (opaque position; the engine decides its content). */
export interface EntryCursor {
  entry: string;
  /** Timestamp (µs) up to which the entry was copied (exclusive), null before the first batch. */
  ts: bigint | null;
  done: boolean;
  /** Exclusive upper bound of the entry's copy, fixed when the copy started. */
  stop?: bigint;
}

/**
 * `GET /api/v1/replications/{name}/status`: every Ferry-only field of a replication (the compatible
 * `GET /api/v1/replications/{name}` carries none of them).
 */
export interface ReplicationStatus {
  name: string;
  mode: ReplicationMode;
  /** The compatible `is_active` (destination reachable and mode not disabled). */
  is_active: boolean;
  is_provisioned: boolean;
  /** One-shot runs are `false`. */
  continuous: boolean;
  /**
   * How writes are acknowledged now (replication.md §7): a sync replication may run `async`
   * (degraded) or be `blocked`; async ones are always `async`.
   */
  effective_type: EffectiveType;
  state: ReplicationState;
  state_reason: string | null;
  /** When the current state began. */
  since: string;
  /** When this run of the task started (creation, restart of the server, or the last PUT). */
  started_at: string;
  /** When the status last changed (state, counters or pending work). */
  updated_at: string;
  source: ReplicationSource;
  destination: ReplicationDestination;
  filter: FilterRef | null;
  /** Every change with an LSN up to this one was shipped, skipped or filtered. */
  cursor_lsn: bigint;
  /** Latest LSN of the source's change log. */
  log_last_lsn: bigint;
  pending_records: number;
  pending_bytes: number;
  /** Age of the oldest record not delivered yet (0 when nothing is pending). */
  lag_ms: number;
  in_flight_batches: number;
  throughput: Throughput;
  counters: ReplicationCounters;
  retries: number;
  consecutive_failures: number;
  last_error: ReplicationError | null;
  next_retry_at: string | null;
  needs_verify: boolean;
  needs_verify_reason: string | null;
  log: { max_bytes: number; on_overflow: string; over_bound: boolean };
  last_update: LastUpdate | null;
  /**
   * Every setting, Ferry's extensions included; `dst_token` is always `null` and `dst_host` is
   * shown like `destination.host` (without user info or query).
   */
  settings: ReplicationSettingsJson;
  /** Progress of the initial copy or one-shot run (absent when the replication has none). */
  progress?: CopyProgress | null;
  /** Per-entry cursors of a copy (absent when the replication has none). */
  entry_cursors?: EntryCursor[];
  /** The copy's plan: bounds and times (absent when the replication has none). */
  copy?: CopyStatus;
  /** Configured type (replication.md §7); `async` unless the replication is sync. */
  replication_type?: 'async' | 'sync';
  /** Why a sync replication is not `sync` now. */
  effective_type_reason?: string | null;
  /** Sync replications only. */
  sync?: SyncStatus['sync'];
  /** The remote the replication names (`remote` setting), with its health. */
  remote?: RemoteRef;
  /** Present when the replication has a `rate_limit`. */
  rate_limit?: RateLimitStatus;
  /** Present when the replication has a `base`: whether and how its claim was checked. */
  base?: BaseStatus;
  /** A consistency-group replication's delivered position and members (see {@link GroupStatus}). */
  group?: GroupStatus;
}

/**
 * Where a replication's `base` claim stands. `pending`, `verifying` and `repairing` hold the
 * replication in `initializing` (nothing ships); `clean` (verified equal), `repaired` (differences
 * shipped, verified again), `trusted` (`verify: "trust"`: never checked) and `mismatch` (the claim
 * was false; the replication is suspended, or a repair could not fix it) are final.
 */
export interface BaseStatus {
  up_to: bigint;
  verify: 'digest' | 'trust';
  on_mismatch: 'repair' | 'stop' | null;
  state: 'pending' | 'verifying' | 'repairing' | 'clean' | 'repaired' | 'trusted' | 'mismatch';
  /** True once range digests (or, against a plain ReductStore, metadata) confirmed the claim. */
  verified: boolean;
  /** False against a plain ReductStore (metadata compared, not payloads); null until compared. */
  payloads_compared: boolean | null;
  /** Verifications started for this base (a restart or a failed attempt starts another). */
  attempts: number;
  started_at: string | null;
  finished_at: string | null;
  /** Differences the (last) verification found; after a repair, what remained. */
  totals: { missing: number; extra: number; different: number; source_records: number } | null;
  /** The first verification's totals when a repair ran. */
  before_repair: { missing: number; extra: number; different: number } | null;
  repair: { written: number; relabelled: number; failed: number } | null;
  /** Why the last attempt failed (it is retried), or why the claim was refused. */
  last_error: string | null;
}

/** What one member of a group replication shipped. */
export interface GroupMemberStatus {
  bucket: string;
  destination_bucket: string;
  records_shipped: number;
  bytes_shipped: number;
  label_updates_shipped: number;
  /** Source LSN of the member's latest change the destination applied (0 = none yet). */
  delivered_lsn: bigint;
}

/** `group` in a consistency-group replication's status, events and active task. */
export interface GroupStatus {
  name: string;
  /** Every change of the members up to this LSN is applied at the destination. */
  delivered_lsn: bigint;
  /** The shipment stream's key at the destination. */
  stream: string;
  /** A member added while the group was replicated, being copied (the log waits for it). */
  copying?: string;
  members: GroupMemberStatus[];
}

/** `rate_limit` in a replication's status. */
export interface RateLimitStatus {
  bytes_per_sec: number;
  /** True while shipments wait for the limit (or did within the last second). */
  throttling: boolean;
  /** Since when shipments wait without a break (ISO; null when not waiting now). */
  throttled_since: string | null;
  /** Payload bytes of shipments waiting for the limit now. */
  waiting_bytes: number;
  /** How long a shipment queued now would wait (ms). */
  delay_ms: number;
  /** Time shipments have spent waiting for the limit since the replication (re)started (ms). */
  throttled_ms: number;
  /** Time the pending bytes need at the limit: how far behind the limit leaves the replication (ms). */
  catch_up_ms: number;
}

/** One entry of `GET /api/v1/active_tasks` (CouchDB's `_active_tasks` is the model). */
export interface ActiveTask {
  /**
   * `replication` today (an initial copy is part of its replication's run, shown by `progress`);
   * verifications will add their own type.
   */
  type: 'replication';
  name: string;
  state: ReplicationState;
  state_reason: string | null;
  source: ReplicationSource;
  destination: Omit<ReplicationDestination, 'instance_id' | 'available'>;
  continuous: boolean;
  started_on: string;
  updated_on: string;
  pending_records: number;
  pending_bytes: number;
  lag_ms: number;
  throughput: Throughput;
  counters: ReplicationCounters;
  retries: number;
  consecutive_failures: number;
  /** Progress of a copy while one runs. */
  progress?: CopyProgress | null;
  replication_type?: 'async' | 'sync';
  effective_type?: EffectiveType;
  /** The replication's `base` seeding (see {@link BaseStatus}). */
  base?: BaseStatus;
  /** A consistency-group replication's delivered position and members (see {@link GroupStatus}). */
  group?: GroupStatus;
}

/** `GET /api/v1/active_tasks`: what runs now, sorted by type then name. */
export interface ActiveTasks {
  /** Replications, then verifications (verify.ts). */
  tasks: Array<ActiveTask | VerificationTask>;
}

/** `event: state` of the events stream: one transition. */
export interface StateEvent {
  from: ReplicationState;
  to: ReplicationState;
  reason: string | null;
  at: string;
}

/** What a sync replication does now (replication.md §7). */
export type EffectiveType = 'sync' | 'async' | 'blocked';

/** One change of a sync replication's effective type. */
export interface SyncTransition {
  from: EffectiveType;
  to: EffectiveType;
  reason: string | null;
  at: string;
}

/** The sync fields of a sync replication's status. */
export interface SyncStatus {
  replication_type: 'sync';
  effective_type: EffectiveType;
  /** Why it is not `sync` (null when it is). */
  effective_type_reason: string | null;
  sync: {
    timeout_ms: number;
    on_timeout: 'fail' | 'degrade';
    recover_after_ms: number;
    /** When the effective type last changed (or the gate was created). */
    effective_since: string;
    /** Writes waiting for their acknowledgement now. */
    waiting_writes: number;
    /** Writes whose acknowledgement did not come within `timeout_ms` (answered 503 or degraded). */
    timed_out_writes: number;
    /** Every change up to this LSN is at the destination. */
    delivered_lsn: bigint;
    transitions: { to_sync: number; to_async: number; to_blocked: number };
    last_transition: SyncTransition | null;
  };
}
