/**
 * Calls to a running Ferry's API for tests: `api` (JSON, throws with the x-reduct-error on failure),
 * `call` (never throws on an HTTP status; bigint-safe JSON), and replication helpers built on them.
 */
import assert from 'node:assert/strict';
import { request, type Dispatcher } from 'undici';
import { parseJson, stringifyJson } from '../../src/protocol/json.js';
import type { FerryProcess } from './ferry-process.js';
import { waitFor } from './wait.js';

/** What the helpers need of a server: a spawned FerryProcess, or `{ url, token }` of an in-process one. */
export type ApiNode = Pick<FerryProcess, 'url' | 'token'>;

/** Answer of {@link call}. */
export interface CallResult {
  status: number;
  /** The `x-reduct-error` header, or null. */
  error: string | null;
  /** The raw body. */
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** The body parsed with `parseJson` (bigint-safe) when the answer is JSON, else undefined. */
  json: unknown;
}

/** Options of {@link call}. */
export interface CallOptions {
  /** Extra request headers (they override the defaults). */
  headers?: Record<string, string>;
  /** HTTP client to use, e.g. an undici Agent that trusts a test CA. */
  dispatcher?: Dispatcher;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
}

/**
 * One request to `/api/v1{path}` with the node's token that resolves with any HTTP status. `body`:
 * a string or Buffer is sent as is, anything else as bigint-safe JSON (`stringifyJson`).
 */
export async function call(
  node: ApiNode,
  method: string,
  path: string,
  body?: unknown,
  opts: CallOptions = {},
): Promise<CallResult> {
  const raw = body === undefined || typeof body === 'string' || Buffer.isBuffer(body);
  const headers: Record<string, string> = {
    ...(node.token !== '' ? { authorization: `Bearer ${node.token}` } : {}),
    ...(raw ? {} : { 'content-type': 'application/json' }),
    ...opts.headers,
  };
  const res = await request(`${node.url}/api/v1${path.startsWith('/') ? path : `/${path}`}`, {
    method: method as Dispatcher.HttpMethod,
    headers,
    body: raw ? (body as string | Buffer | undefined) : stringifyJson(body),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  const buf = Buffer.from(await res.body.arrayBuffer());
  const text = buf.toString('utf8');
  const error = res.headers['x-reduct-error'];
  const isJson = String(res.headers['content-type'] ?? '').startsWith('application/json');
  return {
    status: res.statusCode,
    error: error === undefined ? null : String(error),
    body: buf,
    text,
    json: isJson ? parseJson(text) : undefined,
  };
}

/**
 * JSON call: the parsed answer (bigint-safe), or undefined for an empty one. Throws with the status
 * and x-reduct-error unless the answer is a 2xx.
 */
export async function api(node: ApiNode, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await call(node, method, path, body, { timeoutMs: 10_000 });
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${r.error ?? ''}`);
  return r.json;
}

/** `GET /replications/{name}/status` (replication.md §9); the fields the tests read. */
export interface ReplicationStatus {
  state: string;
  state_reason: string | null;
  pending_records: number;
  pending_bytes: number;
  retries: number;
  last_error: { status: number; message: string; at: string } | null;
  next_retry_at: string | null;
  needs_verify: boolean;
  needs_verify_reason: string | null;
  log_last_lsn: number;
  cursor_lsn: number;
  counters: Record<string, number>;
  log: { max_bytes: number; on_overflow: string; over_bound: boolean };
  destination: { instance_id: string | null };
}

/** The status of replication `name` on `node`; throws unless the answer is a 200. */
export async function replicationStatus(node: ApiNode, name: string): Promise<ReplicationStatus> {
  return (await api(node, 'GET', `/replications/${encodeURIComponent(name)}/status`)) as ReplicationStatus;
}

/**
 * Waits until replication `name` is idle with nothing pending and returns that status. A suspended
 * replication fails at once with its reason (suspension does not end by itself).
 */
export async function waitCaughtUp(
  node: ApiNode,
  name: string,
  timeoutMs = 60_000,
): Promise<ReplicationStatus> {
  const st = await waitFor(
    async () => {
      const s = await replicationStatus(node, name);
      return s.state === 'suspended' || (s.pending_records === 0 && s.state === 'idle') ? s : false;
    },
    { timeoutMs, intervalMs: 50, message: `replication '${name}' to catch up` },
  );
  assert.notEqual(st.state, 'suspended', `replication '${name}' suspended: ${st.state_reason}`);
  return st;
}

/** Options of {@link createReplication}. */
export interface CreateReplicationOptions {
  /** Replication name (default 'r'). */
  name?: string;
  /** Source bucket (default 'src'). */
  srcBucket?: string;
  /** Destination bucket (default 'dst'). */
  dstBucket?: string;
  /** `dst_host` (default the destination's URL), e.g. a fault proxy in front of it. */
  dstHost?: string;
  /**
   * Create the source bucket first (default true); an object creates it with these settings.
   * False when it exists already.
   */
  createSrcBucket?: boolean | Record<string, unknown>;
  /** Further replication settings (`batch`, `retry`, `log`, `mode`, ...). */
  settings?: Record<string, unknown>;
}

/**
 * Creates the source bucket on `src` (unless told not to) and `POST /replications/{name}` from it to
 * `dst` with the destination's token (none when `dst.token` is ''). Throws on any failure.
 */
export async function createReplication(
  src: ApiNode,
  dst: ApiNode,
  opts: CreateReplicationOptions = {},
): Promise<void> {
  const srcBucket = opts.srcBucket ?? 'src';
  const bucketSettings = opts.createSrcBucket ?? true;
  if (bucketSettings !== false)
    await api(src, 'POST', `/b/${srcBucket}`, bucketSettings === true ? {} : bucketSettings);
  await api(src, 'POST', `/replications/${opts.name ?? 'r'}`, {
    src_bucket: srcBucket,
    dst_bucket: opts.dstBucket ?? 'dst',
    dst_host: opts.dstHost ?? dst.url,
    ...(dst.token !== '' ? { dst_token: dst.token } : {}),
    ...opts.settings,
  });
}
