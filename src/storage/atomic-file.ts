/** Crash-safe small-file writes: write a temp file, fsync it, rename over the target, fsync the directory. */
import { open, rename, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Mode of every data file (blocks, descriptors, indexes, WAL, settings): the server's user only. */
export const DATA_FILE_MODE = 0o600;
/** Mode of every data directory. */
export const DATA_DIR_MODE = 0o700;

/** Syncs a directory so that a rename or create inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface AtomicWriteOptions {
  /** File mode (default {@link DATA_FILE_MODE}). */
  mode?: number;
  /** Skip fsync calls (durability 'none'). */
  noSync?: boolean;
  /** Sync the file but leave the directory sync to the caller (one sync for many files). */
  noDirSync?: boolean;
}

/** Atomically replaces `path` with `data`. */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: DATA_DIR_MODE });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fh = await open(tmp, 'w', opts.mode ?? DATA_FILE_MODE);
  try {
    await fh.writeFile(data);
    if (!opts.noSync) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (!opts.noSync && !opts.noDirSync) await fsyncDir(dir);
}
