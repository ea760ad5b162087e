/**
 * PostgreSQL baseline of the verify benchmark: the records' metadata (entry, ts, size, content type,
 * labels, SHA-256 of the payload) in two tables of one throw-away cluster, `src_records` and
 * `dst_records`, and the query a PostgreSQL user would run to find the differences between the two
 * copies: a FULL OUTER JOIN on (entry, ts) keeping the rows whose other side is missing or whose
 * columns are DISTINCT. Both tables sit in the same cluster (the most favourable case: no data
 * crosses a network). Loading is setup, not measured. Undefined when PostgreSQL is not installed.
 */
import type pg from 'pg';
import { startPgCluster, type PgCluster } from './postgres-cluster.js';
import { readCpuSeconds } from './proc-cpu.js';
import {
  extraTs,
  type Difference,
  type DifferencePart,
  type PlantedDifference,
} from './verify-differences.js';

/** The layout of the records, as bench/verify.ts writes them to both Ferry instances. */
export interface PgVerifyLayout {
  records: number;
  entries: number;
  /** Payload bytes of each record. */
  payload: number;
}

/** One timed run of the comparison query. */
export interface PgCompareRun {
  seconds: number;
  /** CPU seconds of the backend that ran it (the plan has no parallel workers: see `plan`). */
  cpuSeconds: number;
  differences: Difference[];
}

/** Two loaded tables in a running cluster. */
export interface PgVerifyBaseline {
  /** e.g. "PostgreSQL 15.8 (Debian 15.8-0+deb12u1)". */
  serverVersion: string;
  /** Top node and join of the comparison's plan (EXPLAIN), e.g. "Hash Join (Full)". */
  plan: string;
  /** Seconds the load took (setup, for the log). */
  loadSeconds: number;
  /** Runs the comparison query twice in a row: the first run, then a repeat (warmer caches). */
  compare(): Promise<[PgCompareRun, PgCompareRun]>;
  /** Applies planted differences to `dst_records`, as bench/verify.ts does at the destination. */
  apply(diffs: readonly PlantedDifference[]): Promise<void>;
  /** Stops and removes the cluster; safe to call twice. */
  stop(): Promise<void>;
}

const TABLE = `(entry text NOT NULL, ts bigint NOT NULL, size integer NOT NULL, content_type text NOT NULL,
  labels jsonb NOT NULL, digest bytea NOT NULL, PRIMARY KEY (entry, ts))`;

/** Payload of a record as bench/verify.ts writes it: `record e3 123` padded with dots. */
const PAYLOAD_SQL = (bytes: number): string => `rpad('record ' || e || ' ' || ts, ${bytes}, '.')`;

export const COMPARE_SQL = `
SELECT coalesce(d.entry, s.entry) AS entry, coalesce(d.ts, s.ts) AS ts,
       CASE WHEN d.ts IS NULL THEN 'missing' WHEN s.ts IS NULL THEN 'extra' ELSE 'different' END AS kind,
       s.size IS DISTINCT FROM d.size OR s.digest IS DISTINCT FROM d.digest AS payload,
       s.labels IS DISTINCT FROM d.labels AS labels,
       s.content_type IS DISTINCT FROM d.content_type AS content_type
FROM src_records s FULL OUTER JOIN dst_records d ON s.entry = d.entry AND s.ts = d.ts
WHERE s.ts IS NULL OR d.ts IS NULL
   OR (s.size, s.content_type, s.labels, s.digest) IS DISTINCT FROM (d.size, d.content_type, d.labels, d.digest)`;

interface CompareRow {
  entry: string;
  ts: string;
  kind: Difference['kind'];
  payload: boolean;
  labels: boolean;
  content_type: boolean;
}

function toDifference(r: CompareRow): Difference {
  const d: Difference = { entry: r.entry, ts: Number(r.ts), kind: r.kind };
  if (r.kind === 'different') {
    const parts: DifferencePart[] = [];
    if (r.content_type) parts.push('content_type');
    if (r.labels) parts.push('labels');
    if (r.payload) parts.push('payload');
    d.parts = parts;
  }
  return d;
}

async function applyOne(c: pg.Client, p: PlantedDifference, payloadBytes: number): Promise<void> {
  switch (p.kind) {
    case 'remove':
      await c.query('DELETE FROM dst_records WHERE entry = $1 AND ts = $2', [p.entry, p.ts]);
      return;
    case 'relabel':
      await c.query(
        `UPDATE dst_records SET labels = labels || '{"n":"changed"}' WHERE entry = $1 AND ts = $2`,
        [p.entry, p.ts],
      );
      return;
    case 'extra':
      await c.query(
        `INSERT INTO dst_records VALUES ($1, $2, 5, 'text/plain', '{}', sha256('extra'::bytea))`,
        [p.entry, extraTs(p.ts)],
      );
      return;
    case 'payload':
      await c.query(
        `UPDATE dst_records SET digest = sha256(convert_to(repeat('A', ${payloadBytes}), 'UTF8'))
         WHERE entry = $1 AND ts = $2`,
        [p.entry, p.ts],
      );
  }
}

/**
 * Starts a cluster (autovacuum off: nothing may run beside the timed queries) and loads the same
 * records into both tables, generated server-side, then VACUUM ANALYZE.
 */
export async function startPgVerifyBaseline(layout: PgVerifyLayout): Promise<PgVerifyBaseline | undefined> {
  const cluster: PgCluster | undefined = await startPgCluster({ settings: { autovacuum: 'off' } });
  if (cluster === undefined) return undefined;
  let client: pg.Client | undefined;
  const stop = async (): Promise<void> => {
    await client?.end().catch(() => undefined);
    client = undefined;
    await cluster.stop();
  };
  try {
    const c = (client = await cluster.connect());
    const version = await c.query('SELECT version() AS v, pg_backend_pid() AS pid');
    const backend = Number((version.rows[0] as { pid: number }).pid);
    const t0 = performance.now();
    const perEntry = Math.ceil(layout.records / layout.entries);
    // unlogged: a faster load (setup); the timed query reads them as it reads any table
    await c.query(`CREATE UNLOGGED TABLE src_records ${TABLE}`);
    await c.query(
      `INSERT INTO src_records
       SELECT e, ts, ${layout.payload}, 'application/octet-stream',
              jsonb_build_object('kind', 'bench', 'n', (ts % 100)::text),
              sha256(convert_to(${PAYLOAD_SQL(layout.payload)}, 'UTF8'))
       FROM (SELECT 'e' || ((ts - 1) / $1) AS e, ts FROM generate_series(1::bigint, $2::bigint) AS ts) AS g`,
      [perEntry, layout.records],
    );
    await c.query('CREATE UNLOGGED TABLE dst_records (LIKE src_records INCLUDING ALL)');
    await c.query('INSERT INTO dst_records SELECT * FROM src_records');
    await c.query('VACUUM ANALYZE src_records, dst_records');
    const loadSeconds = (performance.now() - t0) / 1000;
    const explain = await c.query(`EXPLAIN (FORMAT JSON) ${COMPARE_SQL}`);
    const planRoot = (explain.rows[0] as { 'QUERY PLAN': Array<{ Plan: PlanNode }> })['QUERY PLAN'][0]!.Plan;
    return {
      serverVersion: String((version.rows[0] as { v: string }).v).split(' on ')[0]!,
      plan:
        planRoot['Join Type'] !== undefined
          ? joinNode(planRoot)!
          : [planRoot['Node Type'], joinNode(planRoot)].filter((n) => n !== undefined).join(' over '),
      loadSeconds,
      compare: async () => {
        const runs: PgCompareRun[] = [];
        for (let run = 0; run < 2; run++) {
          const cpu0 = readCpuSeconds(backend) ?? NaN;
          const t = performance.now();
          const r = await c.query<CompareRow>(COMPARE_SQL);
          const seconds = (performance.now() - t) / 1000;
          const cpuSeconds = (readCpuSeconds(backend) ?? NaN) - cpu0;
          runs.push({ seconds, cpuSeconds, differences: r.rows.map(toDifference) });
        }
        return [runs[0]!, runs[1]!];
      },
      apply: async (diffs) => {
        for (const p of diffs) await applyOne(c, p, layout.payload);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface PlanNode {
  'Node Type': string;
  'Join Type'?: string;
  Plans?: PlanNode[];
}

/** The first join of a plan, as "Merge Full Join" / "Hash Full Join". */
function joinNode(n: PlanNode): string | undefined {
  if (n['Join Type'] !== undefined) return `${n['Node Type']} (${n['Join Type']})`;
  for (const child of n.Plans ?? []) {
    const found = joinNode(child);
    if (found !== undefined) return found;
  }
  return undefined;
}
