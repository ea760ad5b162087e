/**
 * What the HTTP layer needs from the rest of Ferry. Declared structurally here so that routes
 * depend on behaviour, not on module layout; `src/server.ts` passes the real implementations.
 */
import type { FerryConfig } from '../config/types.js';
import type { Storage, StoredRecord, Labels } from '../storage/types.js';
import type { TokenStore } from '../auth/types.js';
import type { ReplicationDetail, ReplicationFailures, ReplicationList } from '../protocol/replications.js';
import type { ActiveTasks, ReplicationStatus } from '../protocol/replication-status.js';
import type { FilterJson, FilterList } from '../protocol/filters.js';
import type { GroupInfo, GroupList } from '../protocol/groups.js';
import type { RemoteJson, RemoteList } from '../protocol/remotes.js';
import type { LinkKeys } from './links/link-keys.js';
import type { ReplicationEvents } from '../replication/status-feed.js';
import type { VerifyRequest } from '../replication/verify-service.js';
import type { VerifyResult } from '../protocol/verify.js';

/** One record of a query result. `labels` are the labels to emit (after `#select_labels`). */
export interface QueryRecord {
  record: StoredRecord;
  labels: Labels;
}

/** Result of reading a batch from a query. */
export interface QueryBatch {
  records: QueryRecord[];
  /** The query is finished: no record will follow this batch (`x-reduct-last`). */
  last: boolean;
  /** The query was created with `only_metadata`: headers carry real sizes, no payload is sent. */
  onlyMetadata: boolean;
}

/** Query manager (src/query/query-manager.ts). Throws FerryError with the wire messages. */
export interface QueryService {
  /**
   * Creates a QUERY (entry set = entry-level query of §9, else bucket-level §11); returns its id.
   * `owner` is the token name that open-query bounds count per token (429 beyond them).
   */
  create(bucket: string, body: unknown, entry?: string, owner?: string): Promise<bigint>;
  /** Creates a query from the GET `…/q` parameters of §9. */
  createFromParams(bucket: string, entry: string, params: URLSearchParams, owner?: string): Promise<bigint>;
  /** Runs a REMOVE query; returns the number of removed records. */
  remove(bucket: string, body: unknown, entry?: string): Promise<bigint>;
  /** Runs the remove of `DELETE …/q?start=&stop=`. */
  removeFromParams(bucket: string, entry: string, params: URLSearchParams): Promise<bigint>;
  /** Validates a QUERY body without opening a query (422 as `create`). */
  checkQuery(body: unknown): void;
  /** The record (entry, ts) when it is part of the result of a bucket-level QUERY body, else undefined. */
  findRecord(bucket: string, body: unknown, entry: string, ts: bigint): Promise<QueryRecord | undefined>;
  /** Next batch; 204 FerryError when exhausted, 404 when unknown/expired. */
  next(
    bucket: string,
    id: bigint,
    opts: { entry?: string; head: boolean; maxRecords?: number },
  ): Promise<QueryBatch>;
}

/** Replication manager (src/replication/manager.ts), wire-shaped JSON in and out. */
export interface ReplicationService {
  list(): ReplicationList;
  get(name: string): ReplicationDetail;
  create(name: string, body: unknown): Promise<void>;
  /** Resolves with what happened to the run's initial copy (sent as `x-ferry-copy`). */
  update(name: string, body: unknown): Promise<{ copy: 'restarted' | 'kept' | 'none' }>;
  setMode(name: string, body: unknown): Promise<void>;
  remove(name: string): Promise<void>;
  /** Failure log of one replication (replication.md §9), when supported. */
  failures?(name: string): Promise<ReplicationFailures>;
}

/** Ferry's rich replication view (src/replication/monitor.ts). */
export interface MonitorService {
  /** `GET /replications/{name}/status` (404 for an unknown name). */
  status(name: string): ReplicationStatus;
  /** `GET /active_tasks`. */
  activeTasks(): ActiveTasks;
  /** Every replication name, sorted. */
  names(): string[];
}

/** Verify and repair of replications (src/replication/verify-service.ts). */
export interface VerifyApi {
  /** Runs a verification (and a repair) to its end; 404 unknown replication, 409 one runs already. */
  run(name: string, req: VerifyRequest): Promise<VerifyResult>;
  /** The last result; 404 before the first. */
  lastResult(name: string): Promise<VerifyResult>;
}

/** Remotes (src/replication/remotes.ts), wire-shaped JSON in and out. */
export interface RemoteApi {
  list(): RemoteList;
  get(name: string): RemoteJson;
  create(name: string, body: unknown): Promise<void>;
  update(name: string, body: unknown): Promise<void>;
  /** Refused (409) while replications use the remote, unless `force`. */
  remove(name: string, force: boolean): Promise<void>;
  /** Re-pins the remote's identity (replication.md §5). */
  pin(name: string, body: unknown): Promise<RemoteJson>;
}

/** Lifecycle policies (src/lifecycle/manager.ts), wire-shaped JSON in and out. */
export interface LifecycleService {
  list(): unknown;
  get(name: string): unknown;
  create(name: string, body: unknown): Promise<void>;
  update(name: string, body: unknown): Promise<void>;
  setMode(name: string, body: unknown): Promise<void>;
  remove(name: string): Promise<void>;
  /** Runs a policy now and returns what the run did (Ferry extension). */
  runNow(name: string): Promise<unknown>;
}

/** Consistency groups (src/replication/group-service.ts), wire-shaped JSON in and out. */
export interface GroupApi {
  list(): GroupList;
  get(name: string): GroupInfo;
  create(name: string, body: unknown): Promise<void>;
  update(name: string, body: unknown): Promise<void>;
  remove(name: string): Promise<void>;
}

/** Stored filters (src/replication/filter-service.ts). */
export interface FilterApi {
  list(): FilterList;
  get(name: string): FilterJson;
  create(name: string, body: unknown): Promise<void>;
  update(name: string, body: unknown): Promise<void>;
  remove(name: string): Promise<void>;
}

/** System events (`$system` bucket): audit trail and warn-or-worse logs. */
export interface SystemEventsService {
  audit(token: string, method: string, path: string, status: number): void;
  log(level: 'WARN' | 'ERROR', msg: string): void;
}

/** Everything the routes use. */
export interface HttpServices {
  config: FerryConfig;
  storage: Storage;
  tokens: TokenStore;
  queries: QueryService;
  /** Set once replication has started (after the server listens); routes answer 503 until then. */
  replications?: ReplicationService;
  /** Set together with `replications`. */
  monitor?: MonitorService;
  /** Change notifications of replications, for the events stream (set with `replications`). */
  events?: ReplicationEvents;
  /** Set together with `replications`. */
  filters?: FilterApi;
  /** Set together with `replications`. */
  verify?: VerifyApi;
  /** Remotes (set together with `replications`). */
  remotes?: RemoteApi;
  system: SystemEventsService;
  /** Lifecycle policies (api.md §16). */
  lifecycles: LifecycleService;
  /** Consistency groups (replication.md §8). */
  groups: GroupApi;
  /** Keys of query links (api.md §15). */
  linkKeys: LinkKeys;
  /** Resolves the client IP of a request (api.md §3.4). */
  clientIp(
    peer: string | undefined,
    headers: Record<string, string | string[] | undefined>,
  ): string | undefined;
  /** Process start time (ms since epoch), for `uptime`. */
  startedAt: number;
  /** False while the server is starting (`/ready` → 503). */
  isReady(): boolean;
}
