/**
 * Initial copies at scale between real Ferry processes (replication.md §6, issue 9 "Tests"): 100,000
 * existing records (0 B to 1 MiB, five entries, labels) are copied by a one-shot replication
 * (`continuous: false, since: 0`) and by a continuous one with `since: 0`, while a client keeps
 * writing and the source and the destinations are SIGKILLed during the copy. Afterwards:
 * - the one-shot's destination holds exactly what existed when it was created (the writes that
 *   arrived later are not shipped), and `completed` is reached and stays, across a restart too;
 * - the continuous destination holds exactly what the source holds (copy + live writes);
 * - polled progress never went down and ended at 100 %.
 * remote: A → B (one-shot) and A → C (since), three processes; local: both inside A.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication } from './helpers/ferry-api.js';
import { stringifyJson } from '../src/protocol/json.js';
import { assertSameSnapshots, snapshotBucket, type BucketSnapshot } from './helpers/records.js';
import { TARGET_KINDS } from './helpers/replication-env.js';
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

for (const kind of TARGET_KINDS) {
  test(
    `one-shot and since copies of ${RECORDS.toLocaleString('en')} records with SIGKILLs of either side and writes throughout [${kind}]`,
    {
      timeout: 900_000,
    },
    async () => {
      const started = Date.now();
      // recovery after a SIGKILL replays the log: generous start timeouts on a loaded machine
      const opts = { env: { RS_SYSTEM_EVENTS_ENABLED: 'false' }, startTimeoutMs: 60_000 };
      const A = await spawnFerry(opts);
      const B = kind === 'remote' ? await spawnFerry(opts) : A;
      const C = kind === 'remote' ? await spawnFerry(opts) : A;
      const seedName = `replication-copy/${kind}`;
      const schedule = seededRandom(`${seedName}/kills`);
      const plan = planRecords(seededRandom(`${seedName}/plan`), { count: RECORDS });
      const writer = new LiveWriter(A, 'src', seededRandom(`${seedName}/writer`), lastOf(plan));
      const watches: ProgressWatch[] = [];
      const timings: string[] = [];
      const mark = (what: string): void => {
        timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
        console.log(`[${kind}] ${timings.at(-1)}`);
      };
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
        const local = kind === 'local' ? { dstHost: '' } : {};
        await createReplication(A, B, {
          name: 'once',
          dstBucket: 'once',
          createSrcBucket: false,
          ...local,
          settings: { ...common, continuous: false },
        });
        await createReplication(A, C, {
          name: 'cont',
          dstBucket: 'cont',
          createSrcBucket: false,
          ...local,
          settings: common,
        });
        writer.start();
        const once = new ProgressWatch(() => A, 'once').start();
        const cont = new ProgressWatch(() => A, 'cont').start();
        watches.push(once, cont);

        // Kills at seeded points of the copy's progress: the source, then each destination.
        const victims: Array<{ who: string; node: FerryProcess; watch: ProgressWatch; at: number }> = [
          { who: 'A', node: A, watch: once, at: 5 + schedule() * 25 },
          kind === 'remote'
            ? { who: 'B', node: B, watch: once, at: 35 + schedule() * 25 }
            : { who: 'A', node: A, watch: cont, at: 35 + schedule() * 25 },
          ...(kind === 'remote' ? [{ who: 'C', node: C, watch: cont, at: 60 + schedule() * 25 }] : []),
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
        // Every kill but the last may land after a fast copy ended; the first one cannot miss.
        assert.ok(midCopy.length >= 1, `no kill landed during a copy: ${kills.join(', ')} (${REPLAY})`);

        const done = await waitCopyState(A, 'once', 'completed', 300_000);
        const contCopied = await waitCopyState(
          A,
          'cont',
          (s) => s.state !== 'initializing' && s.progress?.percent === 100,
        );
        mark('copies done');
        await writer.stop();
        await waitCopyState(A, 'cont', (s) => s.state === 'idle' && s.pending_records === 0, 180_000);
        await Promise.all(watches.map((w) => w.stop()));
        mark('caught up');

        const [src, onceSnap, contSnap] = await Promise.all([
          snapshotBucket(A.url, A.token, 'src'),
          snapshotBucket(B.url, B.token, 'once'),
          snapshotBucket(C.url, C.token, 'cont'),
        ]);
        mark('compared');
        const planned = expectedSnapshot(plan);
        // the source still holds the plan and every acknowledged live write
        for (const [key, want] of planned)
          assert.deepEqual(src.get(key), want, `source record ${key} (${REPLAY})`);
        for (const r of writer.acked)
          assert.ok(src.has(`${r.entry}@${r.ts}`), `acknowledged live write ${r.entry}@${r.ts}`);
        assert.ok(writer.acked.length > 0, 'live writes were acknowledged during the copy');
        // one-shot: exactly what existed at creation; continuous: exactly the source
        assertSameSnapshots(planned, onceSnap, `one-shot destination vs the records at creation (${REPLAY})`);
        assertSameSnapshots(src, contSnap, `since destination vs source (${REPLAY})`);
        await assertCounted(B, 'once', onceSnap, 'one-shot destination');
        await assertCounted(C, 'cont', contSnap, 'since destination');
        await assertCounted(A, 'src', src, 'source');

        for (const w of watches) {
          assert.deepEqual(w.regressions().slice(0, 5), [], `progress went down (${REPLAY})`);
          assert.ok(w.samples.length > 3, 'progress was polled during the copy');
        }
        const check = (s: CopyStatus, what: string): void => {
          assert.ok(s.progress, `${what}: progress in the status`);
          assert.equal(s.progress.percent, 100, `${what}: percent`);
          assert.equal(s.progress.records_total, RECORDS, `${what}: records_total is the scope at creation`);
          assert.equal(s.progress.records_done, RECORDS, `${what}: records_done`);
          const bytes = plan.reduce((n, r) => n + r.payload.length, 0);
          assert.equal(s.progress.bytes_total, bytes, `${what}: bytes_total`);
          assert.equal(s.progress.bytes_done, bytes, `${what}: bytes_done`);
        };
        check(done, 'one-shot');
        check(contCopied, 'since');

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
        const after = await copyStatus(A, 'once');
        assert.equal(after.state, 'completed', `one-shot state after a restart and new writes (${REPLAY})`);
        assert.equal(after.progress?.percent, 100);
        assert.equal(await recordCount(B, 'once'), RECORDS, 'a completed one-shot ships nothing more');
        mark('completed stays');
        console.log(
          `[${kind}] ${RECORDS} records (${(plan.reduce((n, r) => n + r.payload.length, 0) / 1e6).toFixed(1)} MB), ` +
            `live writes acked ${writer.acked.length} in ${writer.requests} requests (${writer.failures} failed); ` +
            `progress samples ${watches.map((w) => w.samples.length).join('/')}; ${timings.join(', ')}; ${REPLAY}`,
        );
      } catch (err) {
        // the servers' own account of a failure (a 500 says "see the server log")
        for (const [who, n] of Object.entries({ A, B, C }))
          if (who === 'A' || n !== A)
            console.log(`--- ${who} (last 4 KB of its output) ---\n${n.output().slice(-4096)}`);
        // the engine's own account: counters, positions and cursors of both replications
        for (const name of ['once', 'cont']) {
          const s = await copyStatus(A, name).catch((e: Error) => e.message);
          console.log(`--- status of ${name} ---\n${stringifyJson(s)}`);
        }
        throw err;
      } finally {
        await writer.stop().catch(() => undefined);
        await Promise.all(watches.map((w) => w.stop()));
        await Promise.all([A, ...(B !== A ? [B] : []), ...(C !== A ? [C] : [])].map((n) => n.destroy()));
      }
    },
  );
}
