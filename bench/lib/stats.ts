/** Latency percentiles and throughput figures for benchmarks. MB means 10^6 bytes throughout. */

/** Summary of latency samples in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile (`p` in 0..100) of ascending-sorted samples; NaN for no samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** p50/p90/p99, mean and max of latency samples (any order). */
export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const arr = Array.from(sorted);
  const sum = arr.reduce((a, b) => a + b, 0);
  return {
    count: arr.length,
    mean: arr.length ? sum / arr.length : NaN,
    p50: percentile(arr, 50),
    p90: percentile(arr, 90),
    p99: percentile(arr, 99),
    max: arr.length ? arr[arr.length - 1]! : NaN,
  };
}

/** Collects per-operation latencies with a monotonic clock. */
export class LatencyRecorder {
  readonly samples: number[] = [];

  /** Runs `fn`, records how long it took in ms, returns its result. */
  async time<T>(fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.samples.push(performance.now() - t0);
    }
  }

  summary(): LatencySummary {
    return summarize(this.samples);
  }
}

/** Formats a number with thousands separators and `digits` decimals; "n/a" for undefined/NaN. */
export function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * Runs `total` operations with at most `concurrency` in flight; `op(i)` gets the operation index.
 * Resolves with the wall-clock seconds taken. The first failure stops new operations and is rethrown.
 */
export async function runConcurrent(
  total: number,
  concurrency: number,
  op: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  let failed: unknown;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < total) {
      const i = next++;
      try {
        await op(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  if (failed !== undefined) throw failed;
  return (performance.now() - t0) / 1000;
}
