/**
 * Wire shapes of the replication API: the compatible objects of api.md §17 and the Ferry extensions
 * of replication.md §3 that are implemented. The server's parser (replication/settings.ts) produces
 * {@link ReplicationSettings}; routes send the other shapes; the SDK and the CLI read them.
 */
import type { BucketSettingsPatch, U64 } from './buckets.js';

export type ReplicationMode = 'enabled' | 'paused' | 'disabled';
export type Compression = 'none' | 'gzip' | 'zstd';
export type OnWriteFailure = 'stop' | 'skip';
export type OnOverflow = 'block' | 'drop_oldest' | 'suspend';
export type ReplicationType = 'async' | 'sync';
export type OnSyncTimeout = 'fail' | 'degrade';

/**
 * What a sync replication does when its destination does not acknowledge a write in time
 * (replication.md §7); `recover_after_ms` is how long the destination must stay healthy before a
 * degraded replication returns to sync.
 */
export interface SyncSettings {
  timeout_ms: number;
  on_timeout: OnSyncTimeout;
  recover_after_ms: number;
}

/** Batching and pipelining of shipments. */
export interface BatchSettings {
  max_records: number;
  max_bytes: number;
  max_delay_ms: number;
  max_in_flight: number;
}

/** Backoff on temporary failures; `max_outage_ms: 0` = never suspend. */
export interface RetrySettings {
  initial_ms: number;
  max_ms: number;
  max_outage_ms: number;
}

/** Bound on pending work; `max_bytes: 0` = unbounded. */
export interface LogSettings {
  max_bytes: number;
  on_overflow: OnOverflow;
}

/** Bandwidth cap of a replication, for thin links. */
export interface RateLimitSettings {
  bytes_per_sec: number;
}

/** How a `base` claim is checked: range digests (`digest`), or not at all (`trust`). */
export type BaseVerify = 'digest' | 'trust';
/** What a `digest` base does when the claim is false: repair the destination, or stop (suspend). */
export type BaseOnMismatch = 'repair' | 'stop';

/**
 * Seeding from a common base (replication.md §3, §10): source and destination both hold the same
 * records before `up_to`, so the replication copies nothing before it.
 */
export interface BaseSettings {
  up_to: U64;
  verify: BaseVerify;
  /** `digest` only; default `stop`. */
  on_mismatch?: BaseOnMismatch;
}

/** Target bucket settings in wire shape (u64 values may arrive as number or bigint). */
export type TargetSettings = {
  [K in 'quota_type' | 'quota_size' | 'max_block_size' | 'max_block_records']?: unknown;
};

/**
 * Stored settings. The compatible fields are always present; extension fields are present only
 * when the user set them, so that the compatible GET answer stays byte-exact (api.md §17.5).
 */
export interface ReplicationSettings {
  src_bucket: string;
  dst_bucket: string;
  dst_host: string;
  /** Secret: never returned by any route (always `null` in answers), never logged. */
  dst_token: string | null;
  entries: string[];
  dst_prefix: string;
  when: unknown;
  mode: ReplicationMode;
  compression: Compression;
  create_target?: boolean;
  target_settings?: TargetSettings;
  batch?: Partial<BatchSettings>;
  retry?: Partial<RetrySettings>;
  on_write_failure?: OnWriteFailure;
  log?: Partial<LogSettings>;
  /** Name of a stored filter (`/api/v1/filters/{name}`) whose `when` the replication runs with. */
  filter?: string;
  /** Values of the stored filter's parameters. */
  query_params?: Record<string, unknown>;
  /** `false` = one-shot: copy what matches at creation, then state `completed` (default `true`). */
  continuous?: boolean;
  /** Initial copy of existing records from this timestamp (µs) on; `0` = everything. */
  since?: U64;
  /** Exclusive upper bound (µs) of what the initial copy or a one-shot copies. */
  until?: U64;
  /** `sync`: writes in scope are answered once the destination holds them (replication.md §7). */
  replication_type?: ReplicationType;
  /** Only with `replication_type: "sync"`. */
  sync?: Partial<SyncSettings>;
  /** Name of a remote (`/api/v1/remotes/{name}`) used instead of `dst_host`/`dst_token`. */
  remote?: string;
  /** Cap on the replication's bandwidth (payload bytes per second). */
  rate_limit?: RateLimitSettings;
  /** Seed from a common base instead of copying what both sides already hold. */
  base?: BaseSettings;
  /**
   * A consistency group (`/api/v1/groups/{name}`) replicated instead of one bucket: `src_bucket`
   * and `dst_bucket` are '' and every member goes to a destination bucket of its own name, with
   * `dst_prefix` prepended (replication.md §8).
   */
  src_group?: string;
}

/**
 * Body of `POST`/`PUT /api/v1/replications/{name}` as a client writes it: the three required
 * fields, everything else optional (defaults of api.md §17.2).
 */
export type ReplicationSettingsRequest = Pick<ReplicationSettings, 'src_bucket' | 'dst_bucket' | 'dst_host'> &
  Partial<Omit<ReplicationSettings, 'src_bucket' | 'dst_bucket' | 'dst_host' | 'target_settings'>> & {
    target_settings?: BucketSettingsPatch<U64>;
  };

/** Settings as every route answers them: `dst_token` masked. */
export type ReplicationSettingsJson = Omit<ReplicationSettings, 'dst_token'> & { dst_token: null };

/** Body of `PATCH /api/v1/replications/{name}/mode`. */
export interface ModeRequest {
  mode: ReplicationMode;
}

/** api.md §17.3 ReplicationInfo. */
export interface ReplicationInfo<N extends U64 = number> {
  name: string;
  mode: ReplicationMode;
  /** Destination reachable and mode enabled (compatible meaning, api.md §20.3). */
  is_active: boolean;
  is_provisioned: boolean;
  pending_records: N;
}

/** Wire shape of `diagnostics.hourly` (api.md §17.4); `errors` keys are stringified statuses. */
export interface HourlyDiagnostics {
  ok: number;
  errored: number;
  errors: Record<string, { count: number; last_message: string }>;
}

/** The keys of ReductStore's settings object (api.md §17.5), in its order; the compatible GET has no other. */
export const COMPATIBLE_SETTINGS_KEYS = [
  'src_bucket',
  'dst_bucket',
  'dst_host',
  'dst_prefix',
  'dst_token',
  'entries',
  'when',
  'mode',
  'compression',
] as const;

/** Settings as the compatible routes answer them: ReductStore's keys only, `dst_token` masked. */
export type CompatibleSettingsJson = Pick<ReplicationSettingsJson, (typeof COMPATIBLE_SETTINGS_KEYS)[number]>;

/** One element of `GET /api/v1/replications`: exactly ReductStore's ReplicationInfo. */
export type ReplicationListItem<N extends U64 = number> = ReplicationInfo<N>;

/** `GET /api/v1/replications`, sorted by name. */
export interface ReplicationList<N extends U64 = number> {
  replications: ReplicationListItem<N>[];
}

/**
 * `GET /api/v1/replications/{name}`: exactly ReductStore's object, no extra key anywhere (clients
 * compare it key by key). Ferry's settings and status are in `GET /api/v1/replications/{name}/status`.
 */
export interface ReplicationDetail<N extends U64 = number> {
  info: ReplicationInfo<N>;
  settings: CompatibleSettingsJson;
  diagnostics: { hourly: HourlyDiagnostics };
}

/** One record a destination refused permanently and that was skipped (replication.md §9). */
export interface ReplicationFailure<N extends U64 = bigint> {
  /** ISO time of the failure. */
  at: string;
  bucket: string;
  entry: string;
  ts: N;
  kind: 'write' | 'update';
  lsn: N;
  status: number;
  message: string;
}

/** `GET /api/v1/replications/{name}/failures`: the newest entries (at most 1000) and the total. */
export interface ReplicationFailures<N extends U64 = bigint> {
  total: number;
  failures: ReplicationFailure<N>[];
}
