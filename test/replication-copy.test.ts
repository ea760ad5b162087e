/**
 * Initial copies at scale between real Ferry processes (replication.md §6, issue 9 "Tests"): 100,000
 * existing records (0 B to 1 MiB, five entries, labels) are copied by a one-shot replication
 * (`continuous: false, since: 0`) and by a continuous one with `since: 0`, while a client keeps
 * writing and the source and the destination are SIGKILLed during the copies. Afterwards:
 * - the one-shot's destination holds exactly what existed when it was created (the writes that
 *   arrived later are not shipped), and `completed` is reached and stays, across a restart too;
 * - the continuous destination holds exactly what the source holds (copy + live writes);
 * - polled progress never went down and ended at 100 %.
 * Both target kinds run at this scale, one run type each: the one-shot goes to a remote target
 * (A → B), the since copy to a local one (inside A). The other two pairings (a local one-shot, a
 * remote since copy) run against both kinds, with restarts, in replication-runs and copy-scope;
 * doing all four here too doubled the test's cost for no path that those leave untested. Kills land
 * at seeded points of the copies: A twice, B once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication } from './helpers/ferry-api.js';
import { stringifyJson } from '../src/protocol/json.js';
import { assertSameSnapshots, snapshotBucket, type BucketSnapshot } from './helpers/records.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { copyStatus, ProgressWatch, waitCopyState, type CopyStatus } from './helpers/copy-status.js';
import {
  expectedSnapshot,
  LiveWriter,
  planRecords,
  PLAN_STEP,
  writePlanned,
  type PlannedRecord,
} from './helpers/copy-workload.js';

const RECORDS = 100_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sum of `record_count` over the entries of a bucket, as its owner reports it. */
async function recordCount(node: FerryProcess, bucket: string): Promise<number> {
  // once more on a keep-alive socket the server closed while the test was busy comparing
  const get = (): Promise<unknown> => api(node, 'GET', `/b/${bucket}`);
  const info = (await get().catch((err: Error & { code?: string }) => {
    if (err.code !== 'UND_ERR_SOCKET') throw err;
    return get();
  })) as { entries: Array<{ record_count: number }> };
  return info.entries.reduce((s, e) => s + Number(e.record_count), 0);
}

/** Every key of `snap` must also be counted by the bucket's own entry list. */
async function assertCounted(
  node: FerryProcess,
  bucket: string,
  snap: BucketSnapshot,
  what: string,
): Promise<void> {
  assert.equal(
    await recordCount(node, bucket),
    snap.size,
    `${what}: record_count vs records served (${REPLAY})`,
  );
}

function lastOf(planned: PlannedRecord[]): bigint {
  return planned.reduce((m, r) => (r.ts > m ? r.ts : m), 0n) + PLAN_STEP;
}

/** The two copies: a remote one-shot and a local since copy. */
interface Copy {
  name: string;
  kind: 'local' | 'remote';
  continuous: boolean;
  /** Holder of the destination bucket (A itself for the local kind). */
  dst: FerryProcess;
  watch?: ProgressWatch;
}

test(
  `one-shot and since copies of ${RECORDS.toLocaleString('en')} records to local and remote targets with SIGKILLs of either side and writes throughout`,
  {
    timeout: 900_000,
  },
  async () => {
    const started = Date.now();
    // recovery after a SIGKILL replays the log: generous start timeouts on a loaded machine
    const opts = { env: { RS_SYSTEM_EVENTS_ENABLED: 'false' }, startTimeoutMs: 60_000 };
    const [A, B] = await Promise.all([spawnFerry(opts), spawnFerry(opts)]);
    const seedName = 'replication-copy';
    const schedule = seededRandom(`${seedName}/kills`);
    const plan = planRecords(seededRandom(`${seedName}/plan`), { count: RECORDS });
    const writer = new LiveWriter(A, 'src', seededRandom(`${seedName}/writer`), lastOf(plan));
    const copies: Copy[] = [
      { name: 'once-remote', kind: 'remote', continuous: false, dst: B },
      { name: 'cont-local', kind: 'local', continuous: true, dst: A },
    ];
    const watches: ProgressWatch[] = [];
    const timings: string[] = [];
    const mark = (what: string): void => {
      timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
      console.log(`[copy] ${timings.at(-1)}`);
    };
    const byName = (name: string): Copy => copies.find((c) => c.name === name)!;
    try {
      await api(A, 'POST', '/b/src', {});
      await writePlanned(A, 'src', plan);
      mark('written');
      const common = {
        since: 0,
        // small batches: the copy takes long enough for the kills to land in it
        batch: { max_records: 500, max_delay_ms: 5 },
        retry: { initial_ms: 50, max_ms: 400 },
      };
      for (const c of copies) {
        await createReplication(A, c.dst, {
          name: c.name,
          dstBucket: c.name,
          createSrcBucket: false,
          ...(c.kind === 'local' ? { dstHost: '' } : {}),
          settings: { ...common, continuous: c.continuous },
        });
      }
      writer.start();
      for (const c of copies) {
        c.watch = new ProgressWatch(() => A, c.name).start();
        watches.push(c.watch);
      }

      // Kills at seeded points of the copies' progress: the source, the remote destination, the source again.
      const victims: Array<{ who: string; node: FerryProcess; watch: ProgressWatch; at: number }> = [
        { who: 'A', node: A, watch: byName('once-remote').watch!, at: 5 + schedule() * 20 },
        { who: 'B', node: B, watch: byName('once-remote').watch!, at: 30 + schedule() * 20 },
        { who: 'A', node: A, watch: byName('cont-local').watch!, at: 40 + schedule() * 30 },
      ];
      const midCopy: string[] = [];
      const kills: string[] = [];
      for (const v of victims) {
        const deadline = Date.now() + 300_000;
        while ((v.watch.last()?.progress.percent ?? 0) < v.at && v.watch.last()?.state !== 'completed') {
          if (Date.now() > deadline)
            throw new Error(`progress did not reach ${v.at.toFixed(0)} % (${REPLAY})`);
          await sleep(10);
        }
        const seen = v.watch.last();
        const percent = seen?.progress.percent ?? 0;
        kills.push(`${v.who} at ${percent.toFixed(0)} % (${seen?.state}, target ${v.at.toFixed(0)} %)`);
        if (seen?.state !== 'completed' && percent < 100) midCopy.push(v.who);
        mark(`kill ${kills.at(-1)}`);
        await v.node.kill('SIGKILL');
        await sleep(schedule() * 300);
        await v.node.restart();
      }
      mark(`kills: ${kills.join(', ')}`);
      // Every kill but the first may land after a fast copy ended; the first one cannot miss.
      assert.ok(midCopy.length >= 1, `no kill landed during a copy: ${kills.join(', ')} (${REPLAY})`);

      const finals = new Map<string, CopyStatus>();
      for (const c of copies) {
        finals.set(
          c.name,
          c.continuous
            ? await waitCopyState(A, c.name, (s) => s.state !== 'initializing' && s.progress?.percent === 100)
            : await waitCopyState(A, c.name, 'completed', 300_000),
        );
      }
      mark('copies done');
      await writer.stop();
      for (const c of copies.filter((x) => x.continuous))
        await waitCopyState(A, c.name, (s) => s.state === 'idle' && s.pending_records === 0, 180_000);
      await Promise.all(watches.map((w) => w.stop()));
      mark('caught up');

      const [src, ...snaps] = await Promise.all([
        snapshotBucket(A.url, A.token, 'src'),
        ...copies.map((c) => snapshotBucket(c.dst.url, c.dst.token, c.name)),
      ]);
      mark('compared');
      const planned = expectedSnapshot(plan);
      // the source still holds the plan and every acknowledged live write
      for (const [key, want] of planned)
        assert.deepEqual(src.get(key), want, `source record ${key} (${REPLAY})`);
      for (const r of writer.acked)
        assert.ok(src.has(`${r.entry}@${r.ts}`), `acknowledged live write ${r.entry}@${r.ts}`);
      assert.ok(writer.acked.length > 0, 'live writes were acknowledged during the copy');
      await assertCounted(A, 'src', src, 'source');
      const bytes = plan.reduce((n, r) => n + r.payload.length, 0);
      for (const [i, c] of copies.entries()) {
        const snap = snaps[i]!;
        // one-shot: exactly what existed at creation; continuous: exactly the source
        if (c.continuous) assertSameSnapshots(src, snap, `${c.name} destination vs source (${REPLAY})`);
        else
          assertSameSnapshots(planned, snap, `${c.name} destination vs the records at creation (${REPLAY})`);
        await assertCounted(c.dst, c.name, snap, `${c.name} destination`);
        const w = c.watch!;
        assert.deepEqual(w.regressions().slice(0, 5), [], `${c.name}: progress went down (${REPLAY})`);
        assert.ok(w.samples.length > 3, `${c.name}: progress was polled during the copy`);
        const s = finals.get(c.name)!;
        assert.ok(s.progress, `${c.name}: progress in the status`);
        assert.equal(s.progress.percent, 100, `${c.name}: percent`);
        assert.equal(s.progress.records_total, RECORDS, `${c.name}: records_total is the scope at creation`);
        assert.equal(s.progress.records_done, RECORDS, `${c.name}: records_done`);
        assert.equal(s.progress.bytes_total, bytes, `${c.name}: bytes_total`);
        assert.equal(s.progress.bytes_done, bytes, `${c.name}: bytes_done`);
      }

      // `completed` stays: through a crash and restart of the source, and with new writes
      await A.kill('SIGKILL');
      await A.restart();
      const more = planRecords(seededRandom(`${seedName}/after`), { count: 50, mib: 0, medium: 0 }).map(
        (r) => ({
          ...r,
          ts: r.ts + lastOf(plan) * 2n,
        }),
      );
      await writePlanned(A, 'src', more);
      await sleep(1000);
      for (const c of copies.filter((x) => !x.continuous)) {
        const after = await copyStatus(A, c.name);
        assert.equal(after.state, 'completed', `${c.name} state after a restart and new writes (${REPLAY})`);
        assert.equal(after.progress?.percent, 100);
        assert.equal(
          await recordCount(c.dst, c.name),
          RECORDS,
          `${c.name}: a completed one-shot ships nothing more`,
        );
      }
      mark('completed stays');
      console.log(
        `[copy] ${RECORDS} records (${(bytes / 1e6).toFixed(1)} MB), ` +
          `live writes acked ${writer.acked.length} in ${writer.requests} requests (${writer.failures} failed); ` +
          `progress samples ${watches.map((w) => w.samples.length).join('/')}; ${timings.join(', ')}; ${REPLAY}`,
      );
    } catch (err) {
      // the servers' own account of a failure (a 500 says "see the server log")
      for (const [who, n] of Object.entries({ A, B }))
        console.log(`--- ${who} (last 4 KB of its output) ---\n${n.output().slice(-4096)}`);
      // the engine's own account: counters, positions and cursors of every replication
      for (const c of copies) {
        const s = await copyStatus(A, c.name).catch((e: Error) => e.message);
        console.log(`--- status of ${c.name} ---\n${stringifyJson(s)}`);
      }
      throw err;
    } finally {
      await writer.stop().catch(() => undefined);
      await Promise.all(watches.map((w) => w.stop()));
      await Promise.all([A, B].map((n) => n.destroy()));
    }
  },
);
