/**
 * Rolling-window rates (src/replication/rolling-rate.ts) and the monitor's run times
 * (src/replication/monitor.ts) with an injected clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RollingRate } from '../src/replication/rolling-rate.js';
import { ReplicationMonitor, publicHost } from '../src/replication/monitor.js';
import type { ReplicationInfo, ReplicationSettingsJson } from '../src/protocol/replications.js';

test('rates over 10 s and 1 min follow the counters, not the sampling', () => {
  const r = new RollingRate(60_000);
  // 10 records/s and 1000 B/s for 60 s, then 100 records/s for 10 s
  for (let s = 0; s <= 60; s++) r.add({ at: s * 1000, records: s * 10, bytes: s * 1000 });
  for (let s = 61; s <= 70; s++) r.add({ at: s * 1000, records: 600 + (s - 60) * 100, bytes: 60_000 });
  const now = { at: 70_000, records: 1600, bytes: 60_000 };
  assert.deepEqual(r.rate(10_000, now), { records_per_sec: 100, bytes_per_sec: 0 });
  // the minute from 10 s to 70 s: 500 + 1000 records, 50 000 bytes
  assert.deepEqual(r.rate(60_000, now), { records_per_sec: 25, bytes_per_sec: 833.33 });
  // the present may lie between samples: 70.5 s, 50 more records
  assert.deepEqual(r.rate(10_000, { at: 70_500, records: 1650, bytes: 60_000 }), {
    records_per_sec: 1050 / 10.5,
    bytes_per_sec: 0,
  });
});

test('young history averages what there is; none or a reset gives 0', () => {
  const r = new RollingRate(60_000);
  assert.deepEqual(r.rate(10_000, { at: 5, records: 7, bytes: 7 }), { records_per_sec: 0, bytes_per_sec: 0 });
  r.add({ at: 1000, records: 0, bytes: 0 });
  r.add({ at: 3000, records: 40, bytes: 400 });
  assert.deepEqual(r.rate(10_000, { at: 5000, records: 80, bytes: 800 }), {
    records_per_sec: 20,
    bytes_per_sec: 200,
  });
  // counters went down (replication recreated): the old samples no longer count
  assert.deepEqual(r.rate(10_000, { at: 6000, records: 5, bytes: 5 }), {
    records_per_sec: 0,
    bytes_per_sec: 0,
  });
  r.add({ at: 6000, records: 5, bytes: 5 });
  assert.deepEqual(r.rate(10_000, { at: 7000, records: 15, bytes: 5 }), {
    records_per_sec: 10,
    bytes_per_sec: 0,
  });
});

test('monitor: started_at is the run start (PUT restarts it), updated_at the last change', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const status: Record<string, unknown> = { state: 'idle', counters: { records_written: 0 } };
  const info: ReplicationInfo = {
    name: 'r',
    mode: 'enabled',
    is_active: true,
    is_provisioned: false,
    pending_records: 0,
  };
  const settings: ReplicationSettingsJson = {
    src_bucket: 's',
    dst_bucket: 'd',
    dst_host: 'https://u:p@h:1/x/?t=1',
    dst_token: null,
    dst_prefix: '',
    entries: [],
    when: null,
    mode: 'enabled',
    compression: 'none',
  };
  const source = {
    list: () => ({ replications: [info] }),
    inspect: () => ({ info, settings, status }),
  };
  const m = new ReplicationMonitor(source, { now: () => now, sampleMs: 0 });
  const t0 = new Date(now).toISOString();
  now += 5000;
  m.sample();
  let s = m.status('r');
  assert.equal(s.started_at, t0);
  assert.equal(s.updated_at, t0, 'nothing changed');
  assert.deepEqual(s.destination, {
    host: 'https://h:1/x',
    bucket: 'd',
    prefix: '',
    instance_id: null,
    available: false,
  });
  status.counters = { records_written: 10, bytes_written: 100 };
  now += 5000;
  s = m.status('r');
  assert.equal(s.updated_at, new Date(now).toISOString());
  assert.equal(s.started_at, t0);
  assert.deepEqual(s.throughput.last_10s, { records_per_sec: 1, bytes_per_sec: 10 });
  const putAt = new Date(now + 1000).toISOString();
  status.last_update = { at: putAt, cursor: 'kept', filter_state: 'kept' };
  now += 2000;
  s = m.status('r');
  assert.equal(s.started_at, putAt);
  assert.equal(m.activeTasks().tasks.length, 1);
  status.state = 'completed';
  assert.equal(m.activeTasks().tasks.length, 0, 'a completed run is no longer active');
  assert.equal(publicHost(''), '');
});
