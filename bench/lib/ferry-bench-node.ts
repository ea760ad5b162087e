/**
 * Two Ferry servers for the replication benchmarks (bench/replication.ts, bench/lib/ferry-initial-copy.ts):
 * an HTTP client per server, batch writes of synthetic records, and CPU µs per record of both.
 */
import { Pool } from 'undici';
import { spawnFerry, type FerryProcess } from './ferry-process.js';
import { readCpuSeconds } from './proc-cpu.js';

/** Records per v1 batch written by the benchmark's clients (one header each, well below limits). */
export const CLIENT_BATCH = 200;
export const MiB = 1024 * 1024;

/** One row of the replication benchmarks' result table. */
export interface BenchRow {
  workload: string;
  system: string;
  records: number;
  seconds?: number;
  recordsPerSec?: number;
  mbPerSec?: number;
  lagP50?: number;
  lagP99?: number;
  rssSrc?: number;
  rssDst?: number;
  /** CPU µs per record spent by the source and the destination instance (NaN: not measurable). */
  cpuSrc?: number;
  cpuDst?: number;
  note?: string;
}

/** CPU seconds (user + system) a process has used so far; NaN when /proc cannot tell (printed n/a). */
const cpuSeconds = (pid: number): number => readCpuSeconds(pid) ?? NaN;

/** CPU µs per record of both instances between construction and `stop(records)`. */
export class CpuMeter {
  private readonly t0: [number, number];
  constructor(
    private readonly a: number,
    private readonly b: number,
  ) {
    this.t0 = [cpuSeconds(a), cpuSeconds(b)];
  }
  stop(records: number): { cpuSrc: number; cpuDst: number } {
    return {
      cpuSrc: ((cpuSeconds(this.a) - this.t0[0]) / records) * 1e6,
      cpuDst: ((cpuSeconds(this.b) - this.t0[1]) / records) * 1e6,
    };
  }
}

/** A Ferry server with an HTTP pool and helpers. */
export class Node {
  readonly pool: Pool;
  constructor(readonly proc: FerryProcess) {
    this.pool = new Pool(proc.url, { connections: 8, pipelining: 1 });
  }

  private auth(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.proc.token}`, ...extra };
  }

  async call(
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<unknown> {
    const res = await this.pool.request({
      method,
      path: `/api/v1${path}`,
      headers: this.auth({ 'content-type': 'application/json' }),
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(
        `${method} ${path}: HTTP ${res.statusCode} ${String(res.headers['x-reduct-error'] ?? '')}`,
      );
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  /** Writes records ts … ts+n-1 of one entry in one v1 batch. */
  async writeBatch(
    bucket: string,
    entry: string,
    firstTs: number,
    n: number,
    payload: Buffer,
  ): Promise<void> {
    const headers = this.auth({
      'content-type': 'application/octet-stream',
      'content-length': String(n * payload.length),
    });
    for (let i = 0; i < n; i++)
      headers[`x-reduct-time-${firstTs + i}`] =
        `${payload.length},application/octet-stream,kind=bench,n=${(firstTs + i) % 100}`;
    const body = n === 1 ? payload : Buffer.concat(Array.from({ length: n }, () => payload));
    const res = await this.pool.request({
      method: 'POST',
      path: `/api/v1/b/${bucket}/${entry}/batch`,
      headers,
      body,
    });
    await res.body.dump();
    if (res.statusCode !== 200)
      throw new Error(`batch write: HTTP ${res.statusCode} ${String(res.headers['x-reduct-error'] ?? '')}`);
    const failed = Object.keys(res.headers).find((h) => h.startsWith('x-reduct-error-'));
    if (failed) throw new Error(`batch write: ${failed} ${String(res.headers[failed])}`);
  }

  async recordCount(bucket: string): Promise<number> {
    try {
      const info = (await this.call('GET', `/b/${bucket}`)) as { entries: Array<{ record_count: number }> };
      return info.entries.reduce((s, e) => s + Number(e.record_count), 0);
    } catch {
      return 0;
    }
  }

  async status(
    name: string,
  ): Promise<{ state: string; state_reason: string | null; pending_records: number }> {
    return (await this.call('GET', `/replications/${name}/status`)) as {
      state: string;
      state_reason: string | null;
      pending_records: number;
    };
  }

  async close(): Promise<void> {
    await this.pool.close();
    await this.proc.destroy();
  }
}

/** Two fresh Ferry servers (source and destination); `BENCH_CLI` starts them through a wrapper. */
export async function startPair(): Promise<{ src: Node; dst: Node }> {
  const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
  // BENCH_CLI=script runs the servers through a wrapper (e.g. one that records a CPU profile)
  const cli = process.env.BENCH_CLI ? { cliPath: process.env.BENCH_CLI } : {};
  const opts = (who: string) => ({
    ...cli,
    env: { ...env, PROF_DIR: `${process.env.BENCH_PROF_DIR ?? '/tmp'}/${who}` },
  });
  const [a, b] = await Promise.all([spawnFerry(opts('src')), spawnFerry(opts('dst'))]);
  return { src: new Node(a), dst: new Node(b) };
}

/** Writes `total` records into `entries` entries with `concurrency` batches in flight. */
export async function writeRecords(
  node: Node,
  bucket: string,
  total: number,
  size: number,
  firstTs: number,
  entries = 4,
  concurrency = 4,
): Promise<number> {
  const payload = Buffer.alloc(size, 0x5a);
  const perBatch = Math.max(1, Math.min(CLIENT_BATCH, Math.floor((8 * MiB) / size)));
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < total) {
      const start = next;
      const n = Math.min(perBatch, total - start);
      next += n;
      const entry = `e${Math.floor(start / perBatch) % entries}`;
      await node.writeBatch(bucket, entry, firstTs + start, n, payload);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return (performance.now() - t0) / 1000;
}
