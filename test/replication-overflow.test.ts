/**
 * FIFO quota pressure on a replication source while the destination is down (replication.md §3
 * `log`, §11; issue 8 item 15). The bucket's quota and the replication's log bound compose, and the
 * policy decides, never a 500: pending records are protected from eviction within `log.max_bytes`
 * while other records can go; once only pending ones are left (the quota is full of them), or past
 * the bound, `on_overflow` decides visibly — `drop_oldest` evicts the oldest pending records,
 * counts them and marks the replication as needing verification, `block` refuses source writes with
 * a 429 that names the replication and what to do, `suspend` suspends it and FIFO goes on. Real
 * Ferry processes; the destination is killed and restarted.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication, replicationStatus, waitCaughtUp } from './helpers/ferry-api.js';
import { diffSnapshots, formatDiff, snapshotBucket } from './helpers/records.js';
import { waitFor } from './helpers/wait.js';

const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
const procs: FerryProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.destroy()));
});

/** Writes one 10 kB record; returns the HTTP status and error message. */
async function write(
  node: FerryProcess,
  bucket: string,
  ts: number,
): Promise<{ status: number; error: string }> {
  const res = await fetch(`${node.url}/api/v1/b/${bucket}/e?ts=${ts}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/octet-stream' },
    body: randomBytes(10_000),
    signal: AbortSignal.timeout(10_000),
  });
  await res.text();
  return { status: res.status, error: res.headers.get('x-reduct-error') ?? '' };
}

async function recordCount(node: FerryProcess, bucket: string): Promise<number> {
  const info = (await api(node, 'GET', `/b/${bucket}`)) as { entries: Array<{ record_count: number }> };
  return info.entries.reduce((s, e) => s + Number(e.record_count), 0);
}

/** Source A with a small FIFO bucket and a replication of it to B, which is down. */
async function setup(
  log: { max_bytes: number; on_overflow: string },
  quota: number,
): Promise<{ A: FerryProcess; B: FerryProcess }> {
  const [A, B] = await Promise.all([spawnFerry({ env }), spawnFerry({ env })]);
  procs.push(A, B);
  await createReplication(A, B, {
    createSrcBucket: { quota_type: 'FIFO', quota_size: quota, max_block_size: 40_000 },
    settings: { log, retry: { initial_ms: 50, max_ms: 200 } },
  });
  await B.kill('SIGKILL');
  return { A, B };
}

/** Writes `n` records from `ts` on; returns every answer that was not a 200. */
async function writeMany(
  node: FerryProcess,
  n: number,
  ts = 1,
): Promise<Array<{ status: number; error: string }>> {
  const refused = [];
  for (let i = 0; i < n; i++) {
    const r = await write(node, 'src', ts + i);
    if (r.status !== 200) refused.push(r);
  }
  return refused;
}

// The case: a FIFO bucket whose quota fills while the destination is down, with the default
// log bound (1 GiB, far above the quota). The quota and the log bound compose: the policy decides.
const QUOTA = 200_000;
const BIG_LOG = 1024 * 1024 * 1024;

test(
  'FIFO quota full of pending records, drop_oldest (the default): the oldest are evicted, counted and flagged',
  { timeout: 60_000 },
  async () => {
    const { A, B } = await setup({ max_bytes: BIG_LOG, on_overflow: 'drop_oldest' }, QUOTA);
    assert.deepEqual(await writeMany(A, 60), [], 'every write is accepted');
    const kept = await recordCount(A, 'src');
    assert.ok(kept < 60 && kept >= 10, `FIFO kept ${kept} records`);
    const st = await waitFor(async () => {
      const s = await replicationStatus(A, 'r');
      return s.needs_verify ? s : false;
    });
    assert.match(st.needs_verify_reason ?? '', /evicted by the source bucket's FIFO quota.*drop_oldest/);
    assert.notEqual(st.state, 'suspended');
    await B.restart();
    const done = await waitCaughtUp(A, 'r', 30_000);
    assert.equal(done.counters.records_dropped_overflow, 60 - kept, 'evicted records are counted');
    assert.equal(done.counters.records_written, kept);
    assert.equal(done.needs_verify, true, 'the flag stays until a verification');
    const diff = diffSnapshots(
      await snapshotBucket(A.url, A.token, 'src'),
      await snapshotBucket(B.url, B.token, 'dst'),
    );
    assert.equal(diff.missing.length + diff.different.length + diff.extra.length, 0, formatDiff(diff));
  },
);

test(
  'FIFO quota full of pending records, block: writes get a 429 naming the replication until it catches up',
  { timeout: 60_000 },
  async () => {
    const { A, B } = await setup({ max_bytes: BIG_LOG, on_overflow: 'block' }, QUOTA);
    const refused = await writeMany(A, 40);
    assert.ok(refused.length > 0, 'writes were refused once the quota was full');
    for (const r of refused) {
      assert.equal(r.status, 429, r.error);
      assert.match(r.error, /replication 'r' has not shipped yet/);
      assert.match(r.error, /drop_oldest/);
    }
    const accepted = 40 - refused.length;
    assert.equal(await recordCount(A, 'src'), accepted, 'no pending record was evicted');
    const st = await replicationStatus(A, 'r');
    assert.equal(st.pending_records, accepted);
    assert.equal(st.needs_verify, false);
    await B.restart();
    await waitCaughtUp(A, 'r', 30_000);
    // shipped records may be evicted again: FIFO goes on
    await waitFor(async () => (await write(A, 'src', 1000)).status === 200, { message: 'writes to resume' });
    assert.deepEqual(await writeMany(A, 30, 1001), []);
    const done = await waitCaughtUp(A, 'r', 30_000);
    assert.equal(done.counters.records_dropped_overflow, 0);
    assert.equal(done.needs_verify, false);
  },
);

test(
  'FIFO quota full of pending records, suspend: the replication suspends with the reason and FIFO goes on',
  { timeout: 60_000 },
  async () => {
    const { A } = await setup({ max_bytes: BIG_LOG, on_overflow: 'suspend' }, QUOTA);
    assert.deepEqual(await writeMany(A, 60), [], 'every write is accepted');
    assert.ok((await recordCount(A, 'src')) < 60, 'FIFO evicted old records');
    const st = await waitFor(async () => {
      const s = await replicationStatus(A, 'r');
      return s.state === 'suspended' ? s : false;
    });
    assert.match(st.state_reason ?? '', /evicted/);
    assert.equal(st.needs_verify, true);
  },
);

test(
  'past log.max_bytes, drop_oldest lets FIFO evict and marks the replication as needing verification',
  { timeout: 60_000 },
  async () => {
    const { A, B } = await setup({ max_bytes: 100_000, on_overflow: 'drop_oldest' }, 200_000);
    for (let ts = 1; ts <= 40; ts++) assert.equal((await write(A, 'src', ts)).status, 200);
    assert.ok((await recordCount(A, 'src')) < 40, 'FIFO evicted old records');
    const st = await waitFor(async () => {
      const s = await replicationStatus(A, 'r');
      return s.needs_verify ? s : false;
    });
    assert.match(st.needs_verify_reason ?? '', /evicted/);
    assert.ok(st.log.over_bound);
    await B.restart();
    const done = await waitCaughtUp(A, 'r', 30_000);
    assert.ok(done.counters.records_dropped_overflow > 0, 'evicted records are counted, not hidden');
    assert.equal(done.counters.records_written + done.counters.records_dropped_overflow, 40);
    assert.equal(done.needs_verify, true, 'the flag stays until a verification');
    // what is left at the source arrived
    const [src, dst] = await Promise.all([
      snapshotBucket(A.url, A.token, 'src'),
      snapshotBucket(B.url, B.token, 'dst'),
    ]);
    const diff = diffSnapshots(src, dst);
    assert.equal(diff.missing.length + diff.different.length, 0, formatDiff(diff));
  },
);

test(
  'past log.max_bytes, block refuses source writes with 429 until the replication catches up',
  { timeout: 60_000 },
  async () => {
    const { A, B } = await setup({ max_bytes: 100_000, on_overflow: 'block' }, 10_000_000);
    let ts = 1;
    let refused: { status: number; error: string } | undefined;
    for (; ts <= 40; ts++) {
      const r = await write(A, 'src', ts);
      if (r.status !== 200) {
        refused = r;
        break;
      }
    }
    assert.ok(refused, 'a write was refused');
    assert.equal(refused.status, 429);
    assert.match(refused.error, /replication 'r' has reached its log bound/);
    const accepted = ts - 1;
    assert.ok(accepted >= 10 && accepted <= 12, `${accepted} writes accepted before the bound`);
    assert.equal((await replicationStatus(A, 'r')).pending_records, accepted);
    await B.restart();
    await waitCaughtUp(A, 'r', 30_000);
    // the slot moves once the checkpoint is durable, a moment after the records were delivered
    await waitFor(async () => (await write(A, 'src', 100)).status === 200, {
      timeoutMs: 5000,
      message: 'writes to resume',
    });
    const done = await waitCaughtUp(A, 'r', 30_000);
    assert.equal(done.counters.records_written, accepted + 1);
    assert.equal(done.counters.records_dropped_overflow, 0);
  },
);

test(
  'past log.max_bytes, suspend suspends the replication with the reason',
  { timeout: 60_000 },
  async () => {
    const { A } = await setup({ max_bytes: 100_000, on_overflow: 'suspend' }, 200_000);
    for (let ts = 1; ts <= 40; ts++) assert.equal((await write(A, 'src', ts)).status, 200);
    const st = await waitFor(async () => {
      const s = await replicationStatus(A, 'r');
      return s.state === 'suspended' ? s : false;
    });
    assert.match(st.state_reason ?? '', /evicted/);
    assert.equal(st.needs_verify, true);
  },
);

test(
  'a consistency group: its slot protects every member, and block refuses writes to each with 429',
  { timeout: 60_000 },
  async () => {
    const [A, B] = await Promise.all([spawnFerry({ env }), spawnFerry({ env })]);
    procs.push(A, B);
    const members = ['m1', 'm2'];
    for (const m of members)
      await api(A, 'POST', `/b/${m}`, { quota_type: 'FIFO', quota_size: QUOTA, max_block_size: 40_000 });
    await api(A, 'POST', '/groups/g', { buckets: members });
    await api(A, 'POST', '/replications/rg', {
      src_group: 'g',
      dst_prefix: 'copy-',
      dst_host: B.url,
      dst_token: B.token,
      log: { max_bytes: BIG_LOG, on_overflow: 'block' },
      retry: { initial_ms: 50, max_ms: 200 },
    });
    await B.kill('SIGKILL');
    const refused: Record<string, Array<{ status: number; error: string }>> = { m1: [], m2: [] };
    for (let i = 0; i < 80; i++) {
      const m = members[i % 2]!;
      const r = await write(A, m, 1 + i);
      if (r.status !== 200) refused[m]!.push(r);
    }
    for (const m of members) {
      assert.ok(refused[m]!.length > 0, `writes to member ${m} were refused once its quota was full`);
      for (const r of refused[m]!) {
        assert.equal(r.status, 429, r.error);
        assert.match(r.error, /replication 'rg' has not shipped yet/);
      }
      const accepted = 40 - refused[m]!.length;
      assert.equal(await recordCount(A, m), accepted, `no pending record of ${m} was evicted`);
    }
    await B.restart();
    await waitCaughtUp(A, 'rg', 30_000);
    for (const m of members) {
      const diff = diffSnapshots(
        await snapshotBucket(A.url, A.token, m),
        await snapshotBucket(B.url, B.token, `copy-${m}`),
      );
      assert.equal(diff.missing.length + diff.different.length + diff.extra.length, 0, formatDiff(diff));
    }
  },
);
