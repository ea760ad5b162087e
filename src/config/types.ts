/**
 * Resolved server configuration (api.md §18). Produced by `loadConfig(env)` in `load-config.ts`.
 */
import type { BucketSettings } from '../storage/types.js';

export interface ProvisionedToken {
  name: string;
  value: string;
  fullAccess: boolean;
  read: string[];
  write: string[];
  /** RFC 3339 or undefined. */
  expiresAt?: string;
}

export interface ProvisionedBucket {
  name: string;
  settings: Partial<BucketSettings>;
}

/** A provisioned replication as raw settings JSON (validated by the replication module). */
export interface ProvisionedReplication {
  name: string;
  /** Settings object in the wire shape of api.md §17.2 (mode may be absent = keep persisted). */
  settings: Record<string, unknown>;
}

/** A provisioned lifecycle policy as raw settings JSON (validated by the lifecycle module). */
export interface ProvisionedLifecycle {
  name: string;
  /** LifecycleSettings in the wire shape of api.md §16 (mode absent = keep the persisted one). */
  settings: Record<string, unknown>;
}

/** A provisioned consistency group (`FERRY_GROUP_<ID>_*`, validated by the group service). */
export interface ProvisionedGroup {
  name: string;
  buckets: string[];
}

export interface FerryConfig {
  host: string;
  port: number;
  /** Normalised to begin and end with '/'. */
  apiBasePath: string;
  dataPath: string;
  certPath?: string;
  certKeyPath?: string;
  publicUrl?: string;
  /** `RS_PUBLIC_URL` exactly as set (undefined when unset: query links then use the request's host). */
  publicUrlEnv?: string;
  /** `RS_CORS_ALLOW_ORIGIN` split on commas and trimmed; ['*'] = any; [] = none. */
  corsAllowOrigin: string[];
  instanceName: string;
  instanceRole: 'STANDALONE' | 'PRIMARY' | 'SECONDARY' | 'REPLICA';
  auth:
    | { mode: 'disabled' }
    | { mode: 'provisioned'; token: string } // RS_API_TOKEN
    | { mode: 'init'; token: string } // RS_INIT_API_TOKEN
    | { mode: 'none' }; // nothing set: no init token (only provisioned tokens, if any)
  /** True when the user explicitly allowed a non-loopback listener without auth (FERRY_ALLOW_OPEN=true). */
  allowOpen: boolean;
  /** `GET /metrics` without a token (FERRY_METRICS_OPEN=true); otherwise any valid token, like `/info`. */
  metricsOpen: boolean;
  /** `FERRY_DIGEST_ROUTE` (default true): serve range digests to verifiers (replication.md §10). */
  digestRoute: boolean;
  defaults: BucketSettings;
  tokens: ProvisionedToken[];
  buckets: ProvisionedBucket[];
  replications: ProvisionedReplication[];
  lifecycles: ProvisionedLifecycle[];
  /** `FERRY_GROUP_<ID>_*` (replication.md §8). */
  groups: ProvisionedGroup[];
  io: {
    operationTimeoutMs: number;
    batchMaxMetadataSize: number;
    batchMaxSize: number;
    batchMaxRecords: number;
    batchTimeoutMs: number;
    batchRecordsTimeoutMs: number;
  };
  systemEvents: { enabled: boolean; quotaSize: bigint };
  replication: {
    timeoutMs: number;
    logSize: number;
    verifySsl: boolean;
    caPath?: string;
  };
  storage: {
    durability: 'fsync' | 'none';
  };
  /** Max request body for JSON routes (bytes). */
  maxJsonBody: number;
  /** Bounds on open queries (FERRY_MAX_QUERIES, FERRY_MAX_QUERIES_PER_TOKEN, FERRY_MAX_QUERY_TTL). */
  queries: { maxOpen: number; maxOpenPerToken: number; maxTtlSeconds: number };
  /** Connection bounds of the HTTP server (Ferry's own settings, see the README). */
  http: {
    /** FERRY_HEADERS_TIMEOUT: max time to receive a request's headers. */
    headersTimeoutMs: number;
    /** FERRY_KEEP_ALIVE_TIMEOUT: max idle time of a keep-alive connection between requests. */
    keepAliveTimeoutMs: number;
    /** FERRY_MAX_CONNECTIONS: max open connections. */
    maxConnections: number;
  };
  /** Errors found while reading the environment (logged at start, never fatal for optional items). */
  warnings: string[];
}
