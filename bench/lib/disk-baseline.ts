/** Durable sequential write bandwidth of the disk holding a directory. */
import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Result of {@link measureDiskBandwidth}. */
export interface DiskBaseline {
  bytes: number;
  seconds: number;
  /** 10^6 bytes per second, including the fdatasync calls. */
  mbPerSec: number;
}

/** Options of {@link measureDiskBandwidth}. */
export interface DiskBaselineOptions {
  /** MiB to write; default env BENCH_DISK_MB or 1024. */
  totalMiB?: number;
  /** fdatasync every this many MiB (default 64) plus once at the end. */
  syncEveryMiB?: number;
}

/**
 * Writes `totalMiB` in 1 MiB chunks to a scratch file inside `dir` with periodic and final
 * fdatasync, and reports the rate. The scratch file is always removed.
 */
export async function measureDiskBandwidth(
  dir: string,
  opts: DiskBaselineOptions = {},
): Promise<DiskBaseline> {
  const totalMiB = opts.totalMiB ?? Number(process.env.BENCH_DISK_MB ?? 1024);
  const syncEvery = opts.syncEveryMiB ?? 64;
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  randomFillSync(chunk); // incompressible, in case the file system compresses
  const scratch = await mkdtemp(join(dir, 'disk-baseline-'));
  try {
    const fh = await open(join(scratch, 'data'), 'w');
    try {
      const t0 = performance.now();
      for (let i = 1; i <= totalMiB; i++) {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
        if (i % syncEvery === 0) await fh.datasync();
      }
      await fh.datasync();
      const seconds = (performance.now() - t0) / 1000;
      const bytes = totalMiB * chunk.length;
      return { bytes, seconds, mbPerSec: bytes / 1e6 / seconds };
    } finally {
      await fh.close();
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
