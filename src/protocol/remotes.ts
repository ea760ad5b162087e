/**
 * Wire shapes of the remotes API (replication.md §5): `/api/v1/remotes` and `/api/v1/remotes/{name}`.
 * A remote is a named, monitored connection to another instance that replications name instead of
 * repeating `dst_host` and `dst_token`. Secrets (`token`, proxy credentials) are write-only.
 */

/** Health of a remote as its prober sees it. */
export type RemoteState = 'up' | 'degraded' | 'down' | 'unknown';

/** Body of `POST`/`PUT /api/v1/remotes/{name}`. */
export interface RemoteRequest {
  /** `http://` or `https://` base URL of the other instance (no credentials, query or fragment). */
  url: string;
  /** Bearer token for the other instance; write-only. On PUT, omitted or `null` keeps the old one. */
  token?: string | null;
  /** HTTP CONNECT proxy, `http://[user:password@]host:port`; its credentials are write-only too. */
  proxy?: string | null;
  connect_timeout_ms?: number;
  request_timeout_ms?: number;
  verify_tls?: boolean;
  /** PEM certificates trusted for `https` (in addition to none: they replace the system's). */
  ca?: string | null;
}

/** The identity pinned at first contact (replication.md §5). */
export interface RemoteIdentity {
  /** Instance id pinned at first contact (`null`: not contacted yet, or a ReductStore without one). */
  pinned_instance_id: string | null;
  pinned_at: string | null;
  /** True while the remote answers as another instance than the pinned one: nothing is sent. */
  mismatch: boolean;
  /** The instance id the remote answered with last (differs from the pinned one on a mismatch). */
  seen_instance_id: string | null;
}

/** A remote as every route answers it: no secret in it. */
export interface RemoteJson {
  name: string;
  url: string;
  has_token: boolean;
  /** The proxy without its credentials (`null`: none). */
  proxy: string | null;
  proxy_has_credentials: boolean;
  connect_timeout_ms: number;
  request_timeout_ms: number;
  verify_tls: boolean;
  ca: string | null;
  state: RemoteState;
  /** Round-trip time of the last successful probe (ms). */
  rtt_ms: number | null;
  instance_id: string | null;
  version: string | null;
  last_probe_at: string | null;
  last_ok_at: string | null;
  last_error: { message: string; at: string } | null;
  identity: RemoteIdentity;
  /** Names of the replications that use this remote, sorted. */
  replications: string[];
  /** The remote's one connection pool, shared by its replications and its prober. */
  pool: { connections_opened: number; connected: number; pending: number; running: number };
  created_at: string;
  updated_at: string;
}

/** `GET /api/v1/remotes`, sorted by name. */
export interface RemoteList {
  remotes: RemoteJson[];
}

/** Body of `POST /api/v1/remotes/{name}/pin`: without `instance_id`, the next contact is pinned. */
export interface RemotePinRequest {
  instance_id?: string;
}

/** What a replication's status says about the remote it uses. */
export interface RemoteRef {
  name: string;
  state: RemoteState;
  url: string;
  identity_mismatch: boolean;
  last_error: { message: string; at: string } | null;
}
