/**
 * The replication engine on a real storage engine (replication.md §4, §9, §11), every scenario run
 * against both destinations (issue 8 item 10): a bucket of the same instance (LocalTarget) and a
 * bucket of another, in-process Ferry server (RemoteTarget over HTTP). Scope selection, stateful
 * `when` across restarts, label updates, idempotent re-delivery, conflicts and the failure log,
 * persisted definitions, slots.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Storage } from '../src/storage/types.js';
import { waitFor } from './helpers/wait.js';
import {
  forEachTarget,
  infoOf,
  readText as readAll,
  statusOf,
  writeText as write,
} from './helpers/replication-env.js';

/** The payload of one stored record as text. */
async function bodyOf(storage: Storage, bucket: string, entry: string, ts: bigint): Promise<string> {
  return (await (await storage.bucket(bucket).read(entry, ts)).buffer()).toString();
}

forEachTarget(
  'replication copies new writes with labels, content type and payload, and only those',
  async (env) => {
    await env.storage.createBucket('src');
    await write(env.storage, 'src', 'a', 1n, 'before creation');
    await env.replicate('r1');
    for (let i = 10n; i < 60n; i++) await write(env.storage, 'src', 'a', i, `rec-${i}`, { n: String(i) });
    await write(env.storage, 'src', 'b/c', 5n, 'nested');
    await waitFor(
      () =>
        statusOf(env.manager, 'r1').pending_records === 0 &&
        env.dst.hasBucket('dst') &&
        statusOf(env.manager, 'r1').counters.records_written === 51,
      { message: 'replicated' },
    );
    const got = await readAll(env.dst, 'dst', 'a');
    assert.equal(got.length, 50);
    assert.equal(got[0]!.ts, 10n);
    assert.equal(got[0]!.body, 'rec-10');
    assert.deepEqual(got[0]!.labels, { n: '10' });
    assert.equal((await env.dst.bucket('dst').read('a', 10n)).meta.contentType, 'text/plain');
    assert.equal((await readAll(env.dst, 'dst', 'b/c'))[0]!.body, 'nested');
    const st = statusOf(env.manager, 'r1');
    assert.equal(st.state, 'idle');
    assert.equal(st.counters.records_written, 51);
    assert.equal(infoOf(env.manager, 'r1').is_active, true);
  },
);

forEachTarget(
  'entries patterns, dst_prefix and when (stateful, per entry) select what is shipped',
  async (env) => {
    await env.replicate('r', {
      entries: ['cam-*', '!cam-private'],
      dst_prefix: '/robot/',
      when: { '&ok': { $eq: 'yes' }, $each_n: 2 },
    });
    for (let i = 1n; i <= 6n; i++) {
      await write(env.storage, 'src', 'cam-1', i, `c1-${i}`, { ok: 'yes' });
      await write(env.storage, 'src', 'cam-2', i, `c2-${i}`, { ok: i === 2n ? 'no' : 'yes' });
      await write(env.storage, 'src', 'cam-private', i, 'secret', { ok: 'yes' });
      await write(env.storage, 'src', 'other', i, 'o', { ok: 'yes' });
    }
    await write(env.storage, 'src', 'cam-1', 7n, 'no label');
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained' });
    // per-entry $each_n: every 2nd matching record of each entry
    assert.deepEqual(
      (await readAll(env.dst, 'dst', 'robot/cam-1')).map((r) => r.ts),
      [2n, 4n, 6n],
    );
    // cam-2: ts 2 fails `&ok`, so matches are 1,3,4,5,6 → 2nd and 4th = 3, 5
    assert.deepEqual(
      (await readAll(env.dst, 'dst', 'robot/cam-2')).map((r) => r.ts),
      [3n, 5n],
    );
    assert.equal(env.dst.bucket('dst').hasEntry('robot/cam-private'), false);
    assert.equal(env.dst.bucket('dst').hasEntry('robot/other'), false);
    const c = statusOf(env.manager, 'r').counters;
    assert.equal(c.records_written, 5);
    // 12 in scope from cam-1/cam-2 plus the unlabelled one (strict: missing label = filtered)
    assert.equal(c.records_filtered, 13 - 5);
  },
);

forEachTarget(
  'stateful when survives a restart; cursor resumes from the checkpoint; pending recomputed',
  async (env) => {
    await env.replicate('r', {
      when: { $each_n: 3 },
    });
    for (let i = 1n; i <= 4n; i++) await write(env.storage, 'src', 'e', i, `v${i}`);
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0);
    assert.deepEqual(
      (await readAll(env.dst, 'dst', 'e')).map((r) => r.ts),
      [3n],
    );
    // pause, write while paused, restart: pending is recomputed from the log
    await env.manager.setMode('r', { mode: 'paused' });
    for (let i = 5n; i <= 7n; i++) await write(env.storage, 'src', 'e', i, `v${i}`);
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 3, {
      message: 'pending while paused',
    });
    await env.reopen();
    const st = statusOf(env.manager, 'r');
    assert.equal(st.state, 'paused');
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 3, {
      message: 'pending after restart',
    });
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0);
    // the counter continued at 4 (not reset): 5th is skipped, 6th is the next 3rd
    assert.deepEqual(
      (await readAll(env.dst, 'dst', 'e')).map((r) => r.ts),
      [3n, 6n],
    );
  },
);

forEachTarget(
  'label updates are replicated, including removed labels; re-delivery is a no-op',
  async (env) => {
    await env.replicate('r');
    await write(env.storage, 'src', 'e', 1n, 'x', { a: '1', b: '2' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
    await env.storage.bucket('src').updateLabels('e', 1n, { a: '10', b: null, c: '3' });
    await waitFor(
      async () => {
        const l = (await env.dst.bucket('dst').read('e', 1n)).meta.labels;
        return l.a === '10' && l.b === undefined && l.c === '3';
      },
      { message: 'labels replicated' },
    );
    // a record identical at the destination (e.g. re-shipped after a crash) counts as already present
    await env.manager.setMode('r', { mode: 'paused' });
    await write(env.dst, 'dst', 'e', 2n, 'same');
    await write(env.storage, 'src', 'e', 2n, 'same');
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_already_present === 1);
    assert.equal(statusOf(env.manager, 'r').state, 'idle');
  },
);

forEachTarget(
  'a label removed by one of several updates shipped together is removed at the destination',
  async (env) => {
    await env.replicate('r');
    await write(env.storage, 'src', 'e', 1n, 'x', { a: '1' });
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
    // both updates of the record land in one window: the first removes `a`, the second adds `b`
    await env.manager.setMode('r', { mode: 'paused' });
    await env.storage.bucket('src').updateLabels('e', 1n, { a: null });
    await env.storage.bucket('src').updateLabels('e', 1n, { b: '2' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 2, { message: 'pending' });
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained' });
    assert.deepEqual((await env.dst.bucket('dst').read('e', 1n)).meta.labels, { b: '2' });
    assert.equal(statusOf(env.manager, 'r').counters.label_updates_written, 1);
  },
);

forEachTarget(
  'a conflicting record: stop suspends with the reason and keeps it pending; skip logs it',
  async (env) => {
    await env.dst.createBucket('dst');
    await write(env.dst, 'dst', 'e', 1n, 'different');
    await env.replicate('r');
    await write(env.storage, 'src', 'e', 1n, 'original');
    await write(env.storage, 'src', 'e', 2n, 'fine');
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
    const st = statusOf(env.manager, 'r');
    assert.match(st.state_reason ?? '', /409/);
    assert.equal(st.pending_records, 2);
    assert.equal(infoOf(env.manager, 'r').is_active, false);
    // PUT with skip resumes; the record goes to the failure log, the next one is delivered
    await env.manager.update('r', {
      src_bucket: 'src',
      dst_bucket: 'dst',
      ...env.destination,
      on_write_failure: 'skip',
    });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'drained after skip' });
    const after = statusOf(env.manager, 'r');
    assert.equal(after.counters.records_failed, 1);
    assert.equal(after.state, 'idle');
    const f = await env.manager.failures('r');
    assert.equal(f.total, 1);
    assert.equal(f.failures[0]!.ts, 1n);
    assert.equal(f.failures[0]!.status, 409);
    assert.equal(await bodyOf(env.dst, 'dst', 'e', 2n), 'fine');
    assert.equal(await bodyOf(env.dst, 'dst', 'e', 1n), 'different');
  },
);

forEachTarget(
  'definitions persist with mode 0600, disabled ignores writes, create_target false is visible',
  async (env) => {
    await env.replicate('r', {
      dst_bucket: 'nope',
      create_target: false,
      // a token that works for the remote destination; for the local one any value is kept
      dst_token: env.destination.dst_token ?? 'secret',
    });
    await write(env.storage, 'src', 'e', 1n, 'x');
    await waitFor(() => statusOf(env.manager, 'r').state === 'retrying', { message: 'retrying' });
    assert.match(statusOf(env.manager, 'r').state_reason ?? '', /does not exist/);
    assert.equal(env.dst.hasBucket('nope'), false);
    const st = await stat(join(env.dir, '.ferry', 'replications.json'));
    assert.equal(st.mode & 0o777, 0o600);
    await env.manager.setMode('r', { mode: 'disabled' });
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, {
      message: 'disabled drops pending',
    });
    await env.reopen();
    const got = env.manager.get('r');
    assert.equal(got.info.mode, 'disabled');
    assert.equal(got.settings.dst_token, null);
    assert.equal(env.manager.inspect('r').settings.create_target, false);
    assert.equal(env.manager.inspect('r').settings.dst_token, null);
    assert.equal(got.info.is_active, false);
  },
);

forEachTarget(
  'slots of removed replications are dropped at start; block overflow is passed to the slot',
  async (env) => {
    await env.replicate('kept', {
      log: { max_bytes: 5000, on_overflow: 'block' },
    });
    const kept = env.storage.changes.getSlot('replication/kept');
    assert.equal(kept?.maxBytes, 5000);
    assert.equal(kept?.onOverflow, 'block');
    // a crash between removing a definition and dropping its slot leaves an orphan behind
    await env.storage.changes.setSlot({ name: 'replication/ghost', bucket: 'src', lsn: 0n, maxBytes: 100 });
    await env.storage.changes.setSlot({ name: 'other/owner', bucket: 'src', lsn: 0n, maxBytes: 100 });
    await env.reopen();
    const names = env.storage.changes
      .listSlots()
      .map((s) => s.name)
      .sort();
    assert.deepEqual(names, ['other/owner', 'replication/kept']);
    await env.manager.remove('kept');
    assert.equal(env.storage.changes.getSlot('replication/kept'), undefined);
  },
);
