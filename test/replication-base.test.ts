/**
 * Base seeding (replication.md §3 `base`, §10; issue 11 item 5), for a local and a remote Ferry
 * destination and a plain-API one: both sides hold the same records before `base.up_to`, so nothing
 * before it is shipped (counted in records and bytes written); with `verify: "digest"` the claim is
 * checked first, and a false one is repaired or stops the replication, as chosen; `trust` ships at
 * once and says it was not checked; writes arriving while the base is checked are not lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BaseStatus } from '../src/protocol/replication-status.js';
import type { VerifyResult } from '../src/protocol/verify.js';
import { isFerryError } from '../src/protocol/errors.js';
import { stringifyJson, U64_MAX } from '../src/protocol/json.js';
import type { Storage } from '../src/storage/types.js';
import { forEachTarget, statusOf, withReplEnv, type ReplEnv } from './helpers/replication-env.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { syncWrites } from '../src/http/sync-writes.js';

const UP_TO = 10_000n;
/** Records per entry before `up_to` (on both sides) and after it (source only). */
const BEFORE = 300;
const AFTER = 40;
const payloadOf = (entry: string, ts: bigint): Buffer => Buffer.from(`${entry}:${ts}:payload`);

async function writeRange(
  storage: Storage,
  bucket: string,
  entry: string,
  from: bigint,
  n: number,
): Promise<number> {
  const items = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const ts = from + BigInt(i) * 20n;
    const payload = payloadOf(entry, ts);
    bytes += payload.length;
    items.push({
      entry,
      ts,
      opts: { size: payload.length, contentType: 'text/plain', labels: { k: String(i % 3) } },
      payload,
    });
  }
  for (let i = 0; i < items.length; i += 100) await storage.bucket(bucket).writeMany(items.slice(i, i + 100));
  return bytes;
}

/** The same base on both sides, and records after `up_to` at the source only; bytes after `up_to`. */
async function seedBoth(env: ReplEnv): Promise<number> {
  await env.storage.createBucket('src', { max_block_records: 64n });
  if (!env.dst.hasBucket('dst')) await env.dst.createBucket('dst', { max_block_records: 64n });
  let after = 0;
  for (const e of ['a', 'b']) {
    await writeRange(env.storage, 'src', e, 100n, BEFORE);
    await writeRange(env.dst, 'dst', e, 100n, BEFORE);
    after += await writeRange(env.storage, 'src', e, UP_TO, AFTER);
  }
  return after;
}

const baseOf = (env: ReplEnv): BaseStatus => env.manager.inspect('r').status.base as BaseStatus;

async function settled(env: ReplEnv, state: BaseStatus['state']): Promise<BaseStatus> {
  await waitFor(() => baseOf(env)?.state === state, {
    timeoutMs: 60_000,
    message: `base ${state} (${stringifyJson(env.manager.inspect('r').status.base)})`,
  });
  return baseOf(env);
}

async function caughtUp(env: ReplEnv, written: number): Promise<void> {
  await waitFor(
    () => {
      const st = statusOf(env.manager, 'r');
      return st.pending_records === 0 && st.counters.records_written! >= written && st.state === 'idle';
    },
    { timeoutMs: 60_000, message: `caught up (${stringifyJson(statusOf(env.manager, 'r'))})` },
  );
}

const count = async (s: Storage, entry: string): Promise<number> =>
  (await s.bucket('dst').recordSummaries(entry, 0n, U64_MAX, 100_000)).length;

/** Divergences inside the base at the destination: one removed, one relabelled, one extra. */
async function diverge(env: ReplEnv): Promise<{ removed: bigint; relabelled: bigint; extra: bigint }> {
  const rnd = seededRandom(`base divergences ${env.kind}`);
  const pick = (): bigint => 100n + BigInt(Math.floor(rnd() * BEFORE)) * 20n;
  const removed = pick();
  let relabelled = pick();
  while (relabelled === removed) relabelled = pick();
  const extra = pick() + 7n;
  const dst = env.dst.bucket('dst');
  await dst.removeRecord('a', removed);
  await dst.updateLabels('a', relabelled, { k: 'changed' });
  await dst.write('b', extra, { size: 5, contentType: 'text/plain' }, Buffer.from('extra'));
  return { removed, relabelled, extra };
}

forEachTarget(
  'base with matching data: verified, nothing before up_to shipped, writes during the check not lost',
  async (env) => {
    const afterBytes = await seedBoth(env);
    await env.replicate('r', { base: { up_to: Number(UP_TO), verify: 'digest' } });
    // held from its creation: nothing ships while the claim is checked
    const first = env.manager.inspect('r').status;
    assert.equal(first.state, 'initializing');
    assert.match(String(first.state_reason), /verifying the base up to 10000/);
    // writes while the base is checked: before up_to (not part of the base, they come from the log) and after
    const live: bigint[] = [];
    for (let i = 0; i < 10; i++) {
      const ts = BigInt(5_001 + i * 2);
      live.push(ts);
      await env.storage
        .bucket('src')
        .write('a', ts, { size: 4, contentType: 'text/plain' }, Buffer.from('live'));
      const late = 50_000n + BigInt(i);
      live.push(late);
      await env.storage
        .bucket('src')
        .write('c', late, { size: 4, contentType: 'text/plain' }, Buffer.from('live'));
    }
    const base = await settled(env, 'clean');
    assert.equal(base.verified, true);
    assert.equal(base.payloads_compared, true);
    assert.deepEqual(base.totals && { ...base.totals, source_records: 0 }, {
      missing: 0,
      extra: 0,
      different: 0,
      source_records: 0,
    });
    // the live writes before up_to count as source records (in flight, not judged) when they were there in time
    const judged = base.totals!.source_records;
    assert.ok(judged >= 2 * BEFORE && judged <= 2 * BEFORE + 10, `source records ${judged}`);
    const records = 2 * AFTER + live.length;
    await caughtUp(env, records);
    const st = statusOf(env.manager, 'r');
    // exactly the records after up_to and the live ones: the base was not copied
    assert.equal(st.counters.records_written, records, stringifyJson(st.counters));
    assert.equal(st.counters.bytes_written, afterBytes + live.length * 4, stringifyJson(st.counters));
    assert.equal(st.counters.records_already_present, 0);
    assert.equal(await count(env.dst, 'a'), BEFORE + AFTER + 10);
    assert.equal(await count(env.dst, 'c'), 10);
    // the base is part of what verify checks from now on
    const all = await env.manager.verifications.run('r', { repair: false, remove_extra: false });
    assert.equal(all.outcome, 'clean', stringifyJson(all.totals));
    assert.equal(all.totals.source_records, 2 * BEFORE + records);
    // restart: the settled base is kept, nothing is verified or shipped again
    await env.reopen();
    assert.equal(baseOf(env).state, 'clean');
    assert.equal(baseOf(env).attempts, 1);
    await caughtUp(env, records);
    assert.equal(statusOf(env.manager, 'r').counters.records_written, records);
  },
  { timeout: 120_000 },
);

forEachTarget(
  'base with non-matching data and on_mismatch stop: suspended with the result, nothing shipped',
  async (env) => {
    await seedBoth(env);
    const d = await diverge(env);
    await env.replicate('r', { base: { up_to: Number(UP_TO), verify: 'digest', on_mismatch: 'stop' } });
    const base = await settled(env, 'mismatch');
    const where = `(${REPLAY}; removed ${d.removed}, relabelled ${d.relabelled}, extra ${d.extra})`;
    assert.deepEqual(base.totals, { missing: 1, extra: 1, different: 1, source_records: 2 * BEFORE }, where);
    assert.equal(base.verified, false);
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
    const st = statusOf(env.manager, 'r');
    assert.match(String(st.state_reason), /Base claim refused: .*1 missing, 1 extra, 1 different/);
    assert.equal(st.counters.records_written, 0, 'nothing ships before the user acts');
    assert.equal(st.pending_records, 2 * AFTER, 'what is after up_to waits');
    const result: VerifyResult = await env.manager.verifications.lastResult('r');
    const a = result.entries.find((e) => e.entry === 'a')!;
    assert.deepEqual(a.missing.first, [d.removed], where);
    assert.deepEqual(a.different.first, [{ ts: d.relabelled, parts: ['labels'] }], where);
    // the suspension survives a restart, and the base is not checked again
    await env.reopen();
    assert.equal(statusOf(env.manager, 'r').state, 'suspended');
    assert.equal(baseOf(env).attempts, 1);
    // resuming accepts the base as it is: what is after up_to ships, the base is left alone
    await env.manager.setMode('r', { mode: 'enabled' });
    await caughtUp(env, 2 * AFTER);
    assert.equal(statusOf(env.manager, 'r').counters.records_written, 2 * AFTER);
    assert.equal(await count(env.dst, 'a'), BEFORE - 1 + AFTER);
  },
  { timeout: 120_000 },
);

forEachTarget(
  'base with non-matching data and on_mismatch repair: repaired, then streams',
  async (env) => {
    const afterBytes = await seedBoth(env);
    const d = await diverge(env);
    await env.replicate('r', { base: { up_to: Number(UP_TO), verify: 'digest', on_mismatch: 'repair' } });
    const base = await settled(env, 'repaired');
    const where = `(${REPLAY}; removed ${d.removed}, relabelled ${d.relabelled}, extra ${d.extra})`;
    assert.deepEqual(base.before_repair, { missing: 1, extra: 1, different: 1 }, where);
    assert.deepEqual(base.repair, { written: 1, relabelled: 1, failed: 0 }, where);
    // extra records are never removed implicitly: reported, and the replication goes on
    assert.deepEqual(base.totals, { missing: 0, extra: 1, different: 0, source_records: 2 * BEFORE }, where);
    assert.equal(base.verified, true);
    await caughtUp(env, 2 * AFTER);
    const st = statusOf(env.manager, 'r');
    assert.equal(
      st.counters.records_written,
      2 * AFTER,
      'the repair ships through its own target, not the copy',
    );
    assert.equal(st.counters.bytes_written, afterBytes);
    const src = await env.storage.bucket('src').read('a', d.relabelled);
    assert.deepEqual((await env.dst.bucket('dst').read('a', d.relabelled)).meta.labels, src.meta.labels);
    assert.deepEqual(
      await (await env.dst.bucket('dst').read('a', d.removed)).buffer(),
      payloadOf('a', d.removed),
    );
  },
  { timeout: 120_000 },
);

forEachTarget(
  'base with verify trust: streams at once, status says it was not checked',
  async (env) => {
    await seedBoth(env);
    const d = await diverge(env);
    await env.replicate('r', { base: { up_to: Number(UP_TO), verify: 'trust' } });
    const base = baseOf(env);
    assert.equal(base.state, 'trusted');
    assert.equal(base.verified, false);
    assert.equal(base.on_mismatch, null);
    assert.equal(base.attempts, 0);
    await caughtUp(env, 2 * AFTER);
    assert.equal(statusOf(env.manager, 'r').counters.records_written, 2 * AFTER);
    // trusted, not checked: the removed record stays missing, and a verify finds it
    assert.equal(await count(env.dst, 'a'), BEFORE - 1 + AFTER);
    const r = await env.manager.verifications.run('r', { repair: false, remove_extra: false });
    assert.equal(r.totals.missing, 1);
    assert.equal(r.entries.find((e) => e.entry === 'a')!.missing.first[0], d.removed);
  },
  { timeout: 120_000 },
);

test(
  'base against a destination without the digest route compares metadata and says so',
  { timeout: 120_000 },
  () =>
    withReplEnv(
      'remote',
      async (env) => {
        await seedBoth(env);
        await env.replicate('r', { base: { up_to: Number(UP_TO) } });
        const base = await settled(env, 'clean');
        assert.equal(base.verify, 'digest');
        assert.equal(base.on_mismatch, 'stop');
        assert.equal(base.payloads_compared, false);
        await caughtUp(env, 2 * AFTER);
        assert.equal(statusOf(env.manager, 'r').counters.records_written, 2 * AFTER);
      },
      { dstEnv: { FERRY_DIGEST_ROUTE: 'false' } },
    ),
);

test('a malformed base is refused with 422 naming the field', { timeout: 60_000 }, () =>
  withReplEnv('local', async (env) => {
    await env.storage.createBucket('src');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ base: 5 }, /'base': must be an object/],
      [{ base: {} }, /'base.up_to': must be a timestamp/],
      [{ base: { up_to: -1 } }, /'base.up_to': must be a timestamp/],
      [{ base: { up_to: 1.5 } }, /'base.up_to': must be a timestamp/],
      [{ base: { up_to: '10' } }, /'base.up_to': must be a timestamp/],
      [{ base: { up_to: 10, verify: 'maybe' } }, /'base.verify': must be 'digest' or 'trust'/],
      [{ base: { up_to: 10, on_mismatch: 'ignore' } }, /'base.on_mismatch': must be 'repair' or 'stop'/],
      [
        { base: { up_to: 10, verify: 'trust', on_mismatch: 'repair' } },
        /'base.on_mismatch': is only allowed/,
      ],
      [{ base: { up_to: 10, upto: 5 } }, /'base.upto': unknown field/],
      [{ base: { up_to: 10 }, since: 11 }, /'since': must not be after 'base.up_to'/],
      [{ base: { up_to: 10 }, until: 10 }, /'until': must be after 'base.up_to'/],
    ];
    for (const [extra, message] of cases) {
      await assert.rejects(env.replicate('r', extra), (e: unknown) => {
        assert.ok(isFerryError(e), String(e));
        assert.equal(e.status, 422, e.message);
        assert.match(e.message, message);
        return true;
      });
    }
    assert.equal(env.manager.list().replications.length, 0);
    // and a good one is shown in the settings
    await env.replicate('r', { base: { up_to: 10, verify: 'trust' } });
    assert.deepEqual(env.manager.inspect('r').settings.base, { up_to: 10n, verify: 'trust' });
  }),
);

forEachTarget(
  'a PUT with the same base keeps its verification; a changed base is checked again and restarts the copy',
  async (env) => {
    await seedBoth(env);
    const body = (base?: Record<string, unknown>) => ({
      src_bucket: 'src',
      dst_bucket: 'dst',
      ...env.destination,
      ...(base ? { base } : {}),
    });
    await env.manager.create('r', body({ up_to: UP_TO }));
    const first = await settled(env, 'clean');
    await caughtUp(env, 2 * AFTER);
    assert.deepEqual(await env.manager.update('r', body({ up_to: UP_TO, verify: 'digest' })), {
      copy: 'kept',
    });
    assert.equal(baseOf(env).state, 'clean');
    assert.equal(baseOf(env).finished_at, first.finished_at, 'not checked again');
    // a later up_to: the records between were copied meanwhile, so the new claim holds too
    const later = UP_TO + 400n;
    assert.deepEqual(await env.manager.update('r', body({ up_to: later })), { copy: 'restarted' });
    const second = await settled(env, 'clean');
    assert.equal(second.up_to, later);
    assert.notEqual(second.finished_at, first.finished_at);
    assert.equal(second.totals!.source_records, 2 * (BEFORE + 20));
    await waitFor(
      () => {
        const c = statusOf(env.manager, 'r').counters;
        return c.records_already_present === 2 * 20; // the restarted copy from `later` on: already there
      },
      {
        timeoutMs: 60_000,
        message: `copy restarted (${stringifyJson(statusOf(env.manager, 'r').counters)})`,
      },
    );
    await env.manager.update('r', body());
    assert.equal(env.manager.inspect('r').status.base, undefined);
  },
  { timeout: 120_000 },
);

/**
 * A remote destination behind a fault proxy that refuses every connection at first (the base check
 * fails and is retried, the replication stays held); `fn` gets the proxy's URL.
 */
function withUnreachableDestination(
  fn: (env: ReplEnv, proxy: FaultProxy, url: string) => Promise<void>,
): Promise<void> {
  return withReplEnv('remote', async (env) => {
    await seedBoth(env);
    const proxy = await startFaultProxy({
      host: '127.0.0.1',
      port: Number(new URL(env.destination.dst_host).port),
    });
    try {
      proxy.setMode('reset');
      await fn(env, proxy, `http://127.0.0.1:${proxy.port}`);
    } finally {
      await proxy.close();
    }
  });
}

test(
  'a base check that cannot reach the destination is retried, the replication held meanwhile',
  { timeout: 120_000 },
  () =>
    withUnreachableDestination(async (env, proxy, url) => {
      await env.replicate('r', { dst_host: url, base: { up_to: UP_TO } });
      await waitFor(() => baseOf(env).last_error !== null && baseOf(env).state === 'pending', {
        timeoutMs: 30_000,
        message: `a failed attempt (${stringifyJson(baseOf(env))})`,
      });
      const st = statusOf(env.manager, 'r');
      assert.equal(st.state, 'initializing');
      assert.match(
        String(st.state_reason),
        /verifying the base up to 10000 \(attempt \d+ failed, retrying: /,
      );
      assert.equal(st.counters.records_written, 0);
      proxy.setMode('pass');
      const base = await settled(env, 'clean');
      assert.ok(base.attempts >= 2, stringifyJson(base));
      assert.equal(base.last_error, null);
      await caughtUp(env, 2 * AFTER);
    }),
);

test(
  'a sync replication seeded from a base: writes during the check degrade with its reason, then sync again',
  { timeout: 120_000 },
  () =>
    withUnreachableDestination(async (env, proxy, url) => {
      await env.replicate('r', {
        dst_host: url,
        base: { up_to: UP_TO },
        replication_type: 'sync',
        sync: { timeout_ms: 300, on_timeout: 'degrade', recover_after_ms: 0 },
      });
      const client = syncWrites(env.storage, env.manager.syncGates);
      await client
        .bucket('src')
        .write('a', UP_TO + 5_000n, { size: 4, contentType: 'text/plain' }, Buffer.from('sync'));
      const during = env.manager.inspect('r').status;
      assert.equal(during.effective_type, 'async');
      assert.match(String(during.effective_type_reason), /verifying the base up to 10000/);
      proxy.setMode('pass');
      await settled(env, 'clean');
      await caughtUp(env, 2 * AFTER + 1);
      await waitFor(() => env.manager.inspect('r').status.effective_type === 'sync', {
        timeoutMs: 30_000,
        message: `back to sync (${stringifyJson(env.manager.inspect('r').status.effective_type_reason)})`,
      });
      assert.equal((await env.dst.bucket('dst').read('a', UP_TO + 5_000n)).meta.size, 4);
    }),
);
