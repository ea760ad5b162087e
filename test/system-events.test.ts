import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config/load-config.js';
import { openStorage } from '../src/storage/engine.js';
import { SystemEvents, SYSTEM_BUCKET } from '../src/system/system-events.js';
import type { Storage, StoredRecord } from '../src/storage/types.js';

async function withEngine(
  env: Record<string, string>,
  fn: (storage: Storage, config: ReturnType<typeof loadConfig>) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-sys-'));
  const config = loadConfig({ RS_DATA_PATH: dir, RS_API_TOKEN: 't', RS_INSTANCE_NAME: 'edge.01', ...env });
  const storage = await openStorage({ dataPath: dir, durability: 'none' });
  try {
    await fn(storage, config);
  } finally {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function all(storage: Storage, entry: string): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for await (const r of storage.bucket(SYSTEM_BUCKET).scan(entry, 0n, 0xffffffffffffffffn)) out.push(r);
  return out;
}

test('$system is created provisioned with the FIFO quota', async () => {
  await withEngine({ RS_SYSTEM_EVENTS_QUOTA_SIZE: '50MB' }, async (storage, config) => {
    const ev = await SystemEvents.open({ storage, config });
    assert.equal(ev.enabled, true);
    const b = storage.bucket(SYSTEM_BUCKET);
    assert.equal(b.info().is_provisioned, true);
    assert.equal(b.settings().quota_type, 'FIFO');
    assert.equal(b.settings().quota_size, 50_000_000n);
    await ev.close();
    // Re-opening with another quota re-applies it.
    const ev2 = await SystemEvents.open({
      storage,
      config: { ...config, systemEvents: { enabled: true, quotaSize: 1_000_000n } },
    });
    assert.equal(storage.bucket(SYSTEM_BUCKET).settings().quota_size, 1_000_000n);
    await ev2.close();
  });
});

test('audit events are aggregated and flushed in the background', async () => {
  await withEngine({}, async (storage, config) => {
    const ev = await SystemEvents.open({ storage, config, flushIntervalMs: 100 });
    ev.audit('init-token', 'GET', '/api/v1/info', 200);
    ev.audit('init-token', 'GET', '/api/v1/info', 200);
    ev.audit('init-token', 'GET', '/api/v1/info?x=1', 200);
    ev.audit('reader', 'POST', '/api/v1/b/x/e?ts=1', 403);
    ev.log('WARN', 'disk almost full');
    // The periodic flush (not close) must make them visible.
    const deadline = Date.now() + 5000;
    // Entries appear when a write starts; wait until the records themselves are committed.
    const committed = (name: string): boolean =>
      storage
        .bucket(SYSTEM_BUCKET)
        .entries()
        .some((e) => e.name === name && e.record_count > 0n);
    while (
      !['audit/edge_01/reader', 'audit/edge_01/init-token', 'logs/edge_01/messages'].every(committed) &&
      Date.now() < deadline
    )
      await sleep(50);
    const entries = storage
      .bucket(SYSTEM_BUCKET)
      .entries()
      .map((e) => e.name);
    assert.ok(entries.includes('audit/edge_01/init-token'), entries.join(','));
    assert.ok(entries.includes('audit/edge_01/reader'));
    assert.ok(entries.includes('logs/edge_01/messages'));

    const [info] = await all(storage, 'audit/edge_01/init-token');
    assert.ok(info);
    assert.equal(info.meta.contentType, 'application/json');
    assert.deepEqual(info.meta.labels, { method: 'GET', status: '200', call_count: '3' });
    const payload = JSON.parse((await info.buffer()).toString()) as Record<string, unknown>;
    assert.equal(payload['token_name'], 'init-token');
    assert.equal(payload['path'], '/api/v1/info');
    assert.equal(payload['call_count'], 3);

    const [denied] = await all(storage, 'audit/edge_01/reader');
    assert.equal(denied?.meta.labels['status'], '403');
    const [log] = await all(storage, 'logs/edge_01/messages');
    assert.deepEqual(JSON.parse((await log!.buffer()).toString()), {
      level: 'WARN',
      message: 'disk almost full',
    });
    await ev.close();
  });
});

test('records of one entry get distinct timestamps; close flushes the rest', async () => {
  await withEngine({}, async (storage, config) => {
    const ev = await SystemEvents.open({ storage, config, flushIntervalMs: 60_000 });
    for (let i = 0; i < 20; i++) ev.audit('tok', 'GET', `/api/v1/b/bucket-${i}`, 200);
    ev.log('ERROR', 'a');
    ev.log('ERROR', 'b');
    await ev.close();
    assert.equal((await all(storage, 'audit/edge_01/tok')).length, 20);
    const logs = await all(storage, 'logs/edge_01/messages');
    assert.deepEqual(
      await Promise.all(
        logs.map(async (r) => (JSON.parse((await r.buffer()).toString()) as { message: string }).message),
      ),
      ['a', 'b'],
    );
    assert.equal(ev.dropped, 0);
    // Calls after close are ignored.
    ev.audit('tok', 'GET', '/x', 200);
    await ev.flush();
    assert.equal((await all(storage, 'audit/edge_01/tok')).length, 20);
  });
});

test('a restart does not collide with records written before it', async () => {
  await withEngine({}, async (storage, config) => {
    const a = await SystemEvents.open({ storage, config, flushIntervalMs: 60_000 });
    a.audit('tok', 'GET', '/p1', 200);
    await a.close();
    const [first] = await all(storage, 'audit/edge_01/tok');
    // A second writer whose clock yields the same microsecond must move past the existing record.
    const b = await SystemEvents.open({ storage, config, flushIntervalMs: 60_000 });
    const realNow = Date.now;
    Date.now = () => Number(first!.meta.ts / 1000n);
    try {
      b.audit('tok', 'GET', '/p2', 200);
    } finally {
      Date.now = realNow;
    }
    await b.close();
    assert.equal((await all(storage, 'audit/edge_01/tok')).length, 2);
    assert.equal(b.dropped, 0);
  });
});

test('disabled: no bucket, calls are no-ops', async () => {
  await withEngine({ RS_SYSTEM_EVENTS_ENABLED: 'false' }, async (storage, config) => {
    const ev = await SystemEvents.open({ storage, config });
    assert.equal(ev.enabled, false);
    ev.audit('t', 'GET', '/', 200);
    ev.log('ERROR', 'x');
    await ev.close();
    assert.equal(storage.hasBucket(SYSTEM_BUCKET), false);
  });
});
