/**
 * The HTTP side of verify (replication.md §10, issue 11): `POST|GET /api/v1/replications/{name}/verify`
 * between two in-process servers, the range-digest route's authorisation and bounds (hostile input
 * gets a 422 naming the field, never harms the server), and a running verification visible in
 * `active_tasks`, in the replication's status and through its events, with progress.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';
import { ReplicationMonitor } from '../src/replication/monitor.js';
import { VerifyService, type VerifySubjects } from '../src/replication/verify-service.js';
import type { VerifyPeer } from '../src/replication/verify-peer.js';
import type { VerifyResult, VerificationTask } from '../src/protocol/verify.js';
import { withReplEnv } from './helpers/replication-env.js';

let A: TestServer;
let B: TestServer;
const a = (): ApiNode => ({ url: A.ferry.url, token: 'token-a' });
const b = (): ApiNode => ({ url: B.ferry.url, token: 'token-b' });

before(async () => {
  [A, B] = await Promise.all([
    startTestServer('verify-a', 'token-a'),
    startTestServer('verify-b', 'token-b'),
  ]);
  const src = await A.ferry.storage.createBucket('src');
  assert.equal(
    (
      await call(a(), 'POST', '/replications/r', {
        src_bucket: 'src',
        dst_bucket: 'dst',
        dst_host: B.ferry.url,
        dst_token: 'token-b',
      })
    ).status,
    200,
  );
  const items = [];
  for (let i = 0; i < 200; i++)
    items.push({
      entry: 'e',
      ts: BigInt(1000 + i),
      opts: { size: 3, labels: { i: String(i) } },
      payload: Buffer.from('abc'),
    });
  await src.writeMany(items);
  await waitFor(
    () =>
      B.ferry.storage.hasBucket('dst') && B.ferry.storage.bucket('dst').entries()[0]?.record_count === 200n,
    {
      timeoutMs: 20_000,
      message: 'replicated',
    },
  );
});
after(async () => {
  await Promise.all([stopTestServer(A), stopTestServer(B)]);
});

test('POST …/verify answers the result, GET …/verify the last one', async () => {
  const none = await call(a(), 'GET', '/replications/r/verify');
  assert.equal(none.status, 404);
  assert.equal(none.error, "Replication 'r' has not been verified yet");
  const posted = await call(a(), 'POST', '/replications/r/verify');
  assert.equal(posted.status, 200, posted.error ?? '');
  const r = posted.json as VerifyResult;
  assert.equal(r.outcome, 'clean');
  assert.equal(r.method, 'digest');
  assert.equal(r.payloads_compared, true);
  assert.equal(r.totals.source_records, 200);
  assert.ok(r.exchange.round_trips >= 1 && r.exchange.bytes_sent > 0);
  const got = await call(a(), 'GET', '/replications/r/verify');
  assert.equal(got.status, 200);
  assert.deepEqual(got.json, posted.json);
  // one differing record, found through the route, then repaired
  await B.ferry.storage.bucket('dst').removeRecord('e', 1100n);
  const found = (
    await call(a(), 'POST', '/replications/r/verify', { start: 1000, stop: 1200, entries: ['e'] })
  ).json as VerifyResult;
  assert.deepEqual(
    found.entries.map((e) => [e.entry, e.missing.first]),
    [['e', [1100]]],
  );
  const repaired = (await call(a(), 'POST', '/replications/r/verify?repair=true')).json as VerifyResult;
  assert.equal(repaired.repair!.written, 1);
  assert.equal(repaired.outcome, 'clean');
});

test('verify requests are validated', async () => {
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['/replications/r/verify', { start: 'x' }, 422, /'start' must be a timestamp/],
    ['/replications/r/verify', { start: 5, stop: 5 }, 422, /'start' must be before 'stop'/],
    ['/replications/r/verify', { bogus: 1 }, 422, /unknown field 'bogus'/],
    ['/replications/r/verify', { entries: 'e' }, 422, /'entries' must be a list/],
    ['/replications/r/verify', { remove_extra: true }, 422, /'remove_extra' needs \?repair=true/],
    ['/replications/r/verify?repair=maybe', {}, 422, /'repair' must be true or false/],
    ['/replications/r/verify', '{"start":', 422, /Invalid JSON/],
    ['/replications/nope/verify', {}, 404, /Replication 'nope' does not exist/],
  ];
  for (const [path, body, status, message] of cases) {
    const r = await call(a(), 'POST', path, body);
    assert.equal(r.status, status, `${path} ${String(body)}: ${r.error}`);
    assert.match(r.error ?? '', message);
  }
  assert.equal((await call({ url: A.ferry.url, token: '' }, 'POST', '/replications/r/verify')).status, 401);
});

test('the range-digest route: read access to the bucket, bounded, hostile input refused', async () => {
  const path = '/ferry/b/dst/digests';
  const ok = await call(b(), 'POST', path, {
    queries: [
      { entry: 'e', start: 0, stop: 2000, split: 4 },
      { entry: 'e', start: 1000, stop: 1003, list: 10 },
    ],
  });
  assert.equal(ok.status, 200, ok.error ?? '');
  const [d, l] = (ok.json as { results: Array<Record<string, unknown>> }).results;
  assert.equal(d!.count, 200);
  assert.equal((d!.bounds as unknown[]).length, 3);
  assert.equal((l!.records as unknown[]).length, 3);
  assert.equal(l!.more, false);
  const bad: Array<[unknown, RegExp]> = [
    ['[]', /an array 'queries'/],
    [{ queries: 'x' }, /an array 'queries'/],
    [
      { queries: Array.from({ length: 1025 }, () => ({ entry: 'e', start: 0, stop: 1 })) },
      /at most 1024 queries/,
    ],
    [{ queries: [{ entry: '', start: 0, stop: 1 }] }, /queries\[0\]\.entry/],
    [{ queries: [{ entry: 'e', start: -1, stop: 1 }] }, /queries\[0\]\.start/],
    [{ queries: [{ entry: 'e', start: 0, stop: '18446744073709551616' }] }, /queries\[0\]\.stop/],
    [{ queries: [{ entry: 'e', start: 0, stop: 1, split: 65 }] }, /queries\[0\]\.split/],
    [
      {
        queries: [
          { entry: 'e', start: 0, stop: 1, list: 6000 },
          { entry: 'e', start: 0, stop: 1, list: 6000 },
        ],
      },
      /at most 10000 records/,
    ],
    ['{"queries": [', /Invalid JSON/],
  ];
  for (const [body, message] of bad) {
    const r = await call(b(), 'POST', path, body);
    assert.equal(r.status, 422, `${JSON.stringify(body).slice(0, 80)}: ${r.error}`);
    assert.match(r.error ?? '', message);
  }
  // authorised like reads of the bucket
  const tokenFor = async (name: string, read: string[]): Promise<ApiNode> => {
    const r = await call(b(), 'POST', `/tokens/${name}`, { full_access: false, read, write: [] });
    assert.equal(r.status, 200, r.error ?? '');
    return { url: B.ferry.url, token: (r.json as { value: string }).value };
  };
  assert.equal(
    (await call(await tokenFor('dst-reader', ['dst']), 'POST', path, { queries: [] })).status,
    200,
  );
  const refused = await call(await tokenFor('other-reader', ['other']), 'POST', path, { queries: [] });
  assert.equal(refused.status, 403);
  assert.equal(refused.error, "Token 'other-reader' doesn't have read access to bucket 'dst'");
  assert.equal((await call({ url: B.ferry.url, token: '' }, 'POST', path, { queries: [] })).status, 401);
  assert.equal((await call(b(), 'POST', '/ferry/b/missing/digests', { queries: [] })).status, 404);
  // the server still answers
  assert.equal((await call(b(), 'GET', '/info')).status, 200);
});

test('a running verification is in active_tasks, in the status and heard through events, with progress', async () => {
  await withReplEnv('local', async (env) => {
    await env.storage.createBucket('src', { max_block_records: 20n });
    await env.replicate('r');
    const items = [];
    for (let i = 0; i < 300; i++)
      items.push({ entry: `e${i % 3}`, ts: BigInt(10 + i), opts: { size: 1 }, payload: Buffer.from('x') });
    await env.storage.bucket('src').writeMany(items);
    await waitFor(() => env.dst.hasBucket('dst') && env.dst.bucket('dst').info().entry_count === 3n, {
      message: 'replicated',
    });
    // the destination answers its digests only when the test lets it
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const subjects: VerifySubjects = {
      verifySubject: (name) => {
        const s = env.manager.verifySubject(name);
        const peer: VerifyPeer = Object.create(s.peer) as VerifyPeer;
        peer.digests = async (q) => {
          await gate;
          return s.peer.digests(q);
        };
        return { ...s, peer };
      },
    };
    const service = new VerifyService(env.storage, subjects, env.dir, false);
    const monitor = new ReplicationMonitor(env.manager, { sampleMs: 0, verifications: service });
    const heard: string[] = [];
    const off = service.subscribe('r', (e) => heard.push(e.type));
    try {
      const running = service.run('r', { repair: false, remove_extra: false });
      // once the source's side is counted, the task waits for the destination's digests
      const task = await waitFor(() =>
        monitor
          .activeTasks()
          .tasks.find(
            (t): t is VerificationTask => t.type === 'verification' && t.progress.records_total > 0,
          ),
      );
      assert.equal(task.name, 'r');
      assert.equal(task.phase, 'verifying');
      assert.equal(task.progress.records_total, 300);
      assert.equal(task.progress.records_done, 0);
      assert.equal(
        (monitor.status('r') as unknown as { verification: { running: boolean } }).verification.running,
        true,
      );
      assert.equal(
        await service.run('r', { repair: false, remove_extra: false }).catch((e: Error) => e.message),
        "A verification of replication 'r' is running already",
      );
      release();
      const result = await running;
      assert.equal(result.outcome, 'clean');
      assert.equal(monitor.activeTasks().tasks.filter((t) => t.type === 'verification').length, 0);
      const after = (
        monitor.status('r') as unknown as { verification: { running: boolean; outcome: string } }
      ).verification;
      assert.deepEqual([after.running, after.outcome], [false, 'clean']);
      assert.ok(heard.length >= 2, `events heard: ${heard.length}`);
      const last = (await new VerifyService(env.storage, subjects, env.dir, false).lastResult(
        'r',
      )) as VerifyResult;
      assert.equal(last.finished_at, result.finished_at, 'the last result survives the service (persisted)');
    } finally {
      off();
      monitor.close();
    }
  });
});

test('a replication that names a remote is verified through that remote', async () => {
  assert.equal((await call(a(), 'POST', '/remotes/b', { url: B.ferry.url, token: 'token-b' })).status, 200);
  const created = await call(a(), 'POST', '/replications/via-remote', {
    src_bucket: 'src',
    dst_bucket: 'dst2',
    remote: 'b',
    since: 0,
  });
  assert.equal(created.status, 200, created.error ?? '');
  await waitFor(
    () =>
      B.ferry.storage.hasBucket('dst2') && B.ferry.storage.bucket('dst2').entries()[0]?.record_count === 200n,
    {
      timeoutMs: 20_000,
      message: 'copied through the remote',
    },
  );
  await B.ferry.storage.bucket('dst2').removeRecord('e', 1050n);
  const r = (await call(a(), 'POST', '/replications/via-remote/verify')).json as VerifyResult;
  assert.equal(r.method, 'digest');
  assert.equal(r.totals.source_records, 200);
  assert.deepEqual(
    r.entries.map((e) => [e.entry, e.missing.first, e.extra.count]),
    [['e', [1050], 0]],
  );
});
