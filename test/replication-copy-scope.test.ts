/**
 * What an initial copy copies, and how it is watched (replication.md §3, §6, §9; issue 9 "Tests"),
 * between real Ferry processes while a client keeps writing:
 * - one-shots bounded by `since` and `until`, by `entries` patterns, by `when`, and by a stored
 *   filter with `query_params`: each destination holds exactly the matching records that existed
 *   at creation, none of the writes that arrived during the copy;
 * - a continuous `since` copy of one entry: the existing records from `since` on plus every write
 *   that arrived after creation;
 * - a real EventSource client sees the copy's state changes and its stream ends on `completed`;
 * - `GET /active_tasks` lists the copies while they run (without credentials) and drops them once
 *   completed.
 * One source A serves both target kinds in each test: local copies land in A, remote ones in B.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import type {
  ActiveTask,
  ActiveTasks,
  ReplicationStatus,
  StateEvent,
} from '../src/protocol/replication-status.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, createReplication } from './helpers/ferry-api.js';
import { assertSameSnapshots, snapshotBucket, type BucketSnapshot } from './helpers/records.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { ProgressWatch, subscribeEvents, waitCopyState } from './helpers/copy-status.js';
import {
  expectedSnapshot,
  LiveWriter,
  planRecords,
  PLAN_FIRST_TS,
  PLAN_STEP,
  writePlanned,
  type PlannedRecord,
} from './helpers/copy-workload.js';
import { waitFor } from './helpers/wait.js';

const RECORDS = 6000;
const SINCE = PLAN_FIRST_TS + 300n * PLAN_STEP;
const UNTIL = PLAN_FIRST_TS + 900n * PLAN_STEP;

const QUALITY_FILTER = {
  description: 'one quality from a score on',
  when: { '&quality': { $eq: { $param: 'quality' } }, '&score': { $gte: { $param: 'min_score' } } },
  params: { quality: { type: 'string' }, min_score: { type: 'integer', default: 0 } },
};

/** The one-shots of this test: settings and which planned records each must copy. */
const ONE_SHOTS: Array<{
  name: string;
  settings: Record<string, unknown>;
  keep: (r: PlannedRecord) => boolean;
}> = [
  { name: 'until', settings: { since: SINCE, until: UNTIL }, keep: (r) => r.ts >= SINCE && r.ts < UNTIL },
  { name: 'entries', settings: { since: 0, entries: ['cam/*'] }, keep: (r) => r.entry.startsWith('cam/') },
  {
    name: 'when',
    settings: { since: 0, when: { '&quality': { $eq: 'good' }, '&score': { $lt: 30 } } },
    keep: (r) => r.labels.quality === 'good' && Number(r.labels.score) < 30,
  },
  {
    name: 'filter',
    settings: { since: SINCE, filter: 'quality', query_params: { quality: 'bad', min_score: 50 } },
    keep: (r) => r.ts >= SINCE && r.labels.quality === 'bad' && Number(r.labels.score) >= 50,
  },
];

/** The replication entries of the task list (verifications are listed there too). */
const replicationTasks = (t: ActiveTasks): ActiveTask[] =>
  t.tasks.filter((x): x is ActiveTask => x.type === 'replication');

function pick(snap: BucketSnapshot, keep: (key: string) => boolean): BucketSnapshot {
  return new Map([...snap].filter(([k]) => keep(k)));
}

/** Both target kinds from one source: the local copies land in A, the remote ones in B. */
const KINDS = ['local', 'remote'] as const;
type Kind = (typeof KINDS)[number];
const nameOf = (name: string, kind: Kind): string => `${name}-${kind}`;

test(
  'until, entries, when and stored filters during a copy; events end on completed; active_tasks [local, remote]',
  { timeout: 300_000 },
  async () => {
    // generous start timeouts: a loaded machine starts servers slowly
    const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
    const [A, B] = await Promise.all([
      spawnFerry({ env, startTimeoutMs: 60_000 }),
      spawnFerry({ env, startTimeoutMs: 60_000 }),
    ]);
    const dstOf = (kind: Kind): FerryProcess => (kind === 'local' ? A : B);
    const seedName = 'replication-copy-scope';
    const plan = planRecords(seededRandom(`${seedName}/plan`), { count: RECORDS, mib: 2, medium: 6 });
    const planEnd = plan.reduce((m, r) => (r.ts > m ? r.ts : m), 0n) + PLAN_STEP;
    const writer = new LiveWriter(A, 'src', seededRandom(`${seedName}/writer`), planEnd);
    const watches: ProgressWatch[] = [];
    const streams: EventSource[] = [];
    const oneShotNames = KINDS.flatMap((k) => ONE_SHOTS.map((o) => nameOf(o.name, k)));
    const allNames = [...oneShotNames, ...KINDS.map((k) => nameOf('live', k))];
    try {
      await api(A, 'POST', '/b/src', {});
      await writePlanned(A, 'src', plan);
      await api(A, 'POST', '/filters/quality', QUALITY_FILTER);
      // created paused: the subscribers and the task list see every copy from its first state on
      const common = { mode: 'paused', batch: { max_records: 50, max_delay_ms: 5 } };
      for (const kind of KINDS) {
        const local = kind === 'local' ? { dstHost: '' } : {};
        for (const o of ONE_SHOTS) {
          await createReplication(A, dstOf(kind), {
            name: nameOf(o.name, kind),
            dstBucket: o.name,
            createSrcBucket: false,
            ...local,
            settings: { ...common, continuous: false, ...o.settings },
          });
        }
        await createReplication(A, dstOf(kind), {
          name: nameOf('live', kind),
          dstBucket: 'live',
          createSrcBucket: false,
          ...local,
          settings: { ...common, since: SINCE, entries: ['lidar'] },
        });
      }

      const paused = (await api(A, 'GET', '/active_tasks')) as ActiveTasks;
      const text = JSON.stringify(paused, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
      if (B.token !== '')
        assert.ok(!text.includes(B.token), 'active_tasks never shows the destination token');
      assert.ok(!text.includes('dst_token'), 'active_tasks has no dst_token key');
      for (const name of allNames) {
        const t = replicationTasks(paused).find((x) => x.name === name);
        assert.ok(t, `active_tasks lists '${name}': ${text}`);
        assert.equal(t.state, 'paused', name);
        assert.equal(t.continuous, name.startsWith('live-'), `continuous of '${name}'`);
      }

      const subs = ['until-local', 'filter-remote'].map((name) =>
        subscribeEvents(A, `/replications/${name}/events?interval_ms=100`),
      );
      streams.push(...subs.map((x) => x.es));
      await waitFor(() => subs.every((x) => x.got[0]), {
        timeoutMs: 20_000,
        message: 'the first snapshots',
      });
      // the task list during the copies (polled from before they are enabled: a short copy may end
      // before the last one is enabled)
      const seenInTasks = new Map<string, Set<string>>();
      const tasksPoll = (async () => {
        for (;;) {
          const t = (await api(A, 'GET', '/active_tasks')) as ActiveTasks;
          for (const task of replicationTasks(t)) {
            const s = seenInTasks.get(task.name) ?? new Set<string>();
            s.add(task.state);
            seenInTasks.set(task.name, s);
          }
          if (oneShotNames.every((n) => !t.tasks.some((x) => x.name === n))) return t;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();

      writer.start();
      for (const name of allNames) {
        watches.push(new ProgressWatch(() => A, name, 20).start());
        await api(A, 'PATCH', `/replications/${name}/mode`, { mode: 'enabled' });
      }
      for (const name of oneShotNames) await waitCopyState(A, name, 'completed', 180_000);
      for (const kind of KINDS)
        await waitCopyState(
          A,
          nameOf('live', kind),
          (s) => s.state !== 'initializing' && s.progress?.percent === 100,
          180_000,
        );
      const afterCopies = await tasksPoll;
      await writer.stop();
      for (const kind of KINDS)
        await waitCopyState(A, nameOf('live', kind), (s) => s.state === 'idle' && s.pending_records === 0);
      await Promise.all(watches.map((w) => w.stop()));

      // every destination: exactly its scope
      const src = await snapshotBucket(A.url, A.token, 'src');
      const planned = expectedSnapshot(plan);
      // continuous since: the existing lidar records from SINCE on, and every later lidar write
      const liveWant = pick(src, (k) => {
        if (!k.startsWith('lidar@')) return false;
        return !planned.has(k) || BigInt(k.slice('lidar@'.length)) >= SINCE;
      });
      for (const kind of KINDS) {
        const D = dstOf(kind);
        for (const o of ONE_SHOTS) {
          const want = expectedSnapshot(plan.filter(o.keep));
          assert.ok(want.size > 50, `scope of '${o.name}' is not trivial (${want.size})`);
          assertSameSnapshots(
            want,
            await snapshotBucket(D.url, D.token, o.name),
            `one-shot '${nameOf(o.name, kind)}' (${REPLAY})`,
          );
        }
        assertSameSnapshots(
          liveWant,
          await snapshotBucket(D.url, D.token, 'live'),
          `since copy of lidar [${kind}] (${REPLAY})`,
        );
      }

      watches.forEach((w, i) => {
        assert.deepEqual(w.regressions().slice(0, 5), [], `progress went down (${REPLAY})`);
        const last = w.last();
        const tail = `'${allNames[i]}', last samples ${JSON.stringify(w.samples.slice(-3))} (${REPLAY})`;
        assert.ok(last, `progress of ${w.samples.length} samples: ${tail}`);
        assert.equal(last.progress.percent, 100, `percent at the end: ${tail}`);
        assert.equal(last.progress.records_done, last.progress.records_total, `records at the end: ${tail}`);
      });

      // events: the stream of a one-shot ends after `completed`; its state events end there too
      for (const s of subs) {
        await waitFor(() => s.es.readyState === EventSource.CLOSED, {
          timeoutMs: 20_000,
          message: 'the stream to end',
        });
        const states = s.got.filter((e) => e.event === 'state').map((e) => e.data as StateEvent);
        assert.ok(states.length >= 2, `state events: ${JSON.stringify(states)}`);
        assert.equal(states[0]!.from, 'paused');
        assert.equal(states.at(-1)!.to, 'completed');
        assert.ok(
          states.some((e) => e.to === 'initializing'),
          'the copy was announced as initializing',
        );
        const statuses = s.got.filter((e) => e.event === 'status').map((e) => e.data as ReplicationStatus);
        assert.equal(statuses.at(-1)!.state, 'completed');
      }

      // active_tasks: each copy was listed while it ran, none once completed; the continuous ones stay
      for (const name of oneShotNames) {
        const seen = [...(seenInTasks.get(name) ?? [])];
        assert.ok(
          seen.some((st) => st !== 'paused'),
          `'${name}' listed during the copy (seen: ${seen.join(', ') || 'never'})`,
        );
        assert.ok(!seen.includes('completed'), `'${name}' is not listed as completed`);
      }
      for (const kind of KINDS)
        assert.ok(
          afterCopies.tasks.some((t) => t.name === nameOf('live', kind)),
          'the continuous replications stay listed',
        );
      console.log(
        `states seen in active_tasks: ${[...seenInTasks].map(([n, s]) => `${n}=${[...s].join('/')}`).join(' ')}; ` +
          `live writes ${writer.acked.length}; ${REPLAY}`,
      );
    } finally {
      for (const es of streams) es.close();
      await writer.stop().catch(() => undefined);
      await Promise.all(watches.map((w) => w.stop()));
      await Promise.all([A, B].map((n) => n.destroy()));
    }
  },
);

/**
 * Records written after creation between existing ones: every 10th planned record gets a neighbour
 * at ts + `offset` (labels marked `late`); the local run writes at offset 1, the remote one at 2.
 */
function lateNeighbours(plan: PlannedRecord[], kind: Kind): PlannedRecord[] {
  const offset = kind === 'local' ? 1n : 2n;
  return plan
    .filter((_, i) => i % 10 === 0)
    .map((r) => ({ ...r, ts: r.ts + offset, labels: { ...r.labels, late: 'yes' } }));
}

/**
 * One server A holding 2,000 planned records in 'src' and a second one B: `fn` runs for the local
 * destination (A itself) and for the remote one (B), on the same source.
 */
async function withPlanned(
  seedName: string,
  fn: (
    a: FerryProcess,
    dst: FerryProcess,
    kind: Kind,
    plan: PlannedRecord[],
    local: { dstHost?: string },
  ) => Promise<void>,
): Promise<void> {
  // generous start timeouts: a loaded machine starts servers slowly
  const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
  const [A, B] = await Promise.all([
    spawnFerry({ env, startTimeoutMs: 60_000 }),
    spawnFerry({ env, startTimeoutMs: 60_000 }),
  ]);
  try {
    const plan = planRecords(seededRandom(seedName), { count: 2000, mib: 1, medium: 2 });
    await api(A, 'POST', '/b/src', {});
    await writePlanned(A, 'src', plan);
    await fn(A, A, 'local', plan, { dstHost: '' });
    await fn(A, B, 'remote', plan, {});
  } finally {
    await Promise.all([A, B].map((n) => n.destroy()));
  }
}

test(
  'a one-shot does not ship writes committed after its creation into the copied time range [local, remote]',
  { timeout: 180_000 },
  () =>
    withPlanned('replication-copy-scope/late-once', async (A, B, kind, plan, local) => {
      // the late writes of the first kind's run are already there for the second: the one-shot
      // must still copy only what existed at its creation
      const name = nameOf('once', kind);
      const before = kind === 'local' ? plan : [...plan, ...lateNeighbours(plan, 'local')];
      await createReplication(A, B, {
        name,
        dstBucket: name,
        createSrcBucket: false,
        ...local,
        settings: { mode: 'paused', since: 0, continuous: false },
      });
      await writePlanned(A, 'src', lateNeighbours(plan, kind));
      await api(A, 'PATCH', `/replications/${name}/mode`, { mode: 'enabled' });
      await waitCopyState(A, name, 'completed');
      assertSameSnapshots(
        expectedSnapshot(before),
        await snapshotBucket(B.url, B.token, name),
        `one-shot vs the records at creation [${kind}] (${REPLAY})`,
      );
    }),
);

test(
  'a continuous since copy ships late writes into the copied range, below since too [local, remote]',
  { timeout: 180_000 },
  () =>
    withPlanned('replication-copy-scope/late-since', async (A, B, kind, plan, local) => {
      const name = nameOf('cont', kind);
      // the second kind's run starts on a source that already holds the first one's late writes
      const existing = kind === 'local' ? plan : [...plan, ...lateNeighbours(plan, 'local')];
      await createReplication(A, B, {
        name,
        dstBucket: name,
        createSrcBucket: false,
        ...local,
        settings: { since: SINCE, batch: { max_records: 50 } },
      });
      const late = lateNeighbours(plan, kind);
      assert.ok(late.some((r) => r.ts < SINCE) && late.some((r) => r.ts >= SINCE));
      await writePlanned(A, 'src', late);
      await waitCopyState(
        A,
        name,
        (s) => s.progress?.percent === 100 && s.state === 'idle' && s.pending_records === 0,
      );
      assertSameSnapshots(
        expectedSnapshot([...existing.filter((r) => r.ts >= SINCE), ...late]),
        await snapshotBucket(B.url, B.token, name),
        `since copy with late writes [${kind}] (${REPLAY})`,
      );
    }),
);
