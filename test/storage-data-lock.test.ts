// One server per data directory (issue 8 item 8), with real server processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call } from './helpers/ferry-api.js';

const TOKEN = 'lock-test-token';

async function writeRecord(node: FerryProcess, ts: number): Promise<void> {
  const r = await call(node, 'POST', `/b/data/e?ts=${ts}`, Buffer.from(`record ${ts}`));
  assert.equal(r.status, 200, `write ${ts}: ${r.status} ${r.error ?? ''}`);
}

async function readRecord(node: FerryProcess, ts: number): Promise<string> {
  const r = await call(node, 'GET', `/b/data/e?ts=${ts}`);
  assert.equal(r.status, 200, `read ${ts}: ${r.status} ${r.error ?? ''}`);
  return r.text;
}

const walSegments = (dir: string): string[] =>
  readdirSync(join(dir, 'wal')).filter((n) => n.endsWith('.wal'));

test('a second server on the same data directory refuses to start, naming the holder, and harms nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-lock-'));
  const first = await spawnFerry({ dataPath: dir, token: TOKEN });
  try {
    await api(first, 'POST', '/b/data');
    for (let ts = 1; ts <= 20; ts++) await writeRecord(first, ts);
    const segmentsBefore = walSegments(dir);
    // (Should it start after all, it is stopped at once: the test must fail, not hang.)
    const refused = await spawnFerry({ dataPath: dir, token: TOKEN, startTimeoutMs: 30_000 }).then(
      async (started) => void (await started.kill()),
      (e: Error) => e,
    );
    assert.ok(refused, 'the second server must not start');
    assert.match(refused.message, /exited before it was ready/);
    assert.match(
      refused.message,
      new RegExp(`is in use by another Ferry server \\(pid ${first.pid} on host '[^']+'`),
    );
    // The refused server deleted nothing: the live WAL segment is still there, writes go on.
    assert.deepEqual(walSegments(dir), segmentsBefore);
    for (let ts = 21; ts <= 40; ts++) await writeRecord(first, ts);
    // Acknowledged writes survive a crash of the holder, and a new server takes the stale lock over.
    await first.kill('SIGKILL');
    const second = await spawnFerry({ dataPath: dir, token: TOKEN });
    try {
      for (const ts of [1, 20, 21, 40]) assert.equal(await readRecord(second, ts), `record ${ts}`);
      await writeRecord(second, 41);
      await second.stop();
      assert.ok(!existsSync(join(dir, '.ferry', 'lock')), 'a clean stop releases the lock');
      // Once more after a clean stop: nothing lost, no stale lock left behind.
      await second.restart();
      assert.equal(await readRecord(second, 41), 'record 41');
    } finally {
      await second.stop();
    }
  } finally {
    await first.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock left by a dead process or torn by a crash is taken over; a live holder on this host is not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-lock-'));
  const lockFile = join(dir, '.ferry', 'lock');
  try {
    const node = await spawnFerry({ dataPath: dir, token: TOKEN });
    await node.stop();
    // A pid that cannot be alive (above pid_max), and an empty file (a crash while the lock was written).
    for (const content of [
      JSON.stringify({ pid: 2 ** 30, host: hostname(), proc_start: null, since: 'x', token: 't' }),
      '',
    ]) {
      writeFileSync(lockFile, content);
      await node.restart();
      assert.ok(node.running);
      await node.stop();
    }
    // A live process of this host (this test runner) holds it: refused.
    writeFileSync(
      lockFile,
      JSON.stringify({ pid: process.pid, host: hostname(), proc_start: null, since: 'x', token: 't' }),
    );
    const refused = await node.restart().then(
      () => undefined,
      (e: Error) => e,
    );
    await node.stop();
    assert.match(
      String(refused?.message),
      new RegExp(`in use by another Ferry server \\(pid ${process.pid}`),
    );
    assert.ok(existsSync(lockFile), 'a live holder keeps its lock');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
