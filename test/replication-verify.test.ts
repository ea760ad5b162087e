/**
 * Verify and repair (replication.md §10, issue 11): against a local destination, a remote Ferry
 * (range digests over HTTP) and a plain-API destination (a Ferry with `FERRY_DIGEST_ROUTE=false`:
 * no digest route, compared through the query API like a ReductStore). Divergences made on
 * purpose are found exactly and nothing else is reported; repair makes the copy verify clean;
 * `drop_oldest` overflow is healed; a verify during live writes reports nothing spurious.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CheckpointStore } from '../src/replication/checkpoint-store.js';
import { VerifyService, type VerifyRequest } from '../src/replication/verify-service.js';
import type { VerifyResult } from '../src/protocol/verify.js';
import type { Storage } from '../src/storage/types.js';
import { forEachTarget, statusOf, withReplEnv, type ReplEnv } from './helpers/replication-env.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';
import { stringifyJson, U64_MAX } from '../src/protocol/json.js';

async function verify(env: ReplEnv, req: Partial<VerifyRequest> = {}): Promise<VerifyResult> {
  const service = new VerifyService(env.storage, env.manager, env.dir, false);
  return service.run('r', { repair: false, remove_extra: false, ...req });
}

/** Everything up to the log's end was delivered and the cursor persisted. */
async function delivered(env: ReplEnv): Promise<void> {
  const cps = new CheckpointStore(join(env.dir, '.ferry', 'replications'), 'r', false);
  await waitFor(
    async () => {
      const st = statusOf(env.manager, 'r');
      const last = env.storage.changes.lastLsn();
      return st.pending_records === 0 && st.cursor_lsn === last && ((await cps.load())?.lsn ?? 0n) >= last;
    },
    { timeoutMs: 20_000, message: 'replication delivered and checkpointed' },
  );
}

async function writeRecords(storage: Storage, entry: string, n: number, from = 1000n): Promise<void> {
  const items = [];
  for (let i = 0; i < n; i++) {
    const payload = Buffer.from(`${entry}-payload-${i}`);
    items.push({
      entry,
      ts: from + BigInt(i) * 10n,
      opts: { size: payload.length, contentType: 'text/plain', labels: { n: String(i % 5) } },
      payload,
    });
  }
  for (let i = 0; i < items.length; i += 100) await storage.bucket('src').writeMany(items.slice(i, i + 100));
}

const totalsOf = (r: VerifyResult) => ({
  missing: r.totals.missing,
  extra: r.totals.extra,
  different: r.totals.different,
});
const entryOf = (r: VerifyResult, e: string) => r.entries.find((x) => x.entry === e)!;

/** The shared scenario; `plain`: the destination has no digest route. */
async function divergences(env: ReplEnv, plain: boolean): Promise<void> {
  const rnd = seededRandom(`verify divergences ${env.kind} ${plain}`);
  await env.storage.createBucket('src', { max_block_records: 50n });
  // written before the replication exists: not part of the copy, never reported
  await writeRecords(env.storage, 'a', 1, 10n);
  await env.replicate('r');
  await writeRecords(env.storage, 'a', 600);
  await writeRecords(env.storage, 'b', 300);
  await delivered(env);

  const clean = await verify(env);
  assert.equal(clean.outcome, 'clean', stringifyJson(clean.totals));
  assert.deepEqual(totalsOf(clean), { missing: 0, extra: 0, different: 0 });
  assert.equal(clean.totals.source_records, 900);
  assert.equal(clean.method, plain ? 'metadata' : 'digest');
  assert.equal(clean.payloads_compared, !plain);

  const at = (k: number) => 1000n + BigInt(k) * 10n;
  const ks = new Set<number>();
  const pick = (max: number): number => {
    for (;;) {
      const k = Math.floor(rnd() * max);
      if (!ks.has(k)) return (ks.add(k), k);
    }
  };
  const removed = at(pick(600));
  const relabelled = at(pick(600));
  const repaid = at(pick(300)); // entry b
  const extra = at(pick(600)) + 5n;
  const late = at(pick(600)) + 3n;
  const dst = env.dst.bucket('dst');
  await dst.removeRecord('a', removed);
  await dst.updateLabels('a', relabelled, { n: 'changed', added: 'x' });
  const old = await dst.read('b', repaid);
  await dst.removeRecord('b', repaid);
  await dst.write(
    'b',
    repaid,
    { size: old.meta.size, contentType: 'text/plain', labels: old.meta.labels },
    Buffer.alloc(old.meta.size, 0x5a),
  );
  await dst.write('a', extra, { size: 5, contentType: 'text/plain' }, Buffer.from('extra'));
  // a late write into an old, sealed range at the source while the replication ignores changes
  await env.manager.setMode('r', { mode: 'disabled' });
  await env.storage
    .bucket('src')
    .write('a', late, { size: 4, contentType: 'text/plain', labels: { n: 'late' } }, Buffer.from('late'));
  await delivered(env);
  await env.manager.setMode('r', { mode: 'enabled' });

  const where = `(${REPLAY}; removed ${removed}, relabelled ${relabelled}, payload ${repaid}, extra ${extra}, late ${late})`;
  const found = await verify(env);
  assert.equal(found.outcome, 'differences', where);
  const a = entryOf(found, 'a');
  const b = entryOf(found, 'b');
  assert.deepEqual(
    a.missing.first,
    [removed, late].sort((x, y) => (x < y ? -1 : 1)),
    `missing ${where}`,
  );
  assert.deepEqual(a.extra.first, [extra], `extra ${where}`);
  assert.deepEqual(a.different.first, [{ ts: relabelled, parts: ['labels'] }], `different ${where}`);
  assert.deepEqual(b.missing.first, [], where);
  assert.deepEqual(b.extra.first, [], where);
  // without content digests, a payload of the same size cannot be told apart
  assert.deepEqual(b.different.first, plain ? [] : [{ ts: repaid, parts: ['payload'] }], `payload ${where}`);
  assert.deepEqual(totalsOf(found), { missing: 2, extra: 1, different: plain ? 1 : 2 }, where);
  if (!plain) {
    // located by descending only into differing ranges: a few round trips, not one per record
    assert.ok(found.exchange.round_trips <= 12, `round trips ${found.exchange.round_trips}`);
  }

  const repaired = await verify(env, { repair: true });
  assert.deepEqual(
    repaired.before_repair && totalsOf({ totals: repaired.before_repair } as VerifyResult),
    totalsOf(found),
  );
  assert.equal(repaired.repair!.written, plain ? 2 : 3, stringifyJson(repaired.repair));
  assert.equal(repaired.repair!.relabelled, 1);
  assert.equal(repaired.repair!.failed, 0, stringifyJson(repaired.repair!.errors));
  // extra records are only reported unless asked for
  assert.deepEqual(totalsOf(repaired), { missing: 0, extra: 1, different: 0 }, where);
  assert.deepEqual(
    (await dst.read('a', relabelled)).meta.labels,
    (await env.storage.bucket('src').read('a', relabelled)).meta.labels,
  );
  if (!plain) {
    assert.deepEqual(
      await (await dst.read('b', repaid)).buffer(),
      await (await env.storage.bucket('src').read('b', repaid)).buffer(),
    );
  }
  const removedExtra = await verify(env, { repair: true, remove_extra: true });
  assert.equal(removedExtra.repair!.removed, 1);
  assert.equal(removedExtra.outcome, 'clean');
  const after = await verify(env);
  assert.equal(after.outcome, 'clean', stringifyJson(after.totals));
  // the replication goes on as before
  await writeRecords(env.storage, 'a', 5, 100_000n);
  await delivered(env);
  assert.equal((await verify(env)).outcome, 'clean');
}

forEachTarget(
  'verify finds each divergence exactly and repair makes the copy clean',
  (env) => divergences(env, false),
  {
    timeout: 120_000,
  },
);

test(
  'verify against a destination without the digest route compares metadata and says so',
  { timeout: 120_000 },
  () => withReplEnv('remote', (env) => divergences(env, true), { dstEnv: { FERRY_DIGEST_ROUTE: 'false' } }),
);

forEachTarget(
  'a verify during live writes reports nothing spurious',
  async (env) => {
    await env.storage.createBucket('src', { max_block_records: 40n });
    await env.replicate('r');
    await writeRecords(env.storage, 'a', 400);
    await delivered(env);
    let stop = false;
    let ts = 1_000_000n;
    const writer = (async () => {
      while (!stop) {
        const items = [];
        for (let i = 0; i < 20; i++) {
          ts += 7n;
          items.push({
            entry: 'a',
            ts,
            opts: { size: 4, labels: { live: '1' } },
            payload: Buffer.from('live'),
          });
        }
        await env.storage.bucket('src').writeMany(items);
        // and a late write into an old range, now and then
        await env.storage
          .bucket('src')
          .write('a', 1001n + (ts % 3000n), { size: 1 }, Buffer.from('l'))
          .catch(() => undefined);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      for (let i = 0; i < 3; i++) {
        const r = await verify(env);
        assert.deepEqual(totalsOf(r), { missing: 0, extra: 0, different: 0 }, stringifyJson(r.entries));
        assert.equal(r.outcome, 'clean');
      }
    } finally {
      stop = true;
      await writer;
    }
    await delivered(env);
    const last = await verify(env);
    assert.equal(last.outcome, 'clean');
    assert.equal(last.totals.in_flight, 0);
  },
  { timeout: 120_000 },
);

forEachTarget(
  'a verify right after delivery judges what was delivered, before the cursor is persisted',
  async (env) => {
    await env.storage.createBucket('src');
    await env.replicate('r');
    // checkpoints are written at most every 100 ms: rounds this quick verify before most of them
    for (let k = 1; k <= 6; k++) {
      await writeRecords(env.storage, 'a', 1, BigInt(k) * 1000n);
      await waitFor(
        () => {
          const st = statusOf(env.manager, 'r');
          return st.pending_records === 0 && st.cursor_lsn === env.storage.changes.lastLsn();
        },
        { message: `round ${k} delivered` },
      );
      const r = await verify(env);
      assert.equal(r.totals.in_flight, 0, `round ${k}: delivered records are not in flight`);
      assert.equal(r.totals.source_records, k);
      assert.equal(r.outcome, 'clean');
      if (k === 3) {
        await env.dst.bucket('dst').updateLabels('a', 2000n, { n: 'changed' });
        const found = await verify(env);
        assert.equal(found.outcome, 'differences');
        assert.deepEqual(totalsOf(found), { missing: 0, extra: 0, different: 1 });
        await verify(env, { repair: true });
      }
    }
  },
);

forEachTarget(
  'drop_oldest overflow: needs_verify is set, and a verify with repair clears it',
  async (env) => {
    await env.storage.createBucket('src', {
      quota_type: 'FIFO',
      quota_size: 200_000n,
      max_block_size: 40_000n,
    });
    await env.replicate('r', { log: { max_bytes: 50_000, on_overflow: 'drop_oldest' } });
    const write = (ts: bigint) =>
      env.storage.bucket('src').write('e', ts, { size: 10_000 }, Buffer.alloc(10_000, Number(ts % 250n)));
    for (let t = 1n; t <= 5n; t++) await write(t);
    await delivered(env);
    await env.manager.setMode('r', { mode: 'paused' });
    for (let t = 6n; t <= 50n; t++) await write(t);
    await waitFor(() => statusOf(env.manager, 'r').needs_verify, { message: 'needs_verify after overflow' });
    await env.manager.setMode('r', { mode: 'enabled' });
    await delivered(env);
    const plain = await verify(env);
    assert.equal(plain.needs_verify_cleared, false, 'only a verify with repair clears it');
    assert.equal(statusOf(env.manager, 'r').needs_verify, true);
    // what the source evicted and the destination still holds is not extra: each keeps its own retention
    const healed = await verify(env, { repair: true });
    assert.equal(healed.outcome, 'clean', stringifyJson(healed.totals));
    assert.equal(healed.needs_verify_cleared, true);
    const st = statusOf(env.manager, 'r');
    assert.equal(st.needs_verify, false);
    assert.equal(st.needs_verify_reason, null);
    // the replication still runs after the restart that cleared the flag
    await write(51n);
    await delivered(env);
    assert.equal((await verify(env)).outcome, 'clean');
  },
  { timeout: 120_000 },
);

forEachTarget(
  'records a since backfill copied are part of the copy, records before the replication otherwise not',
  async (env) => {
    await env.storage.createBucket('src');
    await writeRecords(env.storage, 'a', 50);
    await env.replicate('r', { since: 1200 });
    await waitFor(() => env.dst.hasBucket('dst') && env.dst.bucket('dst').info().entry_count === 1n, {
      timeoutMs: 20_000,
      message: 'backfill',
    });
    await waitFor(
      async () => (await env.dst.bucket('dst').recordSummaries('a', 0n, U64_MAX, 100)).length === 30,
      {
        timeoutMs: 20_000,
        message: 'backfill complete',
      },
    );
    await delivered(env);
    const clean = await verify(env);
    assert.equal(clean.outcome, 'clean', stringifyJson(clean.totals));
    assert.equal(clean.totals.source_records, 30, 'ts >= since: 1200 … 1490');
    await env.dst.bucket('dst').removeRecord('a', 1300n);
    assert.deepEqual(entryOf(await verify(env), 'a').missing.first, [1300n]);
  },
  { timeout: 60_000 },
);
