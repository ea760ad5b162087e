/**
 * Replication engine on one instance (replication.md §4, §9, §11): the ReplicationManager on a real
 * storage engine, same-instance destination (LocalTarget), restart resume, filters, failure log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { openStorage } from '../src/storage/engine.js';
import type { Storage } from '../src/storage/types.js';
import { ReplicationManager } from '../src/replication/manager.js';
import { waitFor } from './helpers/wait.js';

interface Env {
  dir: string;
  storage: Storage;
  manager: ReplicationManager;
  reopen(): Promise<void>;
  close(): Promise<void>;
}

async function setup(extraEnv: Record<string, string> = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-repl-local-'));
  const config = loadConfig({ RS_DATA_PATH: dir, RS_PORT: '8383', RS_HOST: '127.0.0.1', ...extraEnv });
  const env: Env = {
    dir,
    storage: await openStorage({ dataPath: dir, durability: 'none' }),
    manager: undefined as unknown as ReplicationManager,
    async reopen() {
      await env.manager.close();
      await env.storage.close();
      env.storage = await openStorage({ dataPath: dir, durability: 'none' });
      env.manager = await ReplicationManager.open({ storage: env.storage, config, port: 8383 });
    },
    async close() {
      await env.manager.close();
      await env.storage.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  env.manager = await ReplicationManager.open({ storage: env.storage, config, port: 8383 });
  return env;
}

/** The payload of one stored record as text. */
async function bodyOf(storage: Storage, bucket: string, entry: string, ts: bigint): Promise<string> {
  return (await (await storage.bucket(bucket).read(entry, ts)).buffer()).toString();
}

/** Runs `fn` with a fresh storage + replication manager and always cleans up. */
async function withEnv(
  ...args: [(env: Env) => Promise<void>] | [Record<string, string>, (env: Env) => Promise<void>]
): Promise<void> {
  const [extraEnv, fn] = args.length === 1 ? [{}, args[0]] : args;
  const env = await setup(extraEnv);
  try {
    await fn(env);
  } finally {
    await env.close();
  }
}

/**
 * Creates bucket 'src' (unless it exists) and replication `name` from it to 'dst' on the same
 * instance; `settings` add to or override the replication's settings.
 */
async function replicate(env: Env, name: string, settings: Record<string, unknown> = {}): Promise<void> {
  if (!env.storage.hasBucket('src')) await env.storage.createBucket('src');
  await env.manager.create(name, { src_bucket: 'src', dst_bucket: 'dst', dst_host: '', ...settings });
}

type Status = {
  state: string;
  pending_records: number;
  counters: Record<string, number>;
  cursor_lsn: bigint;
  state_reason: string | null;
  needs_verify: boolean;
};
const statusOf = (m: ReplicationManager, name: string): Status => m.get(name).status as unknown as Status;
const infoOf = (m: ReplicationManager, name: string) => m.get(name).info;

async function write(
  storage: Storage,
  bucket: string,
  entry: string,
  ts: bigint,
  body: string,
  labels: Record<string, string> = {},
) {
  const buf = Buffer.from(body);
  await storage.bucket(bucket).write(entry, ts, { size: buf.length, labels, contentType: 'text/plain' }, buf);
}

async function readAll(
  storage: Storage,
  bucket: string,
  entry: string,
): Promise<Array<{ ts: bigint; body: string; labels: Record<string, string> }>> {
  const out = [];
  for await (const r of storage.bucket(bucket).scan(entry, 0n, 2n ** 63n)) {
    out.push({ ts: r.meta.ts, body: (await r.buffer()).toString(), labels: r.meta.labels });
  }
  return out;
}

test('local replication copies new writes with labels, content type and payload, and only those', async () => {
  await withEnv(async (env) => {
    await env.storage.createBucket('src');
    await write(env.storage, 'src', 'a', 1n, 'before creation');
    await replicate(env, 'r1');
    for (let i = 10n; i < 60n; i++) await write(env.storage, 'src', 'a', i, `rec-${i}`, { n: String(i) });
    await write(env.storage, 'src', 'b/c', 5n, 'nested');
    await waitFor(
      () =>
        statusOf(env.manager, 'r1').pending_records === 0 &&
        env.storage.hasBucket('dst') &&
        statusOf(env.manager, 'r1').counters.records_written === 51,
      { message: 'replicated' },
    );
    const got = await readAll(env.storage, 'dst', 'a');
    assert.equal(got.length, 50);
    assert.equal(got[0]!.ts, 10n);
    assert.equal(got[0]!.body, 'rec-10');
    assert.deepEqual(got[0]!.labels, { n: '10' });
    assert.equal((await env.storage.bucket('dst').read('a', 10n)).meta.contentType, 'text/plain');
    assert.equal((await readAll(env.storage, 'dst', 'b/c'))[0]!.body, 'nested');
    const st = statusOf(env.manager, 'r1');
    assert.equal(st.state, 'idle');
    assert.equal(st.counters.records_written, 51);
    assert.equal(infoOf(env.manager, 'r1').is_active, true);
  });
});

test('entries patterns, dst_prefix and when (stateful, per entry) select what is shipped', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'r', {
      entries: ['cam-*', '!cam-private'],
      dst_prefix: '/robot/',
      when: { '&ok': { $eq: 'yes' }, $each_n: 2 },
    });
    for (let i = 1n; i <= 6n; i++) {
      await write(env.storage, 'src', 'cam-1', i, `c1-${i}`, { ok: 'yes' });
      await write(env.storage, 'src', 'cam-2', i, `c2-${i}`, { ok: i === 2n ? 'no' : 'yes' });
      await write(env.storage, 'src', 'cam-private', i, 'secret', { ok: 'yes' });
      await write(env.storage, 'src', 'other', i, 'o', { ok: 'yes' });
    }
    await write(env.storage, 'src', 'cam-1', 7n, 'no label');
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained' });
    // per-entry $each_n: every 2nd matching record of each entry
    assert.deepEqual(
      (await readAll(env.storage, 'dst', 'robot/cam-1')).map((r) => r.ts),
      [2n, 4n, 6n],
    );
    // cam-2: ts 2 fails `&ok`, so matches are 1,3,4,5,6 → 2nd and 4th = 3, 5
    assert.deepEqual(
      (await readAll(env.storage, 'dst', 'robot/cam-2')).map((r) => r.ts),
      [3n, 5n],
    );
    assert.equal(env.storage.bucket('dst').hasEntry('robot/cam-private'), false);
    assert.equal(env.storage.bucket('dst').hasEntry('robot/other'), false);
    const c = statusOf(env.manager, 'r').counters;
    assert.equal(c.records_written, 5);
    // 12 in scope from cam-1/cam-2 plus the unlabelled one (strict: missing label = filtered)
    assert.equal(c.records_filtered, 13 - 5);
  });
});

test('stateful when survives a restart; cursor resumes from the checkpoint; pending recomputed', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'r', {
      when: { $each_n: 3 },
    });
    for (let i = 1n; i <= 4n; i++) await write(env.storage, 'src', 'e', i, `v${i}`);
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0);
    assert.deepEqual(
      (await readAll(env.storage, 'dst', 'e')).map((r) => r.ts),
      [3n],
    );
    // pause, write while paused, restart: pending is recomputed from the log
    await env.manager.setMode('r', { mode: 'paused' });
    for (let i = 5n; i <= 7n; i++) await write(env.storage, 'src', 'e', i, `v${i}`);
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 3, {
      message: 'pending while paused',
    });
    await env.reopen();
    const st = statusOf(env.manager, 'r');
    assert.equal(st.state, 'paused');
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 3, {
      message: 'pending after restart',
    });
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0);
    // the counter continued at 4 (not reset): 5th is skipped, 6th is the next 3rd
    assert.deepEqual(
      (await readAll(env.storage, 'dst', 'e')).map((r) => r.ts),
      [3n, 6n],
    );
  });
});

test('label updates are replicated, including removed labels; re-delivery is a no-op', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'r');
    await write(env.storage, 'src', 'e', 1n, 'x', { a: '1', b: '2' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
    await env.storage.bucket('src').updateLabels('e', 1n, { a: '10', b: null, c: '3' });
    await waitFor(
      async () => {
        const l = (await env.storage.bucket('dst').read('e', 1n)).meta.labels;
        return l.a === '10' && l.b === undefined && l.c === '3';
      },
      { message: 'labels replicated' },
    );
    // a record identical at the destination (e.g. re-shipped after a crash) counts as already present
    await env.manager.setMode('r', { mode: 'paused' });
    await write(env.storage, 'dst', 'e', 2n, 'same');
    await write(env.storage, 'src', 'e', 2n, 'same');
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_already_present === 1);
    assert.equal(statusOf(env.manager, 'r').state, 'idle');
  });
});

test('a label removed by one of several updates shipped together is removed at the destination', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'r');
    await write(env.storage, 'src', 'e', 1n, 'x', { a: '1' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
    // both updates of the record land in one window: the first removes `a`, the second adds `b`
    await env.manager.setMode('r', { mode: 'paused' });
    await env.storage.bucket('src').updateLabels('e', 1n, { a: null });
    await env.storage.bucket('src').updateLabels('e', 1n, { b: '2' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 2, { message: 'pending' });
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained' });
    assert.deepEqual((await env.storage.bucket('dst').read('e', 1n)).meta.labels, { b: '2' });
    assert.equal(statusOf(env.manager, 'r').counters.label_updates_written, 1);
  });
});

test('a conflicting record: stop suspends with the reason and keeps it pending; skip logs it', async () => {
  await withEnv(async (env) => {
    await env.storage.createBucket('dst');
    await write(env.storage, 'dst', 'e', 1n, 'different');
    await replicate(env, 'r');
    await write(env.storage, 'src', 'e', 1n, 'original');
    await write(env.storage, 'src', 'e', 2n, 'fine');
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
    const st = statusOf(env.manager, 'r');
    assert.match(st.state_reason ?? '', /409/);
    assert.equal(st.pending_records, 2);
    assert.equal(infoOf(env.manager, 'r').is_active, false);
    // PUT with skip resumes; the record goes to the failure log, the next one is delivered
    await env.manager.update('r', {
      src_bucket: 'src',
      dst_bucket: 'dst',
      dst_host: '',
      on_write_failure: 'skip',
    });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained after skip' });
    const after = statusOf(env.manager, 'r');
    assert.equal(after.counters.records_failed, 1);
    assert.equal(after.state, 'idle');
    const f = await env.manager.failures('r');
    assert.equal(f.total, 1);
    assert.equal(f.failures[0]!.ts, 1n);
    assert.equal(f.failures[0]!.status, 409);
    assert.equal(await bodyOf(env.storage, 'dst', 'e', 2n), 'fine');
    assert.equal(await bodyOf(env.storage, 'dst', 'e', 1n), 'different');
  });
});

test('definitions persist with mode 0600, disabled ignores writes, create_target false is visible', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'r', {
      dst_bucket: 'nope',
      create_target: false,
      dst_token: 'secret',
    });
    await write(env.storage, 'src', 'e', 1n, 'x');
    await waitFor(() => statusOf(env.manager, 'r').state === 'retrying', { message: 'retrying' });
    assert.match(statusOf(env.manager, 'r').state_reason ?? '', /does not exist/);
    assert.equal(env.storage.hasBucket('nope'), false);
    const st = await stat(join(env.dir, '.ferry', 'replications.json'));
    assert.equal(st.mode & 0o777, 0o600);
    await env.manager.setMode('r', { mode: 'disabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, {
      message: 'disabled drops pending',
    });
    await env.reopen();
    const got = env.manager.get('r');
    assert.equal(got.info.mode, 'disabled');
    assert.equal(got.settings.dst_token, null);
    assert.equal(got.settings.create_target, false);
    assert.equal(got.info.is_active, false);
  });
});

test('slots of removed replications are dropped at start; block overflow is passed to the slot', async () => {
  await withEnv(async (env) => {
    await replicate(env, 'kept', {
      log: { max_bytes: 5000, on_overflow: 'block' },
    });
    const kept = env.storage.changes.getSlot('replication/kept');
    assert.equal(kept?.maxBytes, 5000);
    assert.equal(kept?.onOverflow, 'block');
    // a crash between removing a definition and dropping its slot leaves an orphan behind
    await env.storage.changes.setSlot({ name: 'replication/ghost', bucket: 'src', lsn: 0n, maxBytes: 100 });
    await env.storage.changes.setSlot({ name: 'other/owner', bucket: 'src', lsn: 0n, maxBytes: 100 });
    await env.reopen();
    const names = env.storage.changes
      .listSlots()
      .map((s) => s.name)
      .sort();
    assert.deepEqual(names, ['other/owner', 'replication/kept']);
    await env.manager.remove('kept');
    assert.equal(env.storage.changes.getSlot('replication/kept'), undefined);
  });
});
