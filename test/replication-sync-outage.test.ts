/**
 * Sync replication with `on_timeout: fail` between real Ferry processes (replication.md §7) while
 * the destination goes away under many concurrent sync writers: SIGKILL of the destination, and
 * separately the connection cut by a fault proxy (black-holed). Every write a client saw
 * acknowledged is on the destination byte for byte, checked while the replication is paused, so
 * that nothing shipped after the outage can hide a write that was acknowledged too early. During
 * the outage the write that times out is a 503 "outcome unknown", and every later write is
 * refused at once (well under the timeout), never hanging. Afterwards the replication is back to
 * sync by itself and the destination equals the source.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from 'undici';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication } from './helpers/ferry-api.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { assertSameBuckets } from './helpers/records.js';
import { REPLAY, seededBytes, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';

const env = { RS_SYSTEM_EVENTS_ENABLED: 'false', RS_REPLICATION_TIMEOUT: '1s' };
const procs: FerryProcess[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.destroy()));
});

async function ferry(): Promise<FerryProcess> {
  const p = await spawnFerry({ env, startTimeoutMs: 60_000 });
  procs.push(p);
  return p;
}

const TIMEOUT_MS = 3000;
const WRITERS = 24;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Answer {
  start: number;
  ms: number;
  status: number;
  error: string;
}

interface SyncView {
  effective_type: string;
  effective_type_reason: string | null;
  sync: { transitions: Record<string, number> };
  state: string;
  pending_records: number;
}

const syncStatus = async (src: FerryProcess): Promise<SyncView> =>
  (await api(src, 'GET', '/replications/r/status')) as SyncView;

/** Concurrent single-record writers of 1 KiB seeded payloads; every answer is recorded. */
class Writers {
  readonly acked = new Map<string, Buffer>();
  readonly answers: Answer[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly pool: Pool;

  constructor(
    private readonly src: FerryProcess,
    private readonly random: () => number,
  ) {
    this.pool = new Pool(src.url, { connections: WRITERS });
    for (let w = 0; w < WRITERS; w++) this.loops.push(this.loop(w));
  }

  private async loop(w: number): Promise<void> {
    for (let ts = 1; !this.stopped; ts++) {
      const body = seededBytes(this.random, 1024);
      const start = Date.now();
      const res = await this.pool.request({
        method: 'POST',
        path: `/api/v1/b/src/w${w}?ts=${ts}`,
        headers: { authorization: `Bearer ${this.src.token}`, 'content-type': 'application/octet-stream' },
        body,
        headersTimeout: 30_000,
      });
      await res.body.dump();
      const a: Answer = {
        start,
        ms: Date.now() - start,
        status: res.statusCode,
        error: String(res.headers['x-reduct-error'] ?? ''),
      };
      this.answers.push(a);
      if (a.status === 200) this.acked.set(`w${w}@${ts}`, body);
      else {
        assert.equal(a.status, 503, `w${w}@${ts}: ${a.status} ${a.error} (${REPLAY})`);
        await sleep(20); // a refused client backs off a little
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await this.pool.close();
  }
}

/** Every acknowledged record is on `dst` with the same bytes. */
async function assertAckedPresent(dst: FerryProcess, acked: Map<string, Buffer>): Promise<void> {
  const pool = new Pool(dst.url, { connections: 8 });
  const missing: string[] = [];
  try {
    const keys = [...acked.keys()];
    for (let i = 0; i < keys.length; i += 64) {
      await Promise.all(
        keys.slice(i, i + 64).map(async (key) => {
          const [entry, ts] = key.split('@') as [string, string];
          const res = await pool.request({
            method: 'GET',
            path: `/api/v1/b/dst/${entry}?ts=${ts}`,
            headers: { authorization: `Bearer ${dst.token}` },
          });
          const got = Buffer.from(await res.body.arrayBuffer());
          if (res.statusCode !== 200 || !got.equals(acked.get(key)!))
            missing.push(`${key}: ${res.statusCode}`);
        }),
      );
    }
  } finally {
    await pool.close();
  }
  assert.deepEqual(
    missing.slice(0, 10),
    [],
    `${missing.length} acknowledged writes not at the destination (${REPLAY})`,
  );
}

async function outageScenario(kind: 'sigkill' | 'proxy'): Promise<void> {
  const dst = await ferry();
  const src = await ferry();
  let proxy: FaultProxy | null = null;
  if (kind === 'proxy') proxy = await startFaultProxy({ host: '127.0.0.1', port: dst.port });
  await createReplication(src, dst, {
    ...(proxy ? { dstHost: `http://127.0.0.1:${proxy.port}` } : {}),
    settings: {
      replication_type: 'sync',
      sync: { timeout_ms: TIMEOUT_MS, on_timeout: 'fail' },
      retry: { initial_ms: 50, max_ms: 200 },
    },
  });
  const writers = new Writers(src, seededRandom(`sync-outage-${kind}`));
  try {
    await waitFor(() => writers.acked.size >= 300, {
      timeoutMs: 90_000,
      message: 'first acknowledged writes',
    });
    const cutAt = Date.now();
    if (proxy) proxy.setMode('blackhole');
    else await dst.kill('SIGKILL');
    await waitFor(async () => (await syncStatus(src)).effective_type === 'blocked', {
      timeoutMs: 3 * TIMEOUT_MS + 5000,
      message: 'effective_type blocked',
    });
    const blockedAt = Date.now();
    await sleep(2000); // writers keep trying against a blocked scope
    const st = await syncStatus(src);
    assert.equal(st.effective_type, 'blocked');
    // park the replication: what the destination holds now is what the acknowledgements promised
    await api(src, 'PATCH', '/replications/r/mode', { mode: 'paused' });
    if (proxy) proxy.setMode('pass');
    else await dst.restart();

    const during = writers.answers.filter((a) => a.start + a.ms >= cutAt);
    const unknown = during.filter(
      (a) => a.status === 503 && /outcome at the destination is unknown/.test(a.error),
    );
    const refused = writers.answers.filter((a) => a.start > blockedAt + 100 && a.status === 503);
    assert.ok(unknown.length >= 1, 'no write timed out with outcome unknown');
    assert.ok(refused.length >= 20, `only ${refused.length} writes refused while blocked`);
    for (const a of refused) assert.match(a.error, /^Writes to this scope are refused: sync replication 'r'/);
    const slowest = Math.max(...refused.map((a) => a.ms));
    const top = [...refused]
      .sort((x, y) => y.ms - x.ms)
      .slice(0, 8)
      .map((a) => `${a.start - blockedAt}+${a.ms}`);
    console.log(
      `[${kind}] slowest refusals (start after blocked + ms): ${top.join(' ')}; p50 ${[...refused].sort((x, y) => x.ms - y.ms)[refused.length >> 1]?.ms} ms`,
    );
    const ackedDuring = writers.answers.filter((a) => a.start > blockedAt + 100 && a.status === 200).length;
    assert.equal(ackedDuring, 0, 'a write was acknowledged while the destination was unreachable');
    assert.ok(
      slowest < TIMEOUT_MS / 3,
      `a refusal while blocked took ${slowest} ms (timeout ${TIMEOUT_MS} ms)`,
    );
    const hung = during.filter((a) => a.ms > TIMEOUT_MS + 1500);
    assert.deepEqual(hung, [], 'a write hung past its timeout');
    console.log(
      `[${kind}] acked ${writers.acked.size}, timed out ${unknown.length}, refused ${refused.length} (slowest ${slowest} ms)`,
    );

    await assertAckedPresent(dst, writers.acked);

    await api(src, 'PATCH', '/replications/r/mode', { mode: 'enabled' });
    await waitFor(async () => (await syncStatus(src)).effective_type === 'sync', {
      timeoutMs: 90_000,
      message: 'back to sync',
    });
    const before = writers.acked.size;
    await waitFor(() => writers.acked.size >= before + 100, {
      timeoutMs: 90_000,
      message: 'writes after recovery',
    });
  } finally {
    await writers.stop();
  }
  await assertAckedPresent(dst, writers.acked);
  await waitFor(
    async () => {
      const s = await syncStatus(src);
      return s.state === 'idle' && s.pending_records === 0;
    },
    { timeoutMs: 90_000, message: 'caught up' },
  );
  // the writes whose outcome was unknown arrived too: the destination equals the source
  await assertSameBuckets(src, 'src', dst, 'dst');
  const st = await syncStatus(src);
  // Every block was followed by a return to sync, and the replication ends in sync. (On a loaded
  // machine the first shipments after the restart can outlast the timeout once more: a second
  // block is then correct behaviour, so the count is not pinned to one.)
  assert.ok(st.sync.transitions.to_blocked >= 1, 'blocked at least once');
  assert.equal(st.sync.transitions.to_sync, st.sync.transitions.to_blocked);
  assert.equal(st.effective_type, 'sync');
  await proxy?.close();
}

test(
  'sync fail: SIGKILL of the destination under concurrent sync writers loses no acknowledged write',
  { timeout: 400_000 },
  () => outageScenario('sigkill'),
);

test(
  'sync fail: the connection cut by a fault proxy under concurrent sync writers loses no acknowledged write',
  { timeout: 400_000 },
  () => outageScenario('proxy'),
);
