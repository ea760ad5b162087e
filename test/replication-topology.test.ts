/**
 * Bidirectional A↔B and a chain B→C between three real Ferry processes (replication.md §4 loop
 * prevention): writes and label updates on both sides of the pair, no echoes (loop counters), every
 * record exactly once on every node, label updates converge and then stop moving (no ping-pong).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication, replicationStatus } from './helpers/ferry-api.js';
import { assertSameSnapshots, snapshotBucket } from './helpers/records.js';
import { waitFor } from './helpers/wait.js';

async function write(
  node: FerryProcess,
  entry: string,
  ts: number,
  labels: Record<string, string>,
): Promise<void> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${node.token}`,
    'content-type': 'text/plain',
  };
  for (const [k, v] of Object.entries(labels)) headers[`x-reduct-label-${k}`] = v;
  const res = await fetch(`${node.url}/api/v1/b/x/${entry}?ts=${ts}`, {
    method: 'POST',
    headers,
    body: randomBytes(300 + (ts % 500)),
  });
  await res.text();
  assert.equal(res.status, 200, res.headers.get('x-reduct-error') ?? '');
}

async function updateLabels(
  node: FerryProcess,
  entry: string,
  ts: number,
  labels: Record<string, string>,
): Promise<void> {
  const headers: Record<string, string> = { authorization: `Bearer ${node.token}` };
  for (const [k, v] of Object.entries(labels)) headers[`x-reduct-label-${k}`] = v;
  const res = await fetch(`${node.url}/api/v1/b/x/${entry}?ts=${ts}`, { method: 'PATCH', headers });
  await res.text();
  assert.equal(res.status, 200, res.headers.get('x-reduct-error') ?? '');
}

/** Waits until every listed replication is idle with nothing pending; fails at once if one is suspended. */
async function settled(pairs: Array<[FerryProcess, string]>): Promise<void> {
  const outcome = await waitFor(
    async () => {
      for (const [node, name] of pairs) {
        const st = await replicationStatus(node, name);
        if (st.state === 'suspended') return `'${name}' suspended: ${st.state_reason}`;
        if (st.pending_records !== 0 || st.state !== 'idle' || st.cursor_lsn !== st.log_last_lsn)
          return false;
      }
      return 'settled';
    },
    { timeoutMs: 30_000, intervalMs: 50, message: 'replications to settle' },
  );
  assert.equal(outcome, 'settled');
}

test(
  'A↔B with writes and label updates on both sides, plus B→C: no echoes, exactly once, converged',
  { timeout: 100_000 },
  async () => {
    const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
    const [A, B, C] = await Promise.all([spawnFerry({ env }), spawnFerry({ env }), spawnFerry({ env })]);
    try {
      await api(A, 'POST', '/b/x', {});
      await api(B, 'POST', '/b/x', {});
      const repl = (src: FerryProcess, name: string, dst: FerryProcess, dstBucket = 'x') =>
        createReplication(src, dst, {
          name,
          srcBucket: 'x',
          dstBucket,
          createSrcBucket: false,
          settings: { batch: { max_delay_ms: 5 } },
        });
      await repl(A, 'ab', B);
      await repl(B, 'ba', A);
      await repl(B, 'bc', C, 'y');
      const all: Array<[FerryProcess, string]> = [
        [A, 'ab'],
        [B, 'ba'],
        [B, 'bc'],
      ];

      // concurrent writes on both sides: own entries and one shared entry (even ts on A, odd on B)
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 150; i++) {
        jobs.push(write(A, 'from-a', 1000 + i, { side: 'a', n: String(i) }));
        jobs.push(write(B, 'from-b', 1000 + i, { side: 'b', n: String(i) }));
        jobs.push(write(A, 'shared', 2 * i, { side: 'a' }));
        jobs.push(write(B, 'shared', 2 * i + 1, { side: 'b' }));
        if (jobs.length >= 16) await Promise.all(jobs.splice(0));
      }
      await Promise.all(jobs);
      await settled(all);

      // label updates on both sides, also on records that came from the other side
      for (let i = 0; i < 20; i++) {
        await updateLabels(A, 'from-b', 1000 + i, { seen_by: 'a', n: `a${i}` });
        await updateLabels(B, 'from-a', 1000 + i, { seen_by: 'b' });
        await updateLabels(B, 'shared', 2 * i, { touched: 'b' });
        await updateLabels(A, 'shared', 2 * i + 1, { touched: 'a', side: '' });
      }
      await settled(all);

      // nothing keeps moving: no update or write bounces between A and B
      const lsnA = (await replicationStatus(A, 'ab')).log_last_lsn;
      const lsnB = (await replicationStatus(B, 'ba')).log_last_lsn;
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await replicationStatus(A, 'ab')).log_last_lsn, lsnA, 'A logs no further changes');
      assert.equal((await replicationStatus(B, 'ba')).log_last_lsn, lsnB, 'B logs no further changes');

      const [sa, sb, sc] = await Promise.all([
        snapshotBucket(A.url, A.token, 'x'),
        snapshotBucket(B.url, B.token, 'x'),
        snapshotBucket(C.url, C.token, 'y'),
      ]);
      assert.equal(sa.size, 600);
      assertSameSnapshots(sa, sb, 'A vs B');
      assertSameSnapshots(sb, sc, 'B vs C');
      // the label updates converged to the values set last, on every node
      assert.deepEqual(sc.get('from-b@1000')?.labels, { side: 'b', n: 'a0', seen_by: 'a' });
      assert.deepEqual(sc.get('shared@1')?.labels, { touched: 'a' });
      assert.deepEqual(sa.get('from-a@1005')?.labels, { side: 'a', n: '5', seen_by: 'b' });

      // echoes were stopped by loop prevention, each record written once per node
      const ab = await replicationStatus(A, 'ab');
      const ba = await replicationStatus(B, 'ba');
      const bc = await replicationStatus(B, 'bc');
      assert.equal(
        ab.counters.records_loop_skipped! >= 300,
        true,
        `A→B loop skips ${ab.counters.records_loop_skipped}`,
      );
      assert.equal(
        ba.counters.records_loop_skipped! >= 300,
        true,
        `B→A loop skips ${ba.counters.records_loop_skipped}`,
      );
      assert.equal(ab.counters.records_written, 300);
      assert.equal(ba.counters.records_written, 300);
      assert.equal(bc.counters.records_written, 600);
      assert.equal(ab.counters.records_already_present, 0);
      assert.equal(ba.counters.records_already_present, 0);
      assert.equal(bc.counters.records_loop_skipped, 0);
    } finally {
      await Promise.all([A.destroy(), B.destroy(), C.destroy()]);
    }
  },
);
