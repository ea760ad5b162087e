/**
 * A journal record must not outlive the bytes it describes: a failed write's space given back and
 * reused by a large (direct, unjournaled) write must not get the failed write's bytes at replay.
 */
import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStorage } from '../src/storage/engine.js';
import { tempDir } from './helpers/temp-storage.js';

async function* short(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}

test('a large write into the space of a failed small one keeps its bytes after a crash (journal replay)', async () => {
  const dir = tempDir();
  const image = tempDir('ferry-journal-image-');
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    const first = Buffer.alloc(500, 'f');
    await s.bucket('b').write('x', 1n, { size: first.length }, first);
    // declared 4 KiB, 1 KiB sent: refused, its reservation (the block's last) is given back
    await assert.rejects(s.bucket('b').write('x', 2n, { size: 4096 }, short(Buffer.alloc(1024, 'A'))));
    const big = Buffer.alloc(100 * 1024, 'B');
    await s.bucket('b').write('x', 3n, { size: big.length }, big);
    // the state a SIGKILL leaves: every file as written (page cache)
    cpSync(dir, image, { recursive: true });
    rmSync(join(image, '.ferry', 'lock'), { force: true });
    await s.close();
    const t = await openStorage({ dataPath: image, log: () => undefined });
    try {
      assert.deepEqual(await (await t.bucket('b').read('x', 1n)).buffer(), first);
      const got = await (await t.bucket('b').read('x', 3n)).buffer();
      assert.equal(got.length, big.length);
      assert.ok(got.equals(big), `the big record came back with ${got.indexOf('A')} as the first 'A' byte`);
    } finally {
      await t.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(image, { recursive: true, force: true });
  }
});
