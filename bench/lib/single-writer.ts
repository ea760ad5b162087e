/** A concurrent writer of single 1 KiB records, for the latency a client sees while a job runs. */
import { randomBytes } from 'node:crypto';
import type { Pool } from 'undici';
import { fmt, LatencyRecorder, type LatencySummary } from './stats.js';
import { printTable } from './table.js';

const PAYLOAD = randomBytes(1024);

/** What the writers did. */
export interface WriterResult {
  writes: number;
  seconds: number;
  latency: LatencySummary;
}

/**
 * `writers` loops of single-record writes of 1 KiB to `<bucket>/live` (timestamps from `ts`, shared
 * between calls) until `done()`.
 */
export async function singleWriter(
  pool: Pool,
  auth: string,
  bucket: string,
  writers: number,
  ts: { next: bigint },
  done: () => boolean,
): Promise<WriterResult> {
  const latency = new LatencyRecorder();
  let writes = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (!done()) {
        const at = ts.next++;
        const res = await latency.time(async () => {
          const r = await pool.request({
            method: 'POST',
            path: `/api/v1/b/${bucket}/live?ts=${at}`,
            headers: { authorization: auth, 'content-type': 'application/octet-stream' },
            body: PAYLOAD,
          });
          await r.body.dump();
          return r;
        });
        if (res.statusCode !== 200) throw new Error(`writer: HTTP ${res.statusCode}`);
        writes++;
      }
    }),
  );
  return { writes, seconds: (performance.now() - t0) / 1000, latency: latency.summary() };
}

/** A JSON call to `/api/v1{path}` of the server behind `pool`; throws unless it answers 200. */
export function apiCaller(
  pool: Pool,
  auth: string,
): (method: 'POST' | 'GET', path: string, body?: unknown) => Promise<unknown> {
  return async (method, path, body) => {
    const res = await pool.request({
      method,
      path: `/api/v1${path}`,
      headers: { authorization: auth },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(`${method} ${path}: ${res.statusCode} ${String(res.headers['x-reduct-error'])}`);
    return text === '' ? undefined : JSON.parse(text);
  };
}

/** Prints the issue-14 target (p99 growth < 2× while a job runs) as met or missed. */
export function printP99Verdict(baseline: WriterResult, withJob: WriterResult, what: string): void {
  const growth = withJob.latency.p99 / baseline.latency.p99;
  printTable(
    [
      { header: 'target', key: 'target' },
      { header: 'measured', key: 'measured' },
      { header: 'result', key: 'result' },
    ],
    [
      {
        target: `${what} p99 grows by < 2× while the job runs`,
        measured: `${fmt(growth, 2)}× (${fmt(baseline.latency.p99, 2)} → ${fmt(withJob.latency.p99, 2)} ms)`,
        result: growth < 2 ? 'met' : 'missed',
      },
    ],
  );
}
