/**
 * Replication under network and destination faults, between real Ferry processes
 * (replication.md §1, §3 `retry` / `on_write_failure` / `compression`, §9): connections reset in
 * the middle of a batch and stalled through a fault proxy, a destination that is down while a
 * backlog accumulates, `Retry-After` from a destination, zstd and gzip transfer, and permanent
 * refusals that are either skipped into the failure log or stop the replication visibly.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication, replicationStatus, waitCaughtUp } from './helpers/ferry-api.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { assertSameBuckets } from './helpers/records.js';
import { waitFor } from './helpers/wait.js';

const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
const procs: FerryProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.destroy()));
});

async function ferry(): Promise<FerryProcess> {
  const p = await spawnFerry({ env });
  procs.push(p);
  return p;
}

/** Writes `count` records into `entry` of `bucket` as v1 batches of `perBatch`. */
async function writeRecords(
  node: FerryProcess,
  bucket: string,
  entry: string,
  firstTs: number,
  count: number,
  size: (i: number) => number,
  perBatch = 100,
  payload: (n: number) => Buffer = (n) => randomBytes(n),
): Promise<void> {
  const pool = new Pool(node.url, { connections: 2 });
  try {
    const jobs: Promise<void>[] = [];
    for (let start = 0; start < count; start += perBatch) {
      const n = Math.min(perBatch, count - start);
      const bodies = Array.from({ length: n }, (_, k) => payload(size(start + k)));
      const headers: Record<string, string> = {
        authorization: `Bearer ${node.token}`,
        'content-type': 'application/octet-stream',
      };
      bodies.forEach(
        (b, k) => (headers[`x-reduct-time-${firstTs + start + k}`] = `${b.length},text/plain,i=${start + k}`),
      );
      jobs.push(
        pool
          .request({
            method: 'POST',
            path: `/api/v1/b/${bucket}/${entry}/batch`,
            headers,
            body: Buffer.concat(bodies),
          })
          .then(async (res) => {
            await res.body.dump();
            assert.equal(res.statusCode, 200, `batch write: ${String(res.headers['x-reduct-error'])}`);
            assert.equal(Object.keys(res.headers).filter((h) => h.startsWith('x-reduct-error-')).length, 0);
          }),
      );
      if (jobs.length >= 4) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
  } finally {
    await pool.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test(
  'connections reset mid-batch, stalled and refused through a fault proxy: everything arrives exactly once',
  { timeout: 100_000 },
  async () => {
    const [A, B] = await Promise.all([ferry(), ferry()]);
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: B.port });
    try {
      await createReplication(A, B, {
        dstHost: `http://127.0.0.1:${proxy.port}`,
        settings: { batch: { max_records: 100 }, retry: { initial_ms: 50, max_ms: 300 } },
      });
      // 1. every connection is reset after 30 kB: batches break in the middle
      proxy.resetAfterBytes(30_000);
      await writeRecords(A, 'src', 'a', 1_000, 600, (i) => 1000 + (i % 7) * 700);
      await waitFor(() => proxy.stats().resets >= 3, { timeoutMs: 20_000, message: 'mid-batch resets' });
      const broken = await replicationStatus(A, 'r');
      assert.ok(broken.pending_records > 0, 'records stay pending while batches break');
      proxy.resetAfterBytes(null);
      const healed = await waitCaughtUp(A, 'r');
      assert.ok(healed.retries >= 1, `retries are counted (${healed.retries})`);
      assert.ok(
        healed.last_error !== null && healed.last_error.status < 0,
        'the connection error is visible',
      );

      // 2. stalled connections: nothing moves, nothing is lost; then traffic resumes
      proxy.setMode('stall');
      await writeRecords(A, 'src', 'b', 10_000, 300, () => 2048);
      await sleep(800);
      const stalled = await replicationStatus(A, 'r');
      assert.ok(stalled.pending_records > 0, 'pending while stalled');
      proxy.setMode('pass');
      await waitCaughtUp(A, 'r');

      // 3. connections refused with resets for a while
      proxy.setMode('reset');
      await writeRecords(A, 'src', 'c', 20_000, 300, () => 512);
      await waitFor(async () => (await replicationStatus(A, 'r')).state === 'retrying', {
        timeoutMs: 20_000,
        message: 'retrying state',
      });
      proxy.setMode('pass');
      const done = await waitCaughtUp(A, 'r');
      const n = (await assertSameBuckets(A, 'src', B, 'dst')).a.size;
      assert.equal(n, 1200);
      const diag = (
        (await api(A, 'GET', '/replications/r')) as {
          diagnostics: { hourly: { errored: number; errors: Record<string, unknown> } };
        }
      ).diagnostics.hourly;
      assert.ok(
        diag.errored > 0 && Object.keys(diag.errors).some((k) => Number(k) < 0),
        'client-side errors in the diagnostics',
      );
      console.log(
        `fault proxy: resets ${proxy.stats().resets}, retries ${done.retries}, already present ${done.counters.records_already_present}`,
      );
    } finally {
      await proxy.close();
    }
  },
);

test(
  'destination down while a backlog accumulates: retrying is visible, then the backlog drains',
  { timeout: 100_000 },
  async () => {
    const [A, B] = await Promise.all([ferry(), ferry()]);
    await createReplication(A, B, { settings: { retry: { initial_ms: 100, max_ms: 400 } } });
    await writeRecords(A, 'src', 'warm', 1, 10, () => 100);
    await waitCaughtUp(A, 'r');
    await B.kill('SIGKILL');
    const total = 30_000;
    await writeRecords(
      A,
      'src',
      'e',
      1_000_000,
      total,
      () => 1024,
      500,
      () => Buffer.alloc(1024, 0x61),
    );
    const down = await waitFor(
      async () => {
        const st = await replicationStatus(A, 'r');
        return st.state === 'retrying' && st.pending_records === total ? st : false;
      },
      { timeoutMs: 20_000, message: 'state retrying with the whole backlog pending' },
    );
    assert.ok(down.pending_bytes >= total * 1024);
    assert.ok(down.last_error !== null && down.last_error.message.length > 0);
    assert.ok(down.next_retry_at !== null && !Number.isNaN(Date.parse(down.next_retry_at)));
    const info = (
      (await api(A, 'GET', '/replications/r')) as { info: { pending_records: number; is_active: boolean } }
    ).info;
    assert.equal(Number(info.pending_records), total);
    assert.equal(info.is_active, false);

    await B.restart();
    const t0 = performance.now();
    await waitCaughtUp(A, 'r', 90_000);
    const seconds = (performance.now() - t0) / 1000;
    assert.equal((await assertSameBuckets(A, 'src', B, 'dst')).a.size, total + 10);
    console.log(
      `catch-up after the outage: ${total} records in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} records/s (including the retry delay)`,
    );
  },
);

/** A batch write seen by the fake destination: when it arrived, when and how it was answered. */
interface FakePost {
  start: number;
  answeredAt: number;
  status: number;
  retryAfterMs?: number;
}

/** A fake ReductStore-like destination that answers batch writes from a script. */
async function fakeDestination(answers: Array<{ status: number; retryAfter?: string }>): Promise<{
  url: string;
  posts: FakePost[];
  server: Server;
}> {
  const posts: FakePost[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const start = performance.now();
    req.resume();
    req.on('end', () => {
      res.setHeader('x-reduct-api', '1.21');
      if (req.method === 'POST' && req.url?.includes('/batch')) {
        const a = answers.shift() ?? { status: 200 };
        if (a.retryAfter) res.setHeader('retry-after', a.retryAfter);
        if (a.status !== 200) res.setHeader('x-reduct-error', 'busy');
        res.statusCode = a.status;
        posts.push({
          start,
          answeredAt: performance.now(),
          status: a.status,
          ...(a.retryAfter ? { retryAfterMs: Number(a.retryAfter) * 1000 } : {}),
        });
      } else res.statusCode = 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { url: `http://127.0.0.1:${port}`, posts, server };
}

test('Retry-After on 503 and 429 from the destination is honoured', { timeout: 60_000 }, async () => {
  const A = await ferry();
  const fake = await fakeDestination([
    { status: 503, retryAfter: '2' },
    { status: 429, retryAfter: '1' },
  ]);
  try {
    // the fake destination takes no token
    await createReplication(
      A,
      { url: fake.url, token: '' },
      // one batch in flight: a batch sent before a refusal reached the engine (it may arrive just
      // after the refusal was answered, on a loaded machine) cannot pass for a retry
      { settings: { retry: { initial_ms: 20, max_ms: 40 }, batch: { max_in_flight: 1 } } },
    );
    await writeRecords(A, 'src', 'e', 1, 5, () => 10);
    await waitFor(() => fake.posts.length >= 3, { timeoutMs: 20_000, message: 'three batch attempts' });
    // No batch is sent after a refusal sooner than that refusal asked (the configured backoff alone
    // would retry after at most 40 ms).
    const refusals = fake.posts.filter((p) => p.retryAfterMs !== undefined);
    assert.deepEqual(
      refusals.map((p) => p.status),
      [503, 429],
    );
    for (const r of refusals) {
      const later = fake.posts.filter((p) => p.start > r.answeredAt);
      assert.ok(later.length > 0, `a batch was sent again after the ${r.status}`);
      const wait = Math.min(...later.map((p) => p.start)) - r.answeredAt;
      assert.ok(
        wait >= r.retryAfterMs! - 100,
        `retry after ${r.status} with Retry-After ${r.retryAfterMs} ms came ${Math.round(wait)} ms later`,
      );
    }
    const st = await waitCaughtUp(A, 'r');
    assert.equal(st.counters.records_written, 5);
    assert.ok(st.retries >= 2);
  } finally {
    fake.server.close();
  }
});

test(
  'zstd and gzip transfer between two Ferry instances: identical records, compressed on the wire',
  { timeout: 60_000 },
  async () => {
    const [A, B] = await Promise.all([ferry(), ferry()]);
    const proxies = await Promise.all([
      startFaultProxy({ host: '127.0.0.1', port: B.port }),
      startFaultProxy({ host: '127.0.0.1', port: B.port }),
    ]);
    try {
      for (const [i, compression] of (['zstd', 'gzip'] as const).entries()) {
        await createReplication(A, B, {
          name: compression,
          dstBucket: `dst-${compression}`,
          dstHost: `http://127.0.0.1:${proxies[i]!.port}`,
          createSrcBucket: i === 0,
          settings: { compression },
        });
      }
      const text = (n: number): Buffer =>
        Buffer.from('sensor reading 42.0; '.repeat(Math.ceil(n / 21)).slice(0, n));
      // compressible records, and a record larger than one zstd frame
      await writeRecords(A, 'src', 'e', 1, 400, (i) => (i === 7 ? 3 * 1024 * 1024 : 2000 + i), 50, text);
      await writeRecords(A, 'src', 'noise', 1, 50, () => 5000);
      const raw = 399 * 2000 + (399 * 400) / 2 + 3 * 1024 * 1024 + 50 * 5000;
      for (const [i, compression] of (['zstd', 'gzip'] as const).entries()) {
        await waitCaughtUp(A, compression);
        assert.equal((await assertSameBuckets(A, 'src', B, `dst-${compression}`)).a.size, 450);
        const up = proxies[i]!.stats().bytesUp;
        assert.ok(up < raw / 2, `${compression}: ${up} bytes on the wire for ${raw} payload bytes`);
      }
    } finally {
      await Promise.all(proxies.map((p) => p.close()));
    }
  },
);

test(
  'a record the destination refuses permanently: skip writes the failure log, stop suspends with the reason',
  { timeout: 60_000 },
  async () => {
    const [A, B] = await Promise.all([ferry(), ferry()]);
    await api(B, 'POST', '/b/dst', {});
    // the destination already holds a different record at ts 5: a real conflict
    await writeRecords(B, 'dst', 'e', 5, 1, () => 33);
    for (const [name, policy] of [
      ['skip', 'skip'],
      ['stop', 'stop'],
    ] as const) {
      await createReplication(A, B, {
        name,
        createSrcBucket: name === 'skip',
        settings: { on_write_failure: policy, mode: 'paused' },
      });
    }
    await writeRecords(A, 'src', 'e', 1, 10, () => 64);
    await api(A, 'PATCH', '/replications/skip/mode', { mode: 'enabled' });
    const skipped = await waitCaughtUp(A, 'skip');
    assert.equal(skipped.counters.records_failed, 1);
    assert.equal(skipped.counters.records_written, 9);
    const failures = (await api(A, 'GET', '/replications/skip/failures')) as {
      total: number;
      failures: Array<{ entry: string; ts: number | string; status: number; message: string }>;
    };
    assert.equal(Number(failures.total), 1);
    assert.equal(failures.failures[0]!.entry, 'e');
    assert.equal(String(failures.failures[0]!.ts), '5');
    assert.equal(failures.failures[0]!.status, 409);

    await api(A, 'PATCH', '/replications/stop/mode', { mode: 'enabled' });
    const stopped = await waitFor(
      async () => {
        const st = await replicationStatus(A, 'stop');
        return st.state === 'suspended' ? st : false;
      },
      { timeoutMs: 20_000, message: 'suspension' },
    );
    assert.match(stopped.state_reason ?? '', /409/);
    assert.ok(stopped.pending_records >= 1, 'the refused record stays pending');
    // the suspension survives a restart of the source
    await A.restart();
    const again = await replicationStatus(A, 'stop');
    assert.equal(again.state, 'suspended');
    assert.match(again.state_reason ?? '', /409/);
  },
);
