/**
 * Status tells the truth in ordinary sequences (found by probing, each failed before its fix):
 * a copy with nothing to read completes; resuming a suspension never shows `retrying` without an
 * error; writes outside a replication's scope do not flip it to `replicating`; a restart with a
 * backlog is not `idle` before the backlog is counted, and its pending figures are the backlog's from
 * the first moment; the last error survives a restart or PUT; label updates add no payload bytes to
 * `pending_bytes`; a disabled sync replication, whose writes are not waited for, says `async`.
 */
import assert from 'node:assert/strict';
import { syncWrites } from '../src/http/sync-writes.js';
import type { TaskEvent } from '../src/replication/task.js';
import { TargetError, type ItemOutcome, type ShipRecord, type Target } from '../src/replication/target.js';
import { ForwardingTarget } from './helpers/forwarding-target.js';
import {
  forEachTarget,
  infoOf,
  readText,
  statusOf,
  writeText,
  type ReplEnv,
} from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

/** Refuses every call permanently while `refusing` is set (like a revoked token); `down`: temporarily. */
let refusing = false;
let down = false;
class RefusingTarget extends ForwardingTarget {
  private check(): void {
    if (refusing) throw new TargetError(401, 'Invalid token (test)', false);
    if (down) throw new TargetError(-3, 'Connection error: ECONNREFUSED (test)', true);
  }
  override async prepare(): Promise<void> {
    this.check();
    return super.prepare();
  }
  override async write(e: string, r: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    this.check();
    return super.write(e, r);
  }
  override async update(e: string, r: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    this.check();
    return super.update(e, r);
  }
}
const wrapTarget = (t: Target): Target => new RefusingTarget(t);

const FAST = { retry: { initial_ms: 20, max_ms: 50 } };

/** A test per destination kind through the faulty target; the faults are off again afterwards. */
function faultTest(name: string, fn: (env: ReplEnv) => Promise<void>): void {
  forEachTarget(
    name,
    async (env) => {
      try {
        await fn(env);
      } finally {
        refusing = false;
        down = false;
      }
    },
    { wrapTarget },
  );
}

/** Bucket 'src' and replication 'r' with fast retries. */
async function replicateFast(env: ReplEnv): Promise<void> {
  await env.storage.createBucket('src');
  await env.replicate('r', FAST);
}

/** Refuses from now on, writes a record at `ts` and waits until 'r' is suspended by the refusal. */
async function suspendByRefusal(env: ReplEnv, ts: bigint): Promise<void> {
  refusing = true;
  await writeText(env.storage, 'src', 'e', ts, `v${ts}`);
  await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
}

/** Every state transition of `name` as `from>to(reason)`. */
function transitions(env: ReplEnv, name = 'r'): string[] {
  const log: string[] = [];
  env.manager.subscribe(name, (e: TaskEvent) => {
    if (e.type === 'state') log.push(`${e.from}>${e.to}(${e.reason})`);
  });
  return log;
}

forEachTarget('a one-shot copy of an empty bucket completes', async (env) => {
  await env.storage.createBucket('src');
  await env.replicate('r', { continuous: false });
  await waitFor(() => statusOf(env.manager, 'r').state === 'completed', { message: 'completed' });
});

forEachTarget('a copy whose since is past every record ends at once, also after a restart', async (env) => {
  await env.storage.createBucket('src');
  for (let i = 1n; i <= 3n; i++) await writeText(env.storage, 'src', 'e', i, 'x');
  await env.replicate('r', { since: 1000 });
  await waitFor(() => statusOf(env.manager, 'r').state === 'idle', { message: 'idle' });
  await env.reopen();
  await waitFor(() => statusOf(env.manager, 'r').state === 'idle', { message: 'idle after the restart' });
  assert.equal(statusOf(env.manager, 'r').counters.records_written, 0);
});

faultTest('a suspension resumed by PUT or PATCH never shows retrying without an error', async (env) => {
  const log = transitions(env);
  await replicateFast(env);
  await suspendByRefusal(env, 1n);
  refusing = false;
  await env.manager.update('r', { src_bucket: 'src', dst_bucket: 'dst', ...env.destination, ...FAST });
  assert.notEqual(statusOf(env.manager, 'r').state, 'retrying');
  await waitFor(() => statusOf(env.manager, 'r').state === 'idle', { message: 'idle after the PUT' });
  // again, resumed by PATCH after a restart
  await suspendByRefusal(env, 2n);
  refusing = false;
  await env.reopen();
  const log2 = transitions(env);
  await env.manager.setMode('r', { mode: 'enabled' });
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1, { message: 'delivered' });
  for (const l of [...log, ...log2]) assert.ok(!/>retrying\(null\)/.test(l), [...log, ...log2].join(' '));
});

forEachTarget('writes outside its scope leave a replication idle', async (env) => {
  await env.storage.createBucket('src');
  await env.storage.createBucket('other');
  await env.replicate('r');
  await waitFor(() => statusOf(env.manager, 'r').state === 'idle', { message: 'idle' });
  const log = transitions(env);
  for (let i = 1n; i <= 5n; i++) await writeText(env.storage, 'other', 'e', i, 'x');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(log, []);
  assert.equal(statusOf(env.manager, 'r').state, 'idle');
});

faultTest('right after a restart with a backlog, status is not idle with nothing pending', async (env) => {
  down = true;
  await replicateFast(env);
  for (let i = 1n; i <= 50n; i++) await writeText(env.storage, 'src', 'e', i, 'x');
  await waitFor(() => statusOf(env.manager, 'r').state === 'retrying', { message: 'retrying' });
  await env.reopen();
  const st = statusOf(env.manager, 'r');
  assert.ok(
    st.state !== 'idle' || st.cursor_lsn === st.log_last_lsn,
    `${st.state} with cursor ${st.cursor_lsn} of ${st.log_last_lsn}, ${st.pending_records} pending`,
  );
  down = false;
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 50, { message: 'delivered' });
});

faultTest(
  'right after a restart with a backlog, pending_records and pending_bytes are the backlog',
  async (env) => {
    down = true;
    await replicateFast(env);
    for (let i = 1n; i <= 50n; i++) await writeText(env.storage, 'src', 'e', i, 'x'.repeat(100));
    await waitFor(() => statusOf(env.manager, 'r').state === 'retrying', { message: 'retrying' });
    assert.equal(statusOf(env.manager, 'r').pending_records, 50);
    await env.reopen();
    const st = statusOf(env.manager, 'r');
    assert.deepEqual(
      [st.pending_records, st.pending_bytes],
      [50, 5000],
      `${st.state} right after the restart`,
    );
    assert.equal(infoOf(env.manager, 'r').pending_records, 50, 'the compatible info object');
    down = false;
    await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'delivered' });
    assert.equal(statusOf(env.manager, 'r').pending_bytes, 0);
  },
);

faultTest('label updates waiting to be shipped add no payload bytes to pending_bytes', async (env) => {
  await replicateFast(env);
  for (let i = 1n; i <= 3n; i++) await writeText(env.storage, 'src', 'e', i, 'x'.repeat(1000));
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 3, { message: 'delivered' });
  down = true;
  for (let i = 1n; i <= 3n; i++) await env.storage.bucket('src').updateLabels('e', i, { k: `v${i}` });
  await writeText(env.storage, 'src', 'e', 4n, 'y'.repeat(500));
  await waitFor(() => statusOf(env.manager, 'r').pending_records === 4, { message: '4 pending' });
  // one figure while the changes are unread, another once a window holds them
  for (let n = 0; n < 5; n++) {
    assert.equal(statusOf(env.manager, 'r').pending_bytes, 500, 'only the write carries a payload');
    await new Promise((r) => setTimeout(r, 30));
  }
  await env.reopen(); // counted from the log
  assert.equal(statusOf(env.manager, 'r').pending_bytes, 500, 'after a restart');
  down = false;
  await waitFor(() => statusOf(env.manager, 'r').pending_records === 0, { message: 'shipped' });
  assert.equal(statusOf(env.manager, 'r').counters.label_updates_written, 3);
  assert.equal(statusOf(env.manager, 'r').pending_bytes, 0);
});

faultTest('the last error stays as history across a restart and a PUT', async (env) => {
  await replicateFast(env);
  await suspendByRefusal(env, 1n);
  const before = statusOf(env.manager, 'r').last_error;
  assert.match(before?.message ?? '', /Invalid token/);
  await env.reopen();
  assert.deepEqual(statusOf(env.manager, 'r').last_error, before, 'after the restart');
  await env.manager.update('r', { src_bucket: 'src', dst_bucket: 'dst', ...env.destination });
  assert.match(statusOf(env.manager, 'r').last_error?.message ?? '', /Invalid token/, 'after the PUT');
});

/** `effective_type (reason)` of 'r'. */
function effective(env: ReplEnv): string {
  const st = statusOf(env.manager, 'r') as unknown as {
    effective_type: string;
    effective_type_reason: string | null;
  };
  return `${st.effective_type} (${st.effective_type_reason})`;
}

faultTest(
  'a disabled sync replication says async: its writes are not waited for, nor refused',
  async (env) => {
    await replicateFast(env);
    const client = syncWrites(env.storage, env.manager.syncGates);
    await writeText(client, 'src', 'e', 1n, 'warm'); // first contact while async
    await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1, { message: 'warm-up' });
    const sync = { replication_type: 'sync', sync: { timeout_ms: 300, on_timeout: 'fail' } };
    await env.manager.update('r', {
      src_bucket: 'src',
      dst_bucket: 'dst',
      ...env.destination,
      ...FAST,
      ...sync,
    });
    assert.equal(effective(env), 'sync (null)');
    down = true;
    await env.manager.setMode('r', { mode: 'disabled' });
    assert.match(effective(env), /^async \(mode is disabled/);
    const t0 = Date.now();
    await writeText(client, 'src', 'e', 2n, 'not waited for');
    assert.ok(Date.now() - t0 < 250, `a write waited ${Date.now() - t0} ms`);
    await env.manager.setMode('r', { mode: 'enabled' });
    assert.equal(effective(env), 'sync (null)', 'enabled again');
    // blocked by a timeout, then disabled: writes are taken again, and enabled it is sync again
    await assert.rejects(writeText(client, 'src', 'e', 3n, 'unknown'), /did not get it to its destination/);
    assert.match(effective(env), /^blocked/);
    await env.manager.setMode('r', { mode: 'disabled' });
    assert.match(effective(env), /^async \(mode is disabled/);
    await writeText(client, 'src', 'e', 4n, 'taken');
    down = false;
    await env.manager.setMode('r', { mode: 'enabled' });
    assert.equal(effective(env), 'sync (null)', 'enabled again after blocked');
    await writeText(client, 'src', 'e', 5n, 'synced');
    const got = (await readText(env.dst, 'dst', 'e')).map((r) => r.body);
    assert.ok(got.includes('synced'), `answered before it was at the destination: ${got.join(', ')}`);
  },
);
