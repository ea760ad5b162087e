/**
 * FIFO quota pressure on a replication source while the destination is down (replication.md §3
 * `log`, §11): pending records are protected from eviction within `log.max_bytes`; past it
 * `on_overflow` decides visibly — `drop_oldest` lets FIFO evict and marks the replication as needing
 * verification with a reason, `block` refuses source writes with 503, `suspend` suspends. Real
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

test(
  'within log.max_bytes pending records are not evicted by FIFO: writes are refused instead',
  { timeout: 60_000 },
  async () => {
    const { A, B } = await setup({ max_bytes: 10_000_000, on_overflow: 'drop_oldest' }, 200_000);
    let ts = 1;
    let refused: { status: number; error: string } | undefined;
    for (; ts <= 40 && !refused; ts++) {
      const r = await write(A, 'src', ts);
      if (r.status !== 200) refused = r;
    }
    // the quota is full of pending records: FIFO may not evict them, the write fails loudly
    assert.ok(refused, 'a write was refused');
    assert.equal(refused.status, 500, refused.error);
    assert.match(refused.error, /quota/i);
    const accepted = ts - 2;
    assert.ok(accepted >= 15, `${accepted} records accepted`);
    assert.equal(await recordCount(A, 'src'), accepted, 'no pending record was evicted');
    const st = await replicationStatus(A, 'r');
    assert.equal(st.pending_records, accepted);
    assert.equal(st.needs_verify, false);
    // once delivered, the records may be evicted again and writes flow
    await B.restart();
    await waitCaughtUp(A, 'r', 30_000);
    for (let i = 0; i < 10; i++) assert.equal((await write(A, 'src', ts++)).status, 200);
    const done = await waitCaughtUp(A, 'r', 30_000);
    assert.equal(done.counters.records_written, accepted + 10);
    assert.equal(done.counters.records_dropped_overflow, 0);
    assert.equal(done.needs_verify, false);
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
  'past log.max_bytes, block refuses source writes with 503 until the replication catches up',
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
    assert.equal(refused.status, 503);
    assert.match(refused.error, /log bound/);
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
