/**
 * Runs (replication.md §6, issue 9 item 2): `since` initial copies while writes keep arriving,
 * `until`, one-shot runs (`continuous: false`) that end in `completed`, a copy resumed after a
 * restart, PUTs that restart a copy, and a permanent refusal that suspends until PATCH resumes it.
 * Small data, both destinations.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { ItemOutcome, ShipRecord, Target } from '../src/replication/target.js';
import { ForwardingTarget } from './helpers/forwarding-target.js';
import { forEachTarget, readText, statusOf, writeText, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

interface Progress {
  records_done: number;
  records_total: number | null;
  percent: number | null;
  eta_seconds: number | null;
  entries_total: number;
  entries_done: number;
}
type RunStatus = ReturnType<typeof statusOf> & {
  progress?: Progress;
  copy?: { completed_at: string | null };
  entry_cursors?: Array<{ entry: string; ts: bigint | null; done: boolean }>;
};
const runStatus = (env: ReplEnv, name: string): RunStatus => statusOf(env.manager, name) as RunStatus;

/** Writes `n` records `body-<ts>` to `entry` at timestamps from, from + 1, … */
async function fill(env: ReplEnv, entry: string, from: number, n: number): Promise<void> {
  if (!env.storage.hasBucket('src')) await env.storage.createBucket('src');
  for (let i = 0; i < n; i++)
    await writeText(env.storage, 'src', entry, BigInt(from + i), `body-${from + i}`);
}

/** Timestamps held by the destination's entry (empty when it has none). */
async function dstTimestamps(env: ReplEnv, entry: string): Promise<number[]> {
  if (!env.dst.hasBucket('dst')) return [];
  return (await readText(env.dst, 'dst', entry)).map((r) => Number(r.ts));
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

const waitState = (env: ReplEnv, name: string, state: string, timeoutMs = 20_000): Promise<RunStatus> =>
  waitFor(
    () => {
      const st = runStatus(env, name);
      return st.state === state ? st : false;
    },
    { timeoutMs, message: `state ${state} of ${name} (now ${runStatus(env, name).state})` },
  );

forEachTarget('since: 0 copies existing records of every entry while new writes are shipped', async (env) => {
  await fill(env, 'a', 1, 30);
  await fill(env, 'b', 1, 20);
  await env.replicate('r', { since: 0, batch: { max_records: 4 } });
  // writes arriving during the copy, in old and new ranges
  await fill(env, 'a', 100, 5);
  await fill(env, 'c', 1, 3);
  const st = await waitState(env, 'r', 'idle');
  assert.deepEqual(await dstTimestamps(env, 'a'), [...range(1, 31), ...range(100, 105)]);
  assert.deepEqual(await dstTimestamps(env, 'b'), range(1, 21));
  assert.deepEqual(await dstTimestamps(env, 'c'), range(1, 4));
  assert.equal(st.progress?.percent, 100);
  assert.equal(st.progress?.records_done, 50);
  assert.equal(st.progress?.records_total, 50);
  assert.equal(st.progress?.entries_done, 2);
  assert.ok(st.copy?.completed_at);
  assert.ok(st.entry_cursors?.every((e) => e.done));
  assert.deepEqual(
    st.entry_cursors?.map((e) => e.entry),
    ['a', 'b'],
  );
  const content = await readText(env.dst, 'dst', 'b');
  assert.equal(content[4]!.body, 'body-5');
});

forEachTarget('since and until bound the copy; a continuous run still ships every new write', async (env) => {
  await fill(env, 'a', 1, 20);
  await env.replicate('r', { since: 5, until: 15 });
  await fill(env, 'a', 30, 2);
  await waitState(env, 'r', 'idle');
  assert.deepEqual(await dstTimestamps(env, 'a'), [...range(5, 15), 30, 31]);
  assert.equal(runStatus(env, 'r').progress?.records_total, 10);
});

forEachTarget(
  'continuous: false copies what exists, ends in completed, and ships nothing later',
  async (env) => {
    await fill(env, 'a', 1, 12);
    await env.replicate('once', { continuous: false, batch: { max_records: 5 } });
    const done = await waitState(env, 'once', 'completed');
    assert.equal(done.progress?.percent, 100);
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 13));
    await fill(env, 'a', 50, 3);
    await fill(env, 'new', 1, 2);
    // the log is not pinned by a finished one-shot and its later writes are not shipped
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 13));
    assert.deepEqual(await dstTimestamps(env, 'new'), []);
    assert.equal(runStatus(env, 'once').state, 'completed');
    assert.equal(env.manager.get('once').info.pending_records, 0);
    // completed stays across restarts and PATCHes
    await env.reopen();
    assert.equal(runStatus(env, 'once').state, 'completed');
    await env.manager.setMode('once', { mode: 'enabled' });
    assert.equal(runStatus(env, 'once').state, 'completed');
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 13));
  },
);

forEachTarget(
  'a PUT that changes until restarts the copy and says so; one that changes nothing keeps it',
  async (env) => {
    await fill(env, 'a', 1, 10);
    await env.replicate('r', { since: 0, until: 5 });
    await waitState(env, 'r', 'idle');
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 5));
    const body = { src_bucket: 'src', dst_bucket: 'dst', ...env.destination };
    assert.deepEqual(await env.manager.update('r', { ...body, since: 0, until: 8 }), { copy: 'restarted' });
    await waitState(env, 'r', 'idle');
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 8));
    const st = runStatus(env, 'r') as RunStatus & { last_update?: { copy?: string } };
    assert.equal(st.last_update?.copy, 'restarted');
    assert.deepEqual(await env.manager.update('r', { ...body, since: 0, until: 8 }), { copy: 'kept' });
    assert.deepEqual(await env.manager.update('r', body), { copy: 'none' });
  },
);

/**
 * Answers writes only while `open`; holds them (unsettled) otherwise. It closes itself once
 * `closeAfter` writes were let through, so a fast machine cannot finish the copy before the
 * test sees the count.
 */
class GateTarget extends ForwardingTarget {
  open = true;
  writes = 0;
  closeAfter = Infinity;
  private held: Array<() => void> = [];
  override async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    if (this.writes >= this.closeAfter) this.open = false;
    while (!this.open) await new Promise<void>((r) => this.held.push(r));
    this.writes++;
    return this.inner.write(entry, records);
  }
  release(): void {
    this.open = true;
    this.closeAfter = Infinity;
    for (const r of this.held.splice(0)) r();
  }
}

/** The gate of the environment that runs now (tests of one file run one after another). */
let gate: GateTarget | null = null;
/** The `closeAfter` of the next gate made. */
let nextCloseAfter = Infinity;

forEachTarget(
  'a copy interrupted by a restart resumes at its per-entry cursors',
  async (env) => {
    await fill(env, 'a', 1, 40);
    await fill(env, 'b', 1, 40);
    nextCloseAfter = 4;
    await env.replicate('r', { since: 0, batch: { max_records: 5, max_in_flight: 2 } });
    const first = gate!;
    await waitFor(() => first.writes >= 4, { message: 'four batches shipped' });
    await waitFor(() => (runStatus(env, 'r').progress?.records_done ?? 0) >= 10, {
      message: 'two batches committed',
    });
    const before = runStatus(env, 'r');
    assert.equal(before.state, 'initializing');
    assert.ok((before.progress?.percent ?? 100) < 100);
    const reopened = env.reopen();
    first.release();
    await reopened;
    const resumed = runStatus(env, 'r');
    assert.ok(
      (resumed.progress?.records_done ?? 0) >= (before.progress?.records_done ?? 0),
      'progress only grows',
    );
    await waitState(env, 'r', 'idle');
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 41));
    assert.deepEqual(await dstTimestamps(env, 'b'), range(1, 41));
    const st = runStatus(env, 'r');
    assert.equal(st.progress?.records_done, 80);
    assert.equal(st.progress?.percent, 100);
    // every record arrived once, or once more as already present: at most one batch per entry
    const twice = st.counters.records_already_present!;
    assert.ok(twice <= 2 * 5, `${twice} records shipped again`);
    assert.ok(st.counters.records_written! <= 80);
    assert.ok(st.counters.records_written! + twice >= 80);
  },
  {
    // only the next target made closes (the one after the restart stays open)
    wrapTarget: (t: Target): Target => {
      gate = new GateTarget(t);
      gate.closeAfter = nextCloseAfter;
      nextCloseAfter = Infinity;
      return gate;
    },
  },
);

forEachTarget(
  'a permanent refusal suspends with its reason; PATCH enabled resumes from where it stopped',
  async (env) => {
    // the destination holds a different record at ts 5: a real conflict
    await env.dst.createBucket('dst').catch(() => undefined);
    await writeText(env.dst, 'dst', 'a', 5n, 'other content');
    await fill(env, 'a', 1, 10);
    await env.replicate('r', { since: 0, batch: { max_records: 3 } });
    const st = await waitState(env, 'r', 'suspended');
    assert.match(st.state_reason ?? '', /409|refused/);
    assert.equal(st.retries, 0, 'a permanent refusal is not retried');
    await env.dst.bucket('dst').removeRecord('a', 5n);
    await env.manager.setMode('r', { mode: 'enabled' });
    await waitState(env, 'r', 'idle');
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 11));
    const after = runStatus(env, 'r');
    assert.equal(after.counters.records_written, 10);
  },
);

forEachTarget(
  'destination bucket settings the destination refuses suspend the replication, not retry it',
  async (env) => {
    await fill(env, 'a', 1, 2);
    try {
      await env.replicate('r', { since: 0, target_settings: { max_block_records: 0 } });
    } catch (e) {
      // refused at creation by the one bucket-settings parser: just as good
      assert.equal((e as { status?: number }).status, 422);
      return;
    }
    const st = await waitState(env, 'r', 'suspended');
    assert.match(st.state_reason ?? '', /max_block_records/);
    assert.equal(st.retries, 0);
  },
);

forEachTarget(
  'a record the destination is still writing (the same record, delivered twice) is retried and then counted present, not refused',
  async (env) => {
    const body = Buffer.from('held-body-of-ts-5');
    await fill(env, 'a', 1, 4);
    await env.storage.bucket('src').write('a', 5n, { size: body.length, contentType: 'text/plain' }, body);
    if (!env.dst.hasBucket('dst')) await env.dst.createBucket('dst');
    // the destination writes the same record and holds it half done (as a first delivery in flight)
    const held = new PassThrough();
    const first = env.dst
      .bucket('dst')
      .write('a', 5n, { size: body.length, contentType: 'text/plain' }, held);
    held.write(body.subarray(0, 4));
    await env.replicate('r', { since: 0, retry: { initial_ms: 50, max_ms: 200 } });
    const retrying = await waitFor(
      () => {
        const st = runStatus(env, 'r');
        if (st.state === 'suspended') throw new Error(`suspended: ${st.state_reason}`);
        return st.retries > 0 ? st : false;
      },
      { timeoutMs: 20_000, message: 'a retry of the record still being written' },
    );
    assert.equal(retrying.last_error?.status, 425, JSON.stringify(retrying.last_error));
    held.end(body.subarray(4));
    assert.equal(await first, 'written');
    const st = await waitState(env, 'r', 'idle');
    assert.equal(st.counters.records_written, 4);
    assert.equal(st.counters.records_already_present, 1, JSON.stringify(st.counters));
    assert.deepEqual(await dstTimestamps(env, 'a'), range(1, 6));
  },
);
