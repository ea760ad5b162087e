/**
 * The sync gate on a manual clock (replication.md §7): writers wait for their own position, a
 * timeout blocks (`fail`) or degrades (`degrade`), and both return to sync by themselves once the
 * replication is healthy and caught up; settings are validated with 422s naming the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncGate, type SyncGateHooks, type SyncHealth } from '../src/replication/sync-gate.js';
import { parseSyncFields, SYNC_DEFAULTS } from '../src/replication/sync-settings.js';
import type { SyncSettings } from '../src/protocol/replications.js';
import { ManualClock } from './helpers/manual-clock.js';

interface Engine extends SyncGateHooks {
  healthNow: SyncHealth;
  last: bigint;
  wakes: number;
  changes: number;
}

function setup(settings: Partial<SyncSettings> = {}): { gate: SyncGate; clock: ManualClock; engine: Engine } {
  const clock = new ManualClock();
  const gate = new SyncGate(
    'r',
    { ...SYNC_DEFAULTS, timeout_ms: 1000, recover_after_ms: 5000, ...settings },
    clock,
  );
  const engine: Engine = {
    healthNow: { ok: true, reason: null, disabled: false },
    last: 0n,
    wakes: 0,
    changes: 0,
    health() {
      return this.healthNow;
    },
    wake() {
      this.wakes++;
    },
    changed() {
      this.changes++;
    },
    lastLsn() {
      return this.last;
    },
    destinationInstance: () => '',
  };
  gate.attach(engine);
  return { gate, clock, engine };
}

/** 'pending' until the promise settles, then 'ok' or the error's status and message. */
function track(p: Promise<unknown>): { get: () => string } {
  let state = 'pending';
  p.then(
    () => (state = 'ok'),
    (e: { status: number; message: string }) => (state = `${e.status} ${e.message}`),
  );
  return { get: () => state };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('each writer waits for its own position only, and a waiting writer wakes the engine', async () => {
  const { gate, engine } = setup();
  const a = track(gate.wait(5n));
  const b = track(gate.wait(9n));
  assert.equal(engine.wakes, 2);
  assert.equal(gate.waiting(), true);
  gate.delivered(6n);
  await flush();
  assert.equal(a.get(), 'ok');
  assert.equal(b.get(), 'pending');
  gate.delivered(9n);
  await flush();
  assert.equal(b.get(), 'ok');
  assert.equal(gate.waiting(), false);
  // a position delivered already does not wait at all
  assert.equal(await Promise.race([gate.wait(3n).then(() => 'ok'), flush().then(() => 'late')]), 'ok');
  assert.equal(gate.type, 'sync');
});

test("a single-record write is answered by its own record's delivery; a batch or an update waits for the position", async () => {
  const { gate } = setup();
  const early = track(gate.wait(7n, true));
  const batch = track(gate.wait(6n)); // its other records may be in a request not answered yet
  const before = track(gate.wait(5n, true));
  gate.recordsDelivered([7n, 6n]);
  await flush();
  assert.deepEqual([early.get(), batch.get(), before.get()], ['ok', 'pending', 'pending']);
  assert.equal(gate.status().sync.waiting_writes, 2);
  gate.recordsDelivered([9n]);
  await flush();
  assert.deepEqual([batch.get(), before.get()], ['pending', 'pending'], 'another record answers nobody');
  gate.delivered(6n);
  await flush();
  assert.deepEqual([batch.get(), before.get()], ['ok', 'ok']);
});

test('fail: the write that times out gets 503 outcome unknown, later ones are refused at once until caught up', async () => {
  const { gate, clock, engine } = setup({ on_timeout: 'fail' });
  engine.last = 10n;
  const w = track(gate.wait(10n));
  clock.advance(999);
  await flush();
  assert.equal(w.get(), 'pending', 'answered before its timeout');
  engine.healthNow = { ok: false, reason: 'Destination unavailable: ECONNREFUSED', disabled: false };
  clock.advance(1);
  await flush();
  assert.match(
    w.get(),
    /^503 The write is stored here, but sync replication 'r' did not get it .*unknown.*retrying the same write is safe/,
  );
  assert.equal(gate.type, 'blocked');
  assert.throws(
    () => gate.admit(),
    (e: { status: number; message: string }) => {
      assert.equal(e.status, 503);
      assert.match(
        e.message,
        /refused: sync replication 'r' cannot reach its destination \(Destination unavailable: ECONNREFUSED\); nothing was stored/,
      );
      return true;
    },
  );
  const st = gate.status();
  assert.equal(st.effective_type, 'blocked');
  assert.equal(st.effective_type_reason, 'Destination unavailable: ECONNREFUSED');
  assert.deepEqual(st.sync.transitions, { to_sync: 0, to_async: 0, to_blocked: 1 });
  assert.equal(st.sync.timed_out_writes, 1);
  assert.equal(engine.changes, 1);
  // healthy again, but the write that timed out is not delivered yet: still blocked
  engine.healthNow = { ok: true, reason: null, disabled: false };
  clock.advance(500);
  assert.throws(() => gate.admit());
  gate.delivered(10n);
  assert.equal(gate.type, 'sync');
  gate.admit();
  assert.deepEqual(gate.status().sync.transitions, { to_sync: 1, to_async: 0, to_blocked: 1 });
  assert.equal(gate.status().sync.last_transition?.from, 'blocked');
});

test('fail: blocked stays blocked while the replication is unhealthy even when nothing is pending', async () => {
  const { gate, clock, engine } = setup({ on_timeout: 'fail' });
  engine.last = 4n;
  const w = track(gate.wait(4n));
  engine.healthNow = { ok: false, reason: 'down', disabled: false };
  clock.advance(1000);
  await flush();
  assert.match(w.get(), /^503/);
  gate.delivered(4n); // the write arrived after all, but the destination is failing now
  clock.advance(10_000);
  assert.equal(gate.type, 'blocked');
  engine.healthNow = { ok: true, reason: null, disabled: false };
  clock.advance(100); // the gate looks at the engine's health by itself
  assert.equal(gate.type, 'sync');
});

test('degrade: a timeout answers every waiting write, runs async, and returns to sync after staying healthy and catching up', async () => {
  const { gate, clock, engine } = setup({ on_timeout: 'degrade', recover_after_ms: 5000 });
  engine.last = 20n;
  const first = track(gate.wait(10n));
  clock.advance(500);
  const second = track(gate.wait(20n));
  engine.healthNow = { ok: false, reason: 'Timeout: destination', disabled: false };
  clock.advance(500);
  await flush();
  assert.equal(first.get(), 'ok');
  assert.equal(second.get(), 'ok', 'availability first: nobody keeps waiting once degraded');
  assert.equal(gate.type, 'async');
  assert.equal(gate.status().effective_type_reason, 'Timeout: destination');
  // async: writes do not wait
  assert.equal(await Promise.race([gate.wait(30n).then(() => 'ok'), flush().then(() => 'late')]), 'ok');
  // healthy for less than recover_after_ms, then unhealthy again: the period starts over
  engine.healthNow = { ok: true, reason: null, disabled: false };
  clock.advance(4000);
  engine.healthNow = { ok: false, reason: 'flapping', disabled: false };
  clock.advance(200);
  engine.healthNow = { ok: true, reason: null, disabled: false };
  clock.advance(4900);
  assert.equal(gate.type, 'async', 'recovered before being healthy for recover_after_ms');
  engine.last = 40n;
  clock.advance(200);
  assert.equal(gate.type, 'async', 'healthy long enough but the log is not delivered up to where it stood');
  gate.delivered(39n);
  assert.equal(gate.type, 'async');
  gate.delivered(40n);
  assert.equal(gate.type, 'sync');
  assert.deepEqual(gate.status().sync.transitions, { to_sync: 1, to_async: 1, to_blocked: 0 });
  // sync again: writes wait
  const third = track(gate.wait(41n));
  await flush();
  assert.equal(third.get(), 'pending');
  gate.delivered(41n);
  await flush();
  assert.equal(third.get(), 'ok');
});

test('a disabled replication never holds writes; removing a replication answers its waiters 503', async () => {
  const { gate, engine } = setup();
  engine.healthNow = { ok: false, reason: 'mode is disabled', disabled: true };
  assert.equal(await Promise.race([gate.wait(7n).then(() => 'ok'), flush().then(() => 'late')]), 'ok');
  engine.healthNow = { ok: true, reason: null, disabled: false };
  const w = track(gate.wait(8n));
  gate.close(false);
  await flush();
  assert.match(w.get(), /^503 .*was removed or restarted.*retrying the same write is safe/);
});

test('sync settings are validated with 422s naming the field', () => {
  assert.deepEqual(parseSyncFields({}), {});
  assert.deepEqual(parseSyncFields({ replication_type: 'async' }), {});
  assert.deepEqual(parseSyncFields({ replication_type: 'sync' }), { replication_type: 'sync' });
  assert.deepEqual(
    parseSyncFields({ replication_type: 'sync', sync: { timeout_ms: 50, on_timeout: 'degrade' } }),
    {
      replication_type: 'sync',
      sync: { timeout_ms: 50, on_timeout: 'degrade' },
    },
  );
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ replication_type: 'SYNC' }, /'replication_type': must be 'async' or 'sync'/],
    [{ sync: { timeout_ms: 10 } }, /'sync': is only allowed with replication_type 'sync'/],
    [{ replication_type: 'sync', sync: [] }, /'sync': must be an object/],
    [
      { replication_type: 'sync', sync: { timeout_ms: 0 } },
      /'sync.timeout_ms': must be an integer between 1 and 600000/,
    ],
    [{ replication_type: 'sync', sync: { timeout_ms: 1.5 } }, /'sync.timeout_ms'/],
    [{ replication_type: 'sync', sync: { timeout_ms: '100' } }, /'sync.timeout_ms'/],
    [
      { replication_type: 'sync', sync: { on_timeout: 'retry' } },
      /'sync.on_timeout': must be 'fail' or 'degrade'/,
    ],
    [{ replication_type: 'sync', sync: { recover_after_ms: -1 } }, /'sync.recover_after_ms'/],
    [{ replication_type: 'sync', sync: { timeoutms: 1 } }, /'sync.timeoutms': unknown field/],
    [
      { replication_type: 'sync', continuous: false },
      /'replication_type': 'sync' needs a continuous replication/,
    ],
  ];
  for (const [body, re] of bad) {
    assert.throws(
      () => parseSyncFields(body),
      (e: { status: number; message: string }) => {
        assert.equal(e.status, 422, JSON.stringify(body));
        assert.match(e.message, re);
        return true;
      },
    );
  }
});
