/**
 * One replication scenario, two destinations: an in-process source (real storage and
 * `ReplicationManager`, no HTTP) that replicates either to a bucket of the same storage
 * (`local`: the LocalTarget) or to an in-process Ferry server (`remote`: the RemoteTarget over
 * HTTP). Tests written against `ReplEnv` run unchanged for both (`forEachTarget`).
 */
import { test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load-config.js';
import { openStorage } from '../../src/storage/engine.js';
import type { Labels, Storage } from '../../src/storage/types.js';
import type { ReplicationInfo } from '../../src/protocol/replications.js';
import { ReplicationManager, type ReplicationManagerOptions } from '../../src/replication/manager.js';
import { GroupService } from '../../src/replication/group-service.js';
import { startTestServer, stopTestServer, type TestServer } from './test-server.js';

/** Which destination a scenario replicates to. */
export type TargetKind = 'local' | 'remote';
export const TARGET_KINDS: readonly TargetKind[] = ['local', 'remote'];

/** Options of {@link openReplEnv}. */
export interface ReplEnvOptions {
  /** Extra environment of the source (e.g. `RS_REPLICATION_TIMEOUT`). */
  env?: Record<string, string>;
  wrapTarget?: ReplicationManagerOptions['wrapTarget'];
  /** Extra environment of the destination server (`remote` only). */
  dstEnv?: Record<string, string>;
}

/** A source with its replication manager and the destination storage. */
export interface ReplEnv {
  readonly kind: TargetKind;
  readonly dir: string;
  /** Source storage (replaced by `reopen`). */
  storage: Storage;
  manager: ReplicationManager;
  /** The source's consistency groups (replaced by `reopen`). */
  groups: GroupService;
  /** Destination storage: the source storage itself for `local`, the server's for `remote`. */
  readonly dst: Storage;
  /** `dst_host` and `dst_token` of this destination. */
  readonly destination: { dst_host: string; dst_token?: string };
  /** Creates bucket 'src' (unless it exists) and replication `name` from it to 'dst'. */
  replicate(name: string, settings?: Record<string, unknown>): Promise<void>;
  /** Closes and reopens the source storage and manager (a clean restart). */
  reopen(): Promise<void>;
  close(): Promise<void>;
}

const DST_TOKEN = 'dst-token';

/** Opens a fresh source (and destination server for `remote`). */
export async function openReplEnv(kind: TargetKind, opts: ReplEnvOptions = {}): Promise<ReplEnv> {
  const dir = await mkdtemp(join(tmpdir(), `ferry-repl-${kind}-`));
  const config = loadConfig({
    RS_DATA_PATH: dir,
    RS_PORT: '8383',
    RS_HOST: '127.0.0.1',
    ...opts.env,
  });
  const server: TestServer | undefined =
    kind === 'remote' ? await startTestServer('dst', DST_TOKEN, opts.dstEnv) : undefined;
  const open = async (): Promise<{ storage: Storage; manager: ReplicationManager; groups: GroupService }> => {
    const storage = await openStorage({ dataPath: dir, durability: 'none' });
    const groups = await GroupService.open({ storage, dataPath: dir, sync: false, provisioned: [] });
    const manager = await ReplicationManager.open({
      storage,
      config,
      port: 8383,
      groups,
      ...(opts.wrapTarget ? { wrapTarget: opts.wrapTarget } : {}),
    });
    return { storage, manager, groups };
  };
  const first = await open();
  const env: ReplEnv = {
    kind,
    dir,
    storage: first.storage,
    manager: first.manager,
    groups: first.groups,
    get dst() {
      return server ? server.ferry.storage : env.storage;
    },
    destination: server ? { dst_host: server.ferry.url, dst_token: DST_TOKEN } : { dst_host: '' },
    async replicate(name, settings = {}) {
      if (!env.storage.hasBucket('src')) await env.storage.createBucket('src');
      await env.manager.create(name, {
        src_bucket: 'src',
        dst_bucket: 'dst',
        ...env.destination,
        ...settings,
      });
    },
    async reopen() {
      await env.manager.close();
      await env.storage.close();
      const next = await open();
      env.storage = next.storage;
      env.manager = next.manager;
      env.groups = next.groups;
    },
    async close() {
      await env.manager.close();
      await env.storage.close();
      await stopTestServer(server);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return env;
}

/** Runs `fn` with a fresh environment and always cleans up. */
export async function withReplEnv(
  kind: TargetKind,
  fn: (env: ReplEnv) => Promise<void>,
  opts: ReplEnvOptions = {},
): Promise<void> {
  const env = await openReplEnv(kind, opts);
  try {
    await fn(env);
  } finally {
    await env.close();
  }
}

/** Declares one test per destination kind: `<name> [local]` and `<name> [remote]`. */
export function forEachTarget(
  name: string,
  fn: (env: ReplEnv) => Promise<void>,
  opts: ReplEnvOptions & { timeout?: number; kinds?: readonly TargetKind[] } = {},
): void {
  for (const kind of opts.kinds ?? TARGET_KINDS) {
    test(`${name} [${kind}]`, { timeout: opts.timeout ?? 60_000 }, () => withReplEnv(kind, fn, opts));
  }
}

/** Replication status fields the tests read. */
export interface TaskStatus {
  state: string;
  state_reason: string | null;
  pending_records: number;
  pending_bytes: number;
  counters: Record<string, number>;
  cursor_lsn: bigint;
  log_last_lsn: bigint;
  retries: number;
  next_retry_at: string | null;
  last_error: { status: number; message: string; at: string } | null;
  needs_verify: boolean;
  needs_verify_reason: string | null;
}

/** The status of replication `name`. */
export const statusOf = (m: ReplicationManager, name: string): TaskStatus =>
  m.inspect(name).status as unknown as TaskStatus;

/** The compatible info object of replication `name`. */
export const infoOf = (m: ReplicationManager, name: string): ReplicationInfo => m.get(name).info;

/** Writes one text record. */
export async function writeText(
  storage: Storage,
  bucket: string,
  entry: string,
  ts: bigint,
  body: string,
  labels: Labels = {},
): Promise<void> {
  const buf = Buffer.from(body);
  await storage.bucket(bucket).write(entry, ts, { size: buf.length, labels, contentType: 'text/plain' }, buf);
}

/** Every record of one entry with its payload as text. */
export async function readText(
  storage: Storage,
  bucket: string,
  entry: string,
): Promise<Array<{ ts: bigint; body: string; labels: Labels; contentType: string }>> {
  const out = [];
  for await (const r of storage.bucket(bucket).scan(entry, 0n, 2n ** 63n)) {
    out.push({
      ts: r.meta.ts,
      body: (await r.buffer()).toString(),
      labels: r.meta.labels,
      contentType: r.meta.contentType,
    });
  }
  return out;
}
