/**
 * Sync replication in process (replication.md §7), local and remote destinations: client writes go
 * through the storage view of the HTTP layer (`syncWrites`), the destination is interposed by a
 * target that can hold or refuse deliveries. A sync write is answered only once the destination
 * holds it; writes outside the scope never wait; `fail` answers the write that times out with 503
 * and refuses the next ones at once (nothing stored) until the destination is back; `degrade`
 * switches to async and back by itself with nothing lost.
 */
import assert from 'node:assert/strict';
import { syncWrites } from '../src/http/sync-writes.js';
import { TargetError, type ItemOutcome, type ShipRecord, type Target } from '../src/replication/target.js';
import type { Storage } from '../src/storage/types.js';
import { ForwardingTarget } from './helpers/forwarding-target.js';
import { forEachTarget, readText, statusOf, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

/** Holds deliveries while `holding`, refuses them (unreachable) while `down`. */
class SwitchTarget extends ForwardingTarget {
  holding = false;
  down = false;
  /** Write requests made (each a shipment of one entry's records). */
  writes = 0;
  /** Only this entry's deliveries are held (while `holding`); undefined: all. */
  holdEntry: string | undefined;
  private opened: Promise<void> = Promise.resolve();
  private release: () => void = () => undefined;

  hold(): void {
    this.holding = true;
    this.opened = new Promise((r) => (this.release = r));
  }

  open(): void {
    this.holding = false;
    this.release();
  }

  override async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    if (this.down) throw new TargetError(-3, 'Connection error: connect ECONNREFUSED (test)', true);
    this.writes++;
    if (this.holding && (this.holdEntry === undefined || entry === this.holdEntry)) await this.opened;
    return super.write(entry, records);
  }

  override async update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    if (this.down) throw new TargetError(-3, 'Connection error: connect ECONNREFUSED (test)', true);
    if (this.holding) await this.opened;
    return super.update(entry, records);
  }
}

let current: SwitchTarget | null = null;
const wrapTarget = (t: Target): Target => (current = new SwitchTarget(t));
const FAST_RETRY = { retry: { initial_ms: 20, max_ms: 50 } };

function put(storage: Storage, bucket: string, entry: string, ts: bigint, body: string): Promise<unknown> {
  const buf = Buffer.from(body);
  return storage.bucket(bucket).write(entry, ts, { size: buf.length, contentType: 'text/plain' }, buf);
}

/** 'pending' until settled, then 'ok' or `<status> <message>`. */
function track(p: Promise<unknown>): { get: () => string; done: Promise<unknown> } {
  let state = 'pending';
  const done = p.then(
    () => (state = 'ok'),
    (e: { status?: number; message?: string }) => (state = `${e.status} ${e.message}`),
  );
  return { get: () => state, done };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Replication 'r' with `sync`, created async first so that the first contact with the destination
 * (and its bucket creation), slow under load, is not measured against a short timeout; the PUT
 * keeps the cursor.
 */
async function replicateSync(env: ReplEnv, sync: Record<string, unknown>): Promise<void> {
  await env.replicate('r', FAST_RETRY);
  await env.storage.bucket('src').write('warm', 1n, { size: 1 }, Buffer.from('w'));
  await waitFor(async () => (await has(env, 'warm', 1n)) === 'w', { timeoutMs: 20_000, message: 'warm-up' });
  await env.manager.update('r', {
    src_bucket: 'src',
    dst_bucket: 'dst',
    ...env.destination,
    ...FAST_RETRY,
    replication_type: 'sync',
    sync,
  });
}

async function has(env: ReplEnv, entry: string, ts: bigint): Promise<string | undefined> {
  if (!env.dst.hasBucket('dst')) return undefined;
  return (await readText(env.dst, 'dst', entry).catch(() => [])).find((r) => r.ts === ts)?.body;
}

type SyncStatus = {
  replication_type: string;
  effective_type: string;
  effective_type_reason: string | null;
  sync: { transitions: Record<string, number>; waiting_writes: number };
};
const syncOf = (env: ReplEnv): SyncStatus => statusOf(env.manager, 'r') as unknown as SyncStatus;

forEachTarget(
  'a sync write is answered once the destination holds it; concurrent writers each get their own answer; writes out of scope never wait',
  async (env) => {
    await env.replicate('r', { replication_type: 'sync', entries: ['s*'], ...FAST_RETRY });
    await env.storage.createBucket('other');
    const client = syncWrites(env.storage, env.manager.syncGates);
    assert.equal(syncOf(env).effective_type, 'sync');
    // warm up: the destination is contacted, the bucket created
    await put(client, 'src', 's0', 1n, 'warm');
    assert.equal(await has(env, 's0', 1n), 'warm');

    current!.hold();
    const held = track(put(client, 'src', 's1', 2n, 'held'));
    // outside the scope (another bucket, an entry the patterns exclude): answered while deliveries are held
    await put(client, 'other', 's1', 2n, 'x');
    await put(client, 'src', 'unsynced', 2n, 'y');
    await sleep(100);
    assert.equal(held.get(), 'pending', 'a sync write was answered before its destination held it');
    assert.equal(syncOf(env).sync.waiting_writes, 1);
    current!.open();
    await held.done;
    assert.equal(held.get(), 'ok');
    assert.equal(await has(env, 's1', 2n), 'held');

    // 48 concurrent writers: each is answered only when its own record is at the destination
    const missing: string[] = [];
    await Promise.all(
      Array.from({ length: 48 }, async (_, i) => {
        const ts = 100n + BigInt(i);
        await put(client, 'src', `s${i % 3}`, ts, `r${i}`);
        if ((await has(env, `s${i % 3}`, ts)) !== `r${i}`) missing.push(`s${i % 3}@${ts}`);
      }),
    );
    assert.deepEqual(missing, [], 'acknowledged before the destination held them');

    // a label update in scope waits for its delivery too
    current!.hold();
    const upd = track(client.bucket('src').updateLabels('s1', 2n, { k: 'v' }));
    await sleep(100);
    assert.equal(upd.get(), 'pending');
    current!.open();
    await upd.done;
    assert.equal(upd.get(), 'ok');
    const labels = (await readText(env.dst, 'dst', 's1')).find((r) => r.ts === 2n)?.labels;
    assert.deepEqual(labels, { k: 'v' });
  },
  { wrapTarget },
);

forEachTarget(
  'concurrent sync writers share one shipment and one group commit at the destination',
  async (env) => {
    // one window in flight: writers that come while it is held gather into the next one
    await env.replicate('r', { replication_type: 'sync', batch: { max_in_flight: 1 }, ...FAST_RETRY });
    const client = syncWrites(env.storage, env.manager.syncGates);
    await put(client, 'src', 's', 1n, 'warm');
    current!.hold();
    const first = track(put(client, 'src', 's', 2n, 'held'));
    await waitFor(() => current!.writes === 2, { message: 'the first write shipped' });
    const lsn = env.storage.changes.lastLsn();
    const writers = Array.from({ length: 8 }, (_, i) =>
      track(put(client, 'src', 's', 10n + BigInt(i), `w${i}`)),
    );
    await waitFor(() => env.storage.changes.lastLsn() >= lsn + 8n, { message: 'the 8 writes committed' });
    const dstCommits: bigint[] = [];
    const stop = env.dst.changes.onCommit((l) => dstCommits.push(l));
    try {
      assert.deepEqual(
        writers.map((w) => w.get()),
        Array(8).fill('pending'),
      );
      current!.open();
      await Promise.all([first.done, ...writers.map((w) => w.done)]);
      assert.deepEqual(
        writers.map((w) => w.get()),
        Array(8).fill('ok'),
      );
      assert.equal(current!.writes, 3, 'the 8 writers were shipped in one request');
      assert.equal(dstCommits.length, 2, 'the held write, then the 8 writers in one group commit');
    } finally {
      stop();
    }
    for (let i = 0; i < 8; i++) assert.equal(await has(env, 's', 10n + BigInt(i)), `w${i}`);
  },
  { wrapTarget },
);

forEachTarget(
  'a sync write is answered once its own record is at the destination, while an earlier write of another entry is still held',
  async (env) => {
    await env.replicate('r', { replication_type: 'sync', ...FAST_RETRY });
    const client = syncWrites(env.storage, env.manager.syncGates);
    await put(client, 'src', 'a', 1n, 'warm');
    current!.holdEntry = 'a';
    current!.hold();
    const held = track(put(client, 'src', 'a', 2n, 'held'));
    await waitFor(() => current!.writes === 2, { message: "entry a's write shipped" });
    // shipped after it (in its window or a later one): its own request is answered, a's is not
    await put(client, 'src', 'b', 2n, 'passes');
    assert.equal(await has(env, 'b', 2n), 'passes');
    assert.equal(held.get(), 'pending');
    assert.equal(await has(env, 'a', 2n), undefined);
    current!.open();
    await held.done;
    assert.equal(held.get(), 'ok');
    assert.equal(await has(env, 'a', 2n), 'held');
  },
  { wrapTarget },
);

forEachTarget(
  "on_timeout 'fail': the write that times out is a 503 (outcome unknown), the next ones are refused at once and not stored; back to sync once the destination is",
  async (env) => {
    await replicateSync(env, { timeout_ms: 300, on_timeout: 'fail' });
    const client = syncWrites(env.storage, env.manager.syncGates);
    await put(client, 'src', 'e', 1n, 'before');
    current!.down = true;
    const t0 = Date.now();
    const timedOut = track(put(client, 'src', 'e', 2n, 'unknown'));
    await timedOut.done;
    const waited = Date.now() - t0;
    assert.match(
      timedOut.get(),
      /^503 The write is stored here, but sync replication 'r' did not get it to its destination within 300 ms.*retrying the same write is safe/,
    );
    assert.ok(waited >= 290, `answered after ${waited} ms, before the timeout`);
    assert.equal(syncOf(env).effective_type, 'blocked');
    assert.match(syncOf(env).effective_type_reason ?? '', /ECONNREFUSED/);
    // refused at once, and nothing stored
    for (let i = 0; i < 5; i++) {
      const s = Date.now();
      const r = track(put(client, 'src', 'e', 10n + BigInt(i), 'refused'));
      await r.done;
      assert.match(
        r.get(),
        /^503 Writes to this scope are refused: sync replication 'r' cannot reach its destination/,
      );
      assert.ok(Date.now() - s < 100, `a refusal took ${Date.now() - s} ms`);
    }
    assert.equal((await readText(env.storage, 'src', 'e')).length, 2, 'a refused write was stored');
    current!.down = false;
    await waitFor(() => syncOf(env).effective_type === 'sync', {
      timeoutMs: 20_000,
      message: 'back to sync',
    });
    // the write whose outcome was unknown arrived; retrying it is safe (409: it is here and there)
    assert.equal(await has(env, 'e', 2n), 'unknown');
    const retry = track(put(client, 'src', 'e', 2n, 'unknown'));
    await retry.done;
    assert.match(retry.get(), /^409/);
    await put(client, 'src', 'e', 20n, 'after');
    assert.equal(await has(env, 'e', 20n), 'after');
    assert.deepEqual(syncOf(env).sync.transitions, { to_sync: 1, to_async: 0, to_blocked: 1 });
  },
  { wrapTarget },
);

forEachTarget(
  "on_timeout 'degrade': a timeout switches to async (writes answered), shipping goes on, and it returns to sync by itself with nothing lost",
  async (env) => {
    // A timeout long enough that a loaded machine's scheduling never reaches it by accident: the
    // degraded writes must not wait for it, and the sync write held below must not degrade again.
    const TIMEOUT_MS = 1000;
    await replicateSync(env, { timeout_ms: TIMEOUT_MS, on_timeout: 'degrade', recover_after_ms: 300 });
    const client = syncWrites(env.storage, env.manager.syncGates);
    await put(client, 'src', 'e', 1n, 'r1');
    current!.down = true;
    const t0 = Date.now();
    await put(client, 'src', 'e', 2n, 'r2'); // answered after the timeout, as async
    assert.ok(Date.now() - t0 >= TIMEOUT_MS - 10);
    const st = syncOf(env);
    assert.equal(st.replication_type, 'sync');
    assert.equal(st.effective_type, 'async');
    assert.match(st.effective_type_reason ?? '', /ECONNREFUSED/);
    for (let i = 3n; i < 20n; i++) {
      const s = Date.now();
      await put(client, 'src', 'e', i, `r${i}`);
      assert.ok(Date.now() - s < TIMEOUT_MS / 2, `degraded write ${i} waited ${Date.now() - s} ms`);
    }
    current!.down = false;
    await waitFor(() => syncOf(env).effective_type === 'sync', {
      timeoutMs: 20_000,
      message: 'back to sync',
    });
    const got = (await readText(env.dst, 'dst', 'e')).map((r) => r.body);
    assert.deepEqual(
      got,
      Array.from({ length: 19 }, (_, i) => `r${i + 1}`),
    );
    assert.deepEqual(syncOf(env).sync.transitions, { to_sync: 1, to_async: 1, to_blocked: 0 });
    // sync again: the next write waits for its delivery
    current!.hold();
    const w = track(put(client, 'src', 'e', 30n, 'r30'));
    await sleep(100);
    assert.equal(w.get(), 'pending');
    current!.open();
    await w.done;
    assert.equal(await has(env, 'e', 30n), 'r30');
  },
  { wrapTarget },
);
