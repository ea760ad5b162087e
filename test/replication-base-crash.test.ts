/**
 * Base seeding across a crash (issue 11 item 5): the source is SIGKILLed while it verifies its
 * `base` claim against a remote Ferry (behind a proxy that adds latency, so that the check lasts
 * long enough to be interrupted). After the restart the base is checked again from the start and
 * repaired; the writes acknowledged while the check ran are delivered, nothing before `up_to` is
 * shipped by the replication, and both buckets end up equal. While the check runs, `active_tasks`
 * lists the verification (`purpose: "base"`) and the replication with its `base`. A local
 * destination's check is too quick to be sure to hit: its source is killed at a seeded moment after
 * the creation, and whatever it cut, the base settles and both buckets end up equal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringifyJson } from '../src/protocol/json.js';
import type { BaseStatus } from '../src/protocol/replication-status.js';
import {
  api,
  call,
  createReplication,
  replicationStatus,
  waitCaughtUp,
  type ApiNode,
} from './helpers/ferry-api.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { spawnFerry } from './helpers/ferry-process.js';
import { assertSameBuckets } from './helpers/records.js';
import { waitFor } from './helpers/wait.js';
import { REPLAY, seededRandom } from './helpers/seed.js';

const UP_TO = 1_000_000n;
const BEFORE = 400;
const AFTER = 30;

/** Writes `n` records of 16 bytes to `entry`, 100 per v1 batch, from `from` on every 100 µs. */
async function writeBatch(
  node: ApiNode,
  bucket: string,
  entry: string,
  from: bigint,
  n: number,
  skip?: bigint,
): Promise<void> {
  for (let i = 0; i < n; i += 100) {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    const parts: Buffer[] = [];
    for (let j = i; j < Math.min(n, i + 100); j++) {
      const ts = from + BigInt(j) * 100n;
      if (ts === skip) continue;
      const payload = Buffer.from(`${entry}${ts}`.padEnd(16, '.'));
      headers[`x-reduct-time-${ts}`] = `${payload.length},text/plain,k=${j % 4}`;
      parts.push(payload);
    }
    const r = await call(node, 'POST', `/b/${bucket}/${entry}/batch`, Buffer.concat(parts), { headers });
    assert.equal(r.status, 200, `batch write: ${r.status} ${r.error}`);
  }
}

/**
 * The base in `src` and `dst` (50-record blocks, entries `a` and `b`), one record of it missing
 * from `dst`'s entry `missingIn`, then records after `up_to` in `src`.
 */
async function seedBase(src: ApiNode, dst: ApiNode, missingIn: string, missing: bigint): Promise<void> {
  await api(src, 'POST', '/b/src', { max_block_records: 50 });
  await api(dst, 'POST', '/b/dst', { max_block_records: 50 });
  for (const e of ['a', 'b']) {
    await writeBatch(src, 'src', e, 100n, BEFORE);
    await writeBatch(dst, 'dst', e, 100n, BEFORE, e === missingIn ? missing : undefined);
    await writeBatch(src, 'src', e, UP_TO, AFTER);
  }
}

const baseOf = async (node: ApiNode): Promise<BaseStatus> =>
  ((await replicationStatus(node, 'r')) as unknown as { base: BaseStatus }).base;

test(
  'SIGKILL of the source while it verifies its base: checked again, repaired, nothing lost',
  { timeout: 180_000 },
  async () => {
    const A = await spawnFerry({ startTimeoutMs: 60_000 });
    const B = await spawnFerry({ startTimeoutMs: 60_000 });
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: B.port });
    try {
      const missing = 100n + 137n * 100n;
      await seedBase(A, B, 'a', missing);
      // every round trip of the check takes at least 2 × 150 ms
      proxy.setLatency(150);
      await createReplication(A, B, {
        createSrcBucket: false,
        dstHost: `http://127.0.0.1:${proxy.port}`,
        settings: { base: { up_to: UP_TO, verify: 'digest', on_mismatch: 'repair' } },
      });
      // writes acknowledged while the base is checked
      await writeBatch(A, 'src', 'a', 50_000n, 5);
      await writeBatch(A, 'src', 'c', 2_000_000n, 5);
      type Tasks = { tasks: Array<{ type: string; name: string; purpose?: string; base?: BaseStatus }> };
      // the base's state is saved (an fsync) before its check starts and is listed: under load that
      // takes a moment, so the check is waited for, not expected in the first snapshot
      let tasks: Tasks = { tasks: [] };
      await waitFor(
        async () => {
          tasks = (await api(A, 'GET', '/active_tasks')) as Tasks;
          return tasks.tasks.some((t) => t.type === 'verification');
        },
        { timeoutMs: 30_000, message: 'the base check listed in active_tasks' },
      );
      const before = await baseOf(A);
      assert.ok(['pending', 'verifying', 'repairing'].includes(before.state), stringifyJson(before));
      const repl = tasks.tasks.find((t) => t.type === 'replication');
      assert.ok(repl?.base, stringifyJson(tasks));
      const verification = tasks.tasks.find((t) => t.type === 'verification');
      assert.equal(verification?.purpose, 'base', stringifyJson(tasks));
      assert.equal((await replicationStatus(A, 'r')).counters.records_written ?? 0, 0);
      await A.kill('SIGKILL');
      await A.restart();

      const base = await waitFor(
        async () => {
          const b = await baseOf(A);
          return b.state === 'repaired' || b.state === 'mismatch' || b.state === 'clean' ? b : false;
        },
        { timeoutMs: 90_000, message: 'base settled after the restart' },
      );
      assert.ok(base.attempts >= 2, `checked again after the restart: ${stringifyJson(base)}`);
      // a kill after the repair wrote the record leaves a base the next check finds clean
      assert.ok(['repaired', 'clean'].includes(base.state), stringifyJson(base));
      if (base.state === 'repaired') assert.deepEqual(base.repair, { written: 1, relabelled: 0, failed: 0 });
      proxy.setLatency(0);
      const st = await waitCaughtUp(A, 'r', 90_000);
      // the replication shipped what is after up_to and the live writes, nothing of the base
      assert.equal(
        (st.counters.records_written ?? 0) + (st.counters.records_already_present ?? 0),
        2 * AFTER + 10,
        stringifyJson(st.counters),
      );
      await assertSameBuckets(A, 'src', B, 'dst');
    } catch (e) {
      process.stderr.write(`source output:\n${A.output().slice(-4000)}\n`);
      throw e;
    } finally {
      await proxy.close();
      await Promise.allSettled([A.destroy(), B.destroy()]);
    }
  },
);

test(
  'SIGKILL of the source at a seeded moment of its base check to a local destination: settled safely after the restart',
  { timeout: 180_000 },
  async () => {
    const A = await spawnFerry({ startTimeoutMs: 60_000 });
    const delay = Math.floor(seededRandom('base crash local')() * 300);
    try {
      const missing = 100n + 211n * 100n;
      await seedBase(A, A, 'b', missing);
      await createReplication(A, A, {
        createSrcBucket: false,
        dstHost: '',
        settings: { base: { up_to: UP_TO, verify: 'digest', on_mismatch: 'repair' } },
      });
      // its outcome is unknown to a writer the kill cuts off
      const live = writeBatch(A, 'src', 'c', 2_000_000n, 5).catch(() => undefined);
      await new Promise((r) => setTimeout(r, delay));
      await A.kill('SIGKILL');
      await live;
      await A.restart();
      const base = await waitFor(
        async () => {
          const b = await baseOf(A);
          return ['repaired', 'mismatch', 'clean'].includes(b.state) ? b : false;
        },
        { timeoutMs: 90_000, message: 'base settled after the restart' },
      );
      process.stdout.write(
        `killed ${delay} ms after the creation; base after the restart: ${stringifyJson(base)} (${REPLAY})\n`,
      );
      assert.ok(['repaired', 'clean'].includes(base.state), `${stringifyJson(base)} (${REPLAY})`);
      const st = await waitCaughtUp(A, 'r', 90_000);
      await assertSameBuckets(A, 'src', A, 'dst');
      // nothing of the base was shipped by the replication (the repair wrote the missing record)
      assert.ok((st.counters.records_written ?? 0) <= 2 * AFTER + 5, stringifyJson(st.counters));
    } catch (e) {
      process.stderr.write(`output:\n${A.output().slice(-4000)}\n`);
      throw e;
    } finally {
      await A.destroy();
    }
  },
);
