/**
 * Read-ahead windows of BlockFiles must never serve bytes older than a write that was issued before
 * the read. The case seen in the replication crash test: after a SIGKILL a block file keeps the
 * bytes of unacknowledged writes past its last durable record; new records are written over them
 * while replication reads the records just before them through a read-ahead window.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BlockFiles } from '../src/storage/block-files.js';
import { tempDir } from './helpers/temp-storage.js';

/** The class of every FileHandle (not exported by node:fs/promises). */
async function fileHandlePrototype(
  path: string,
): Promise<{ read: (...args: unknown[]) => Promise<unknown> }> {
  const fh = await open(path, 'w');
  const proto = Object.getPrototypeOf(fh) as { read: (...args: unknown[]) => Promise<unknown> };
  await fh.close();
  return proto;
}

for (const size of [1024, 64 * 1024]) {
  const kind = size < 64 * 1024 ? 'queued' : 'direct';
  test(`read-ahead window: a ${kind} write issued while the window is being read is not hidden by it`, async () => {
    const dir = tempDir('ferry-block-files-');
    try {
      const path = join(dir, '1.blk');
      const files = new BlockFiles();
      // Stale bytes past the last record (left by writes that never became durable).
      await files.writeAt(path, 0, Buffer.alloc(128 * 1024, 0xaa));
      await files.syncFiles([path], false);

      const fresh = Buffer.alloc(size, 0x5b);
      let written: Promise<void> | undefined;
      const proto = await fileHandlePrototype(join(dir, 'probe'));
      const original = proto.read;
      // The write arrives after the window's bytes came from disk, before readAt has kept them.
      const read = mock.method(proto, 'read', async function (this: unknown, ...args: unknown[]) {
        const r = await original.apply(this, args);
        if (written === undefined) written = files.writeAt(path, 2048, fresh) ?? Promise.resolve();
        return r;
      });
      try {
        await files.readAt(path, 0, 1024);
      } finally {
        read.mock.restore();
      }
      assert.ok(written, 'the write was issued during the read');
      await written;
      await files.syncFiles([path], false);

      const got = await files.readAt(path, 2048, Math.min(size, 1024));
      assert.ok(got.equals(fresh.subarray(0, got.length)), 'readAt served the bytes the write replaced');
      await files.closeAll(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
