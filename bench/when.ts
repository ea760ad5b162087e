/**
 * `when` evaluation throughput (api.md §13): evaluations per second over 1,000,000 pre-generated
 * label sets for a simple comparison, a five-clause condition and a stateful sampling condition.
 * Run: `npm run bench:when` (or `node dist/bench/when.js` after a build).
 */
import { compileCondition, type EvalContext } from '../src/query/condition/index.js';
import { parseJson } from '../src/protocol/json.js';
import { fmt } from './lib/stats.js';
import { printTable } from './lib/table.js';

export interface Row {
  name: string;
  evalsPerSec: number;
  nsPerEval: number;
  /** evalsPerSec / target (5,000,000/s). */
  ratio: number;
  passed: number;
}

const TARGET = 5_000_000;
const COUNT = 1_000_000;

function makeContexts(count: number): EvalContext[] {
  // Values come from small pools, like real label sets, so memory stays modest.
  const scores = Array.from({ length: 1000 }, (_, i) => String(i % 100));
  const temps = Array.from({ length: 1000 }, (_, i) => (20 + (i % 800) / 10).toFixed(1));
  const cameras = ['front', 'front', 'front', 'back'];
  const out: EvalContext[] = new Array(count);
  let seed = 12345;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const base = 1_700_000_000_000_000n;
  for (let i = 0; i < count; i++) {
    out[i] = {
      ts: base + BigInt(i * 1000),
      labels: {
        camera: cameras[rnd() & 3],
        score: scores[rnd() % 1000],
        temp: temps[rnd() % 1000],
        flag: rnd() & 1 ? 'true' : 'false',
        zone: 'a',
      },
    };
  }
  return out;
}

const CASES: Array<[string, string]> = [
  ['simple comparison', '{"&score": {"$gt": 50}}'],
  [
    'five clauses',
    '{"&camera": {"$ne": "side"}, "&score": {"$gte": 0}, "&temp": {"$lt": 200.5}, "$in": ["&flag", true, false], "$has": ["zone"]}',
  ],
  ['stateful sampling', '{"&score": {"$gt": 10}, "$each_n": 10, "$each_t": "5ms"}'],
];

function measure(name: string, when: string, contexts: EvalContext[]): Row {
  // Warm up on a fresh copy so the measured one starts from clean state.
  const warm = compileCondition(parseJson(when));
  for (let i = 0; i < 200_000; i++) warm.evaluate(contexts[i % contexts.length]);
  const cond = compileCondition(parseJson(when));
  let passed = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < contexts.length; i++) if (cond.evaluate(contexts[i])) passed++;
  const ns = Number(process.hrtime.bigint() - t0);
  const evalsPerSec = (contexts.length / ns) * 1e9;
  return { name, evalsPerSec, nsPerEval: ns / contexts.length, ratio: evalsPerSec / TARGET, passed };
}

/** Runs the benchmark and returns one row per case (best of three runs). */
export async function runWhenBench(count = COUNT): Promise<Row[]> {
  const contexts = makeContexts(count);
  const rows: Row[] = [];
  for (const [name, when] of CASES) {
    let best: Row | undefined;
    for (let r = 0; r < 3; r++) {
      const row = measure(name, when, contexts);
      if (!best || row.evalsPerSec > best.evalsPerSec) best = row;
      await new Promise((resolve) => setImmediate(resolve));
    }
    rows.push(best!);
  }
  return rows;
}

/** Prints rows as an aligned table. */
export function printRows(rows: Row[]): void {
  printTable(
    [
      { header: 'name', key: 'name', align: 'left' },
      { header: 'evals/s', format: (r) => fmt(r.evalsPerSec), align: 'right' },
      { header: 'ns/eval', format: (r) => fmt(r.nsPerEval, 1), align: 'right' },
      { header: 'ratio to 5M/s', format: (r) => `${fmt(r.ratio, 2)}x`, align: 'right' },
      { header: 'passed', format: (r) => fmt(r.passed), align: 'right' },
    ],
    rows,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printRows(await runWhenBench());
  console.log('');
  const { runQueryScanBench, printScanRows } = await import('./query-scan.js');
  printScanRows(await runQueryScanBench());
}
