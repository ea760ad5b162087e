/**
 * Unit tests of the engine parts split out of task.ts (issue 9 item 1), each on its own: the log
 * source over a fake change log (windows, positions, whole commits, pending counts), the delivery
 * health on a manual clock (backoff, outage bound, suspension) and the status as a pure function.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeliveryHealth } from '../src/replication/delivery-health.js';
import { LogSource, type LogSourceContext } from '../src/replication/log-source.js';
import { taskStatus, Throughput, type StatusView } from '../src/replication/task-status.js';
import { addItem, type Window } from '../src/replication/window.js';
import { effectiveSettings } from '../src/replication/settings.js';
import type { Change, ChangeLog } from '../src/storage/types.js';
import { ManualClock } from './helpers/manual-clock.js';
import { MemoryTarget, taskSettings } from './helpers/engine-harness.js';

const change = (lsn: bigint, entry = 'a', more = false, bucket = 'src'): Change => ({
  lsn,
  kind: 'write',
  bucket,
  entry,
  ts: lsn,
  size: 10,
  contentType: 'application/octet-stream',
  labels: {},
  digest: Buffer.alloc(16),
  origin: '',
  commitTime: 1000 + Number(lsn),
  ...(more ? { commitContinues: true as const } : {}),
});

/** A change log over an array (only what the log source reads). */
function fakeLog(changes: Change[]): ChangeLog {
  return {
    read: (after: bigint, max: number) => Promise.resolve(changes.filter((c) => c.lsn > after).slice(0, max)),
    lastLsn: () => changes.at(-1)?.lsn ?? 0n,
  } as unknown as ChangeLog;
}

function source(
  changes: Change[],
  over: Partial<LogSourceContext> = {},
): { src: LogSource; inFlight: { n: number } } {
  const inFlight = { n: 0 };
  const limits = { max_records: 2, max_bytes: 1 << 20, max_delay_ms: 50, max_in_flight: 4 };
  const src = new LogSource({
    log: fakeLog(changes),
    inScope: (c) => c.bucket === 'src' || c.bucket === 'src2',
    admit: (c: Change, w: Window, key: string) => addItem(w, c, key),
    filterSnapshot: () => null,
    limits: () => limits,
    inFlight: () => inFlight.n,
    prepared: () => true,
    urgent: () => false,
    wholeCommits: false,
    active: () => true,
    countsPending: () => true,
    now: () => 0,
    ...over,
  });
  return { src, inFlight };
}

const lsns = (w: unknown): bigint[] => (w as Window).items.map((i) => i.change.lsn);

test('log source: windows in LSN order, cut at max_records per entry, over several buckets', async () => {
  const log = [
    change(1n),
    change(2n),
    change(3n),
    change(4n, 'a', false, 'other'),
    change(5n, 'b', false, 'src2'),
  ];
  const { src } = source(log);
  src.seek({ lsn: 0n });
  const w1 = (await src.next({ lsn: 0n })) as Window;
  assert.deepEqual([lsns(w1), w1.endLsn], [[1n, 2n], 2n]);
  const w2 = (await src.next({ lsn: 0n })) as Window;
  // the change of another bucket moves the window's end, but is not shipped
  assert.deepEqual([lsns(w2), w2.endLsn], [[3n, 5n], 5n]);
  assert.equal(await src.next({ lsn: 5n }), null);
});

test('log source: a position-only window is sealed only when nothing is in flight; seek skips', async () => {
  const { src, inFlight } = source([change(1n, 'a', false, 'other'), change(2n, 'a', false, 'other')]);
  src.seek({ lsn: 0n });
  inFlight.n = 1;
  assert.equal(await src.next({ lsn: 0n }), null);
  inFlight.n = 0;
  const w = (await src.next({ lsn: 0n })) as Window;
  assert.deepEqual([w.items.length, w.endLsn], [0, 2n]);
  src.seek({ lsn: 2n });
  assert.equal(await src.next({ lsn: 2n }), null);
});

test('log source: with wholeCommits a commit is never split, and an unfinished one is not shipped', async () => {
  const log = [change(1n, 'a', true), change(2n, 'a', true), change(3n, 'a', false), change(4n, 'a', true)];
  const { src } = source(log, { wholeCommits: true });
  src.seek({ lsn: 0n });
  const w = (await src.next({ lsn: 0n })) as Window;
  assert.deepEqual(lsns(w), [1n, 2n, 3n], 'the commit of 3 in one window despite max_records 2');
  assert.equal(await src.next({ lsn: 3n }), null, 'LSN 4 continues in a commit not in the log yet');
});

test('log source: pending counts what is not read yet, and the partial window while it gathers', async () => {
  const { src, inFlight } = source([change(1n), change(2n, 'b'), change(3n, 'c')]);
  src.seek({ lsn: 0n });
  await new Promise<void>((resolve) => src.scheduleCount(resolve));
  assert.deepEqual(src.pending(), { records: 3, bytes: 30, oldest: 1001 });
  inFlight.n = 4; // busy: a partial window gathers for max_delay_ms
  const got = await src.next({ lsn: 0n });
  assert.deepEqual(got, { waitMs: 50 });
  assert.equal(src.gathering, true);
  assert.deepEqual(src.pending(), { records: 3, bytes: 30, oldest: 1001 });
});

test('delivery health: backoff on the clock, the outage bound suspends, a clean delivery ends the outage', () => {
  const clock = new ManualClock(10_000);
  const h = new DeliveryHealth(clock);
  const retry = { initial_ms: 100, max_ms: 1000, max_outage_ms: 5000 };
  assert.equal(h.failed({ status: 503, message: 'down' }, retry), null);
  assert.ok(h.retryAt! >= 10_050 && h.retryAt! <= 10_100, `first retry after 50..100 ms: ${h.retryAt}`);
  assert.deepEqual([h.retries, h.consecutiveFailures, h.contactOk], [1, 1, false]);
  clock.advance(4000);
  assert.equal(h.failed({ status: 503, message: 'down', retryAfterMs: 900 }, retry), null);
  // the backoff alone would give 100..200 ms after a second failure
  assert.equal(h.retryIn(), 900, 'retry-after honoured over the backoff');
  h.delivered(false);
  assert.deepEqual([h.contactOk, h.consecutiveFailures], [true, 2], 'other windows still failing');
  clock.advance(1000);
  assert.match(h.failed({ status: 503, message: 'down' }, retry) ?? '', /unavailable for more than 5000 ms/);
  h.delivered(true);
  assert.equal(h.consecutiveFailures, 0);
  assert.equal(h.suspend('x'.repeat(10)), 'xxxxxxxxxx');
  assert.equal(h.retryAt, null);
  h.resume();
  assert.deepEqual([h.suspendedReason, h.retryIn()], [null, 0]);
});

test('delivery health: resuming a healthy replication schedules nothing (no retrying without an error)', () => {
  const clock = new ManualClock(0);
  const reports: string[] = [];
  const h = new DeliveryHealth(clock, (...e) => reports.push(...e.map((x) => x.kind)));
  h.resume();
  assert.deepEqual([h.retryAt, h.retries, reports], [null, 0, []]);
  // a retry waiting for its backoff is made due at once
  assert.equal(
    h.failed({ status: 503, message: 'down' }, { initial_ms: 10_000, max_ms: 10_000, max_outage_ms: 0 }),
    null,
  );
  assert.ok(h.retryIn()! > 0);
  h.resume();
  assert.equal(h.retryIn(), 0);
});

test('status: a pure function of what the parts report (reading twice changes nothing)', () => {
  const throughput = new Throughput();
  throughput.sample(0, 0, 0);
  throughput.sample(500, 10, 100); // less than a second later: not a sample
  throughput.sample(2000, 40, 400);
  const view: StatusView = {
    now: 2500,
    state: { state: 'replicating', reason: null, since: 0 },
    target: new MemoryTarget(),
    settings: effectiveSettings(taskSettings()),
    cursorLsn: 7n,
    logLastLsn: 9n,
    pending: { records: 2, bytes: 20, oldest: 2000 },
    inFlightBatches: 1,
    throughput,
    counters: {} as StatusView['counters'],
    retries: 0,
    consecutiveFailures: 0,
    lastError: null,
    retryAt: null,
    needsVerify: false,
    needsVerifyReason: null,
    copy: {},
    sync: { replication_type: 'async', effective_type: 'async' },
    group: {},
  };
  const a = taskStatus(view);
  assert.deepEqual(taskStatus(view), a);
  assert.deepEqual(a.throughput, { records_per_sec: 20, bytes_per_sec: 200 });
  assert.equal(a.lag_ms, 500);
  assert.equal(a.pending_records, 2);
  assert.deepEqual(throughput.rates(8000), { records_per_sec: 0, bytes_per_sec: 0 }, 'stale after 5 s');
});
