/** Real storage engines in fresh temporary directories, for storage tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../../src/storage/engine.js';
import type { Storage, StorageOptions } from '../../src/storage/types.js';

/** A fresh temporary directory. */
export function tempDir(prefix = 'ferry-storage-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Runs `fn` with a storage opened on `dir` (default: a fresh one); closes it and removes `dir` after. */
export async function withStorage(
  fn: (s: Storage, dir: string) => Promise<void>,
  dir = tempDir(),
  opts: Omit<StorageOptions, 'dataPath'> = {},
): Promise<void> {
  const s = await openStorage({ ...opts, dataPath: dir });
  try {
    await fn(s, dir);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
