/**
 * A full disk: writes get a clear 507, the server keeps serving, every acknowledged record stays
 * intact (also across a SIGKILL while full), and writes succeed again once space is freed.
 * Needs a small file system of its own (a tmpfs mount, as root); skipped where that is refused.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call as apiCall } from './helpers/ferry-api.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';

const MOUNT_MB = 24;
let mountDir = '';
let mounted = false;
let ferry: FerryProcess | undefined;

after(async () => {
  await ferry?.stop().catch(() => undefined);
  if (mounted) spawnSync('umount', ['-l', mountDir]);
  if (mountDir) rmSync(mountDir, { recursive: true, force: true });
});

test(
  'a full disk answers 507, keeps every acknowledged record and recovers when space is freed',
  { timeout: 120_000 },
  async (t) => {
    mountDir = mkdtempSync(join(tmpdir(), 'ferry-diskfull-'));
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${MOUNT_MB}m`, 'tmpfs', mountDir]);
    if (m.status !== 0) {
      t.skip('cannot mount a small tmpfs here (needs root)');
      return;
    }
    mounted = true;
    const dataPath = join(mountDir, 'data');
    ferry = await spawnFerry({ dataPath, env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
    const server = ferry;
    const call = (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}) =>
      apiCall(server, method, path, body, { headers });
    assert.equal((await call('POST', '/b/b')).status, 200);

    // Another program takes most of the disk.
    const filler = join(mountDir, 'filler.bin');
    writeFileSync(filler, Buffer.alloc((MOUNT_MB - 6) * 1024 * 1024));

    const acked = new Map<number, string>();
    let refused: { status: number; error: string | null } | undefined;
    for (let i = 1; i <= 40 && !refused; i++) {
      const payload = Buffer.alloc(256 * 1024, i);
      const r = await call('POST', `/b/b/big?ts=${i}`, payload, {
        'content-type': 'application/octet-stream',
      });
      if (r.status === 200) acked.set(i, createHash('sha256').update(payload).digest('hex'));
      else refused = { status: r.status, error: r.error };
    }
    assert.ok(refused, 'the disk filled up');
    assert.equal(refused.status, 507, `a full disk is a 507, got ${refused.status} ${refused.error}`);
    assert.match(refused.error ?? '', /disk space/i);
    assert.ok(acked.size > 0);

    // Still serving: health, info, and every acknowledged record intact.
    assert.equal((await call('GET', '/alive')).status, 200);
    const verify = async (): Promise<void> => {
      for (const [ts, sha] of acked) {
        const r = await call('GET', `/b/b/big?ts=${ts}`);
        assert.equal(r.status, 200, `record ${ts}`);
        assert.equal(createHash('sha256').update(r.body).digest('hex'), sha, `record ${ts} intact`);
      }
    };
    await verify();

    // A crash while the disk is full loses nothing that was acknowledged.
    await ferry.kill('SIGKILL');
    unlinkSync(filler);
    await ferry.restart();
    await verify();

    // With space again, writes succeed.
    const after = Buffer.from('after the disk was full');
    assert.equal((await call('POST', '/b/b/small?ts=1', after)).status, 200);
    assert.deepEqual((await call('GET', '/b/b/small?ts=1')).body, after);
  },
);
