// Mutations are applied only once durable, and checkpoint failures are never silent (issue 8 item 11).
// Failures are injected into real storage through its fault hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { Storage, StorageFaults } from '../src/storage/types.js';
import { FerryError } from '../src/protocol/errors.js';
import { call } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';
import { loadConfig } from '../src/config/load-config.js';
import { startFerry } from '../src/server.js';

const ioError = (what: string): Error => Object.assign(new Error(`EIO: injected ${what}`), { code: 'EIO' });

/** Fault hooks that fail while `on` says so. */
function switchableFaults(): { faults: StorageFaults; on: Set<keyof StorageFaults> } {
  const on = new Set<keyof StorageFaults>();
  return {
    on,
    faults: {
      walAppend: () => {
        if (on.has('walAppend')) throw ioError('WAL write');
      },
      checkpointWrite: (path) => {
        if (on.has('checkpointWrite') && path.endsWith('checkpoint')) throw ioError('checkpoint write');
      },
      fsyncDir: () => {
        if (on.has('fsyncDir')) throw ioError('directory fsync');
      },
    },
  };
}

const checkpointOf = (s: Storage): Promise<void> =>
  (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
const checkpointLsn = (dir: string): string => readFileSync(join(dir, 'wal', 'checkpoint'), 'utf8');

test('a label update or removal whose WAL append fails changes nothing, not even after a checkpoint and restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-durable-'));
  const { faults, on } = switchableFaults();
  let s = await openStorage({ dataPath: dir, faults, checkpointIntervalMs: 3_600_000 });
  try {
    const b = await s.createBucket('b');
    await b.write('e', 1n, { size: 1, labels: { a: '1' } }, Buffer.from('x'));
    await b.write('e', 2n, { size: 1 }, Buffer.from('y'));
    const size = b.info().size;
    const lsn = s.changes.lastLsn();
    on.add('walAppend');
    await assert.rejects(
      b.updateLabels('e', 1n, { a: '2', b: 'new' }),
      (e) => e instanceof FerryError && e.status === 500,
    );
    await assert.rejects(b.removeRecord('e', 2n), (e) => e instanceof FerryError && e.status === 500);
    on.delete('walAppend');
    assert.deepEqual((await b.read('e', 1n)).meta.labels, { a: '1' }, 'labels unchanged in memory');
    assert.equal((await (await b.read('e', 2n)).buffer()).toString(), 'y', 'record still there');
    assert.equal(b.info().size, size);
    assert.equal(s.changes.lastLsn(), lsn, 'nothing for replication to see');
    await checkpointOf(s);
    await s.close();
    s = await openStorage({ dataPath: dir, faults });
    const again = s.bucket('b');
    assert.deepEqual((await again.read('e', 1n)).meta.labels, { a: '1' }, 'labels unchanged after restart');
    assert.equal((await (await again.read('e', 2n)).buffer()).toString(), 'y');
    // Concurrent updates of one record are applied one after the other: none is lost.
    await Promise.all([
      again.updateLabels('e', 1n, { x: '1' }),
      again.updateLabels('e', 1n, { y: '1' }),
      again.updateLabels('e', 1n, { a: null }),
    ]);
    assert.deepEqual((await again.read('e', 1n)).meta.labels, { x: '1', y: '1' });
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failed periodic checkpoint is logged, does not move the checkpoint (also when a directory fsync fails) and is reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-durable-'));
  const { faults, on } = switchableFaults();
  const lines: string[] = [];
  const s = await openStorage({ dataPath: dir, faults, checkpointIntervalMs: 30, log: (l) => lines.push(l) });
  try {
    const b = await s.createBucket('b');
    await b.write('e', 1n, { size: 1 }, Buffer.from('x'));
    await waitFor(() => checkpointLsn(dir) === s.changes.lastLsn().toString(), {
      message: 'first checkpoint',
    });
    assert.deepEqual(s.health(), { last_checkpoint_error: null, last_checkpoint_error_at: null });
    let good = checkpointLsn(dir);
    let ts = 10n;
    for (const fault of ['checkpointWrite', 'fsyncDir'] as const) {
      lines.length = 0;
      on.add(fault);
      await b.write('e', ts++, { size: 1 }, Buffer.from('z'));
      await waitFor(() => lines.find((l) => l.includes('checkpoint failed')), { message: `${fault} logged` });
      assert.match(
        lines.find((l) => l.includes('checkpoint failed'))!,
        /injected/,
      );
      const health = s.health();
      assert.match(String(health.last_checkpoint_error), /injected/);
      assert.ok(
        health.last_checkpoint_error_at && !Number.isNaN(Date.parse(health.last_checkpoint_error_at)),
      );
      assert.equal(checkpointLsn(dir), good, `${fault}: the checkpoint position did not move`);
      on.delete(fault);
      // A later good checkpoint moves the position and clears the report. (A run that started
      // during the write, before its commit, may end well after the failed one and clear the
      // report with the older position: the one after it moves it.)
      await waitFor(
        () =>
          s.health().last_checkpoint_error === null && checkpointLsn(dir) === s.changes.lastLsn().toString(),
        { message: 'report cleared and position moved' },
      );
      good = checkpointLsn(dir);
    }
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GET /info shows a failed checkpoint in its storage field, next to the compatible keys', async () => {
  const { faults, on } = switchableFaults();
  const token = 'durability-token';
  const dir = mkdtempSync(join(tmpdir(), 'ferry-durable-info-'));
  const config = loadConfig({
    RS_API_TOKEN: token,
    RS_HOST: '127.0.0.1',
    RS_PORT: '0',
    RS_SYSTEM_EVENTS_ENABLED: 'false',
    RS_DATA_PATH: dir,
  });
  const ferry = await startFerry(config, { log: () => undefined, storageFaults: faults });
  const node = { url: ferry.url, token };
  try {
    const ok = await call(node, 'GET', '/info');
    assert.deepEqual((ok.json as { storage: unknown }).storage, {
      last_checkpoint_error: null,
      last_checkpoint_error_at: null,
    });
    on.add('checkpointWrite');
    await assert.rejects(checkpointOf(ferry.storage));
    const info = (await call(node, 'GET', '/info')).json as Record<string, unknown>;
    assert.match(
      String((info.storage as { last_checkpoint_error: string }).last_checkpoint_error),
      /injected/,
    );
    for (const key of [
      'version',
      'bucket_count',
      'usage',
      'uptime',
      'oldest_record',
      'latest_record',
      'defaults',
    ])
      assert.ok(key in info, key);
    on.delete('checkpointWrite');
  } finally {
    await ferry.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
