/** `BENCH_QUICK=1` runs every benchmark at its small sizes (a smoke run, not figures to quote). */
export const QUICK = process.env.BENCH_QUICK === '1';

/** A size from the environment variable `name`, else `full` (or `fast` under BENCH_QUICK). */
export function benchNumber(name: string, full: number, fast: number): number {
  return Number(process.env[name] ?? (QUICK ? fast : full));
}
