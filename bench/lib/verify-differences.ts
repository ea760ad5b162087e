/**
 * Differences between two copies as the verify benchmark (bench/verify.ts) plants them and as every
 * comparison it times reports them (Ferry's verify, the naive comparison through the query API, the
 * PostgreSQL query), so that all three are judged against the same list.
 */

/** What part of a record differs (the names of Ferry's verify result). */
export type DifferencePart = 'payload' | 'labels' | 'content_type';

/** One record that differs between a source and a destination copy. */
export interface Difference {
  entry: string;
  ts: number;
  kind: 'missing' | 'extra' | 'different';
  /** For `different`: which parts differ (sorted). */
  parts?: DifferencePart[];
}

/**
 * A change made at the destination on purpose: `remove` a record, `relabel` it (label `n` set to
 * `changed`), add an `extra` record at `ts × 10⁶`, or rewrite its `payload` with another of the same
 * size, content type and labels.
 */
export interface PlantedDifference {
  entry: string;
  ts: number;
  kind: 'remove' | 'relabel' | 'extra' | 'payload';
}

/** Timestamp of the record an `extra` planted difference adds (far after the entry's records). */
export const extraTs = (ts: number): number => ts * 1_000_000;

/** The difference a comparison must report for a planted one. */
export function expectedDifference(p: PlantedDifference): Difference {
  switch (p.kind) {
    case 'remove':
      return { entry: p.entry, ts: p.ts, kind: 'missing' };
    case 'relabel':
      return { entry: p.entry, ts: p.ts, kind: 'different', parts: ['labels'] };
    case 'extra':
      return { entry: p.entry, ts: extraTs(p.ts), kind: 'extra' };
    case 'payload':
      return { entry: p.entry, ts: p.ts, kind: 'different', parts: ['payload'] };
  }
}

const key = (d: Difference): string =>
  `${d.entry}\u0000${d.ts}\u0000${d.kind}\u0000${(d.parts ?? []).join(',')}`;

/** How a comparison's findings match the planted differences. */
export interface DifferenceMatch {
  /** Planted differences reported exactly (same record, kind and parts). */
  found: number;
  planted: number;
  /** Reported differences that match no planted one. */
  spurious: number;
  /** Planted differences not reported, by kind (e.g. `{ payload: 2 }`). */
  missedKinds: Record<string, number>;
}

/** Compares what a comparison reported with what was planted. */
export function matchDifferences(
  reported: readonly Difference[],
  planted: readonly PlantedDifference[],
): DifferenceMatch {
  const got = new Set(reported.map(key));
  const wanted = new Set(planted.map((p) => key(expectedDifference(p))));
  const missedKinds: Record<string, number> = {};
  let found = 0;
  for (const p of planted) {
    if (got.has(key(expectedDifference(p)))) found++;
    else missedKinds[p.kind] = (missedKinds[p.kind] ?? 0) + 1;
  }
  return {
    found,
    planted: planted.length,
    spurious: [...got].filter((k) => !wanted.has(k)).length,
    missedKinds,
  };
}

/** `10/10`, `8/10 (missed 2 payload)`, `+1 spurious`: one cell of a result table. */
export function describeMatch(m: DifferenceMatch): string {
  const missed = Object.entries(m.missedKinds).map(([k, n]) => `${n} ${k}`);
  return (
    `${m.found}/${m.planted}` +
    (missed.length > 0 ? ` (missed ${missed.join(', ')})` : '') +
    (m.spurious > 0 ? ` +${m.spurious} spurious` : '')
  );
}

/** Counts of a list of differences by kind, as `3 missing, 2 extra, 5 different`. */
export function describeCounts(ds: readonly Difference[]): string {
  const n = (kind: Difference['kind']): number => ds.filter((d) => d.kind === kind).length;
  return `${n('missing')} missing, ${n('extra')} extra, ${n('different')} different`;
}
