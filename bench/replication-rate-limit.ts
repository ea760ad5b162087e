/**
 * The rate-limit accuracy row of `npm run bench:replication` (issue 10 item 3): a replication
 * through a remote with `rate_limit`, a backlog of 1.5 measuring windows, and the payload bytes
 * that reach the destination during the window compared with the limit (target: within 10%).
 */
import { performance } from 'node:perf_hooks';
import type { FerryProcess } from './lib/ferry-process.js';
import { waitUntil } from './lib/wait.js';

/** What the benchmark's server handle offers (bench/replication.ts `Node`). */
export interface RateBenchNode {
  readonly proc: FerryProcess;
  call(method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown>;
  recordCount(bucket: string): Promise<number>;
}

/** Result of {@link measureRateLimit}. */
export interface RateLimitMeasurement {
  bytesPerSec: number;
  seconds: number;
  /** Records delivered within the window. */
  records: number;
  measuredBytesPerSec: number;
  ratio: number;
}

/**
 * Measures over `seconds` how close a replication's delivery rate stays to `bytesPerSec`;
 * `write(node, bucket, total, size, firstTs)` writes the backlog.
 */
export async function measureRateLimit(
  src: RateBenchNode,
  dst: RateBenchNode,
  write: (
    node: RateBenchNode,
    bucket: string,
    total: number,
    size: number,
    firstTs: number,
  ) => Promise<number>,
  bytesPerSec: number,
  seconds: number,
): Promise<RateLimitMeasurement> {
  const size = 16 * 1024;
  const total = Math.ceil((bytesPerSec * seconds * 1.5) / size);
  await src.call('POST', '/b/rsrc', {});
  await src.call('POST', '/remotes/bench', { url: dst.proc.url, token: dst.proc.token });
  await src.call('POST', '/replications/rate', {
    src_bucket: 'rsrc',
    dst_bucket: 'rdst',
    remote: 'bench',
    mode: 'paused',
    rate_limit: { bytes_per_sec: bytesPerSec },
  });
  await write(src, 'rsrc', total, size, 1_000_000);
  await src.call('PATCH', '/replications/rate/mode', { mode: 'enabled' });
  await waitUntil('the first delivery', 30_000, async () => (await dst.recordCount('rdst')) > 0, 20);
  const t0 = performance.now();
  const n0 = await dst.recordCount('rdst');
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const n1 = await dst.recordCount('rdst');
  const elapsed = (performance.now() - t0) / 1000;
  const measured = ((n1 - n0) * size) / elapsed;
  return {
    bytesPerSec,
    seconds: elapsed,
    records: n1 - n0,
    measuredBytesPerSec: measured,
    ratio: measured / bytesPerSec,
  };
}
