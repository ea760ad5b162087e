/**
 * `rate_limit: {bytes_per_sec}` (issue 10 item 3): the token bucket and the Target decorator on a
 * manual clock (the pacing schedule exactly, throttling in the status, aborted waits), then the
 * accuracy over a real transfer to both destination kinds at once: delivered payload within 10%
 * of the limit over 10 s, with the status saying it throttles and how far behind that leaves it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type { RateLimitStatus } from '../src/protocol/replication-status.js';
import { RateLimitedTarget } from '../src/replication/rate-limited-target.js';
import { TokenBucket } from '../src/replication/token-bucket.js';
import type { ItemOutcome, ShipRecord, Target } from '../src/replication/target.js';
import { ManualClock } from './helpers/manual-clock.js';
import { openReplEnv, TARGET_KINDS, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

/** Lets the promise callbacks run that timers of the manual clock released. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('token bucket: each reservation starts when the ones before it are paid for; idle time earns no more than the burst credit', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, clock); // 1000 B/s = 1 B/ms, no credit
  const done: string[] = [];
  const take = (name: string, bytes: number): Promise<void> =>
    bucket.take(bytes).then(() => void done.push(`${name}@${clock.now() - 1_000_000}`));
  const a = take('a', 500); // at once
  const b = take('b', 200); // after a's 500 ms
  const c = take('c', 100); // after b's 200 ms more
  await settle();
  assert.deepEqual(done, ['a@0']);
  assert.equal(bucket.state().waiting, 2);
  assert.equal(bucket.state().waitingBytes, 300);
  assert.equal(bucket.state().delayMs, 800);
  clock.advance(499);
  await settle();
  assert.deepEqual(done, ['a@0']);
  clock.advance(1);
  await settle();
  assert.deepEqual(done, ['a@0', 'b@500']);
  clock.advance(200);
  await Promise.all([a, b, c]);
  assert.deepEqual(done, ['a@0', 'b@500', 'c@700']);
  assert.equal(bucket.state().throttledMs, 700, 'from the first wait to the last release');
  // a long quiet stretch: the next reservation goes at once but the one after it waits again
  clock.advance(60_000);
  await take('d', 1000);
  const e = take('e', 1);
  await settle();
  assert.equal(done.length, 4);
  clock.advance(1000);
  await e;
  assert.deepEqual(done.slice(3), ['d@60700', 'e@61700']);

  // with credit: time lost is made up for, but never more than the credit after a quiet stretch
  const credited = new TokenBucket(1000, clock, 500);
  clock.advance(10_000);
  const t0 = clock.now();
  await credited.take(300); // at once: 500 ms of credit
  await credited.take(200); // at once: the credit is used up
  await credited.take(100); // at once: due now
  let third = false;
  void credited.take(100).then(() => (third = true));
  await settle();
  assert.equal(third, false, 'the quiet 10 s earned 500 ms, not 10 s');
  clock.advance(99);
  await settle();
  assert.equal(third, false);
  clock.advance(1);
  await settle();
  assert.equal(third, true);
  assert.equal(clock.now() - t0, 100);
});

test('token bucket: an aborted wait rejects and, when last, gives its reservation back', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, clock);
  await bucket.take(1000);
  const ac = new AbortController();
  const waiting = bucket.take(5000, ac.signal);
  assert.equal(bucket.state().delayMs, 6000);
  ac.abort(new Error('reset'));
  await assert.rejects(waiting, /reset/);
  assert.equal(bucket.state().waiting, 0);
  assert.equal(bucket.state().delayMs, 1000, 'only the first reservation is still owed');
});

/** A destination that records when each write reached it. */
class RecordingTarget implements Target {
  readonly description = 'recording';
  readonly instanceId = '';
  readonly available = true;
  readonly writes: Array<{ at: number; ts: bigint[] }> = [];
  constructor(private readonly clock: ManualClock) {}
  prepare(): Promise<void> {
    return Promise.resolve();
  }
  write(_entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    this.writes.push({ at: this.clock.now() - 1_000_000, ts: records.map((r) => r.ts) });
    return Promise.resolve(records.map(() => ({ kind: 'written' as const })));
  }
  update(_entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return Promise.resolve(records.map(() => ({ kind: 'written' as const })));
  }
  reset(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const record = (ts: number, size: number): ShipRecord => ({ ts: BigInt(ts), size }) as unknown as ShipRecord;

test('rate-limited target: writes cut into tenth-of-a-second pieces, paced, outcomes in order; status while throttling', async () => {
  const clock = new ManualClock();
  const inner = new RecordingTarget(clock);
  const limited = new RateLimitedTarget(inner, 1000, clock, 0); // pieces of at most 100 B, no credit
  const records = [record(1, 60), record(2, 40), record(3, 30), record(4, 250), record(5, 10), record(6, 10)];
  const result = limited.write('e', records);
  await settle();
  assert.deepEqual(inner.writes, [{ at: 0, ts: [1n, 2n] }]);
  const st: RateLimitStatus = limited.status(350);
  assert.equal(st.throttling, true);
  assert.equal(st.waiting_bytes, 30);
  assert.equal(st.delay_ms, 130);
  assert.equal(st.catch_up_ms, 350, 'pending bytes at the limit');
  assert.ok(st.throttled_since !== null);
  for (let i = 0; i < 100; i++) {
    clock.advance(10); // each released piece reaches the target before time moves on
    await settle();
  }
  const outcomes = await result;
  assert.equal(outcomes.length, 6);
  assert.ok(outcomes.every((o) => o.kind === 'written'));
  assert.deepEqual(inner.writes, [
    { at: 0, ts: [1n, 2n] }, // 100 B
    { at: 100, ts: [3n] }, // 30 B: the 250 B record does not fit the piece
    { at: 130, ts: [4n] }, // a record larger than a piece goes alone
    { at: 380, ts: [5n, 6n] },
  ]);
  clock.advance(2000);
  assert.equal(limited.status(0).throttling, false, 'a second after the last wait');
  assert.equal(limited.status(0).throttled_ms, 380);
});

/** Payload bytes of entry `entry` in the destination bucket of `env`. */
function deliveredRecords(env: ReplEnv, entry: string): number {
  if (!env.dst.hasBucket('dst')) return 0;
  const e = env.dst
    .bucket('dst')
    .entries()
    .find((x) => x.name === entry);
  return e ? Number(e.record_count) : 0;
}

const RATE = 200_000;
const RECORD = 4000;
const WINDOW_MS = 10_000;

test(
  'rate limit over a real transfer: within 10% of bytes_per_sec over 10 s, local and remote at once',
  { timeout: 90_000 },
  async () => {
    const envs = await Promise.all(TARGET_KINDS.map((k) => openReplEnv(k)));
    try {
      const payload = Buffer.alloc(RECORD, 7);
      await Promise.all(
        envs.map(async (env) => {
          await env.replicate('limited', { rate_limit: { bytes_per_sec: RATE } });
          // 1.5 windows of backlog, written far faster than the limit
          const count = Math.ceil((RATE * WINDOW_MS * 1.5) / 1000 / RECORD);
          const items = Array.from({ length: count }, (_, i) => ({
            entry: 'cam',
            ts: BigInt(1_000_000 + i),
            opts: { size: RECORD, labels: {}, contentType: 'application/octet-stream' },
            payload,
          }));
          for (let i = 0; i < items.length; i += 100)
            await env.storage.bucket('src').writeMany(items.slice(i, i + 100));
        }),
      );
      const measured = await Promise.all(
        envs.map(async (env) => {
          await waitFor(() => deliveredRecords(env, 'cam') > 0, { timeoutMs: 10_000 });
          const t0 = performance.now();
          const n0 = deliveredRecords(env, 'cam');
          await new Promise((resolve) => setTimeout(resolve, WINDOW_MS / 2));
          const mid = env.manager.inspect('limited').status.rate_limit as RateLimitStatus;
          const pending = Number(env.manager.inspect('limited').status.pending_bytes);
          await new Promise((resolve) => setTimeout(resolve, WINDOW_MS / 2));
          const n1 = deliveredRecords(env, 'cam');
          const seconds = (performance.now() - t0) / 1000;
          return { kind: env.kind, rate: ((n1 - n0) * RECORD) / seconds, mid, pending };
        }),
      );
      for (const m of measured) {
        const ratio = m.rate / RATE;
        console.log(
          `rate limit ${m.kind}: ${Math.round(m.rate)} B/s delivered for a limit of ${RATE} (${ratio.toFixed(3)})`,
        );
        assert.ok(
          ratio >= 0.9 && ratio <= 1.1,
          `${m.kind}: ${Math.round(m.rate)} B/s is not within 10% of ${RATE}`,
        );
        assert.equal(m.mid.bytes_per_sec, RATE);
        assert.equal(m.mid.throttling, true, `${m.kind} throttles mid-transfer`);
        assert.ok(m.mid.throttled_ms > 0);
        // how far behind: about the pending bytes at the limit (sampled a moment apart)
        const expected = (m.pending / RATE) * 1000;
        assert.ok(
          Math.abs(m.mid.catch_up_ms - expected) <= 1500 && m.mid.catch_up_ms > 1000,
          `${m.kind}: catch_up_ms ${m.mid.catch_up_ms} vs ${Math.round(expected)}`,
        );
      }
    } finally {
      await Promise.all(envs.map((e) => e.close()));
    }
  },
);
