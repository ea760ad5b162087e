/**
 * The comparison of a verification (replication.md §10): source entries against destination
 * entries, range by range. With range digests, every round asks the destination for the digests of
 * all ranges still open (over all entries, one request), compares them with the source's, and cuts
 * only the ranges that differ into about `FANOUT` equally populated parts (boundaries from the side
 * with more records), down to leaves of at most `LEAF` records, which are listed and compared record
 * by record. A difference is thus located in O(log n) round trips and a clean copy costs one.
 * Without digests (a plain ReductStore), the destination's records are listed page by page and
 * merged with the source's.
 *
 * Records changed at the source after the replication's delivered position are in flight: they are
 * counted, never reported (the set is refreshed after each listing and before judging it, so that a
 * change that reached either listing is known by then).
 */
import type { Bucket, RangeDigest, RecordFilter, RecordSummary } from '../storage/types.js';
import type { DifferentPart } from '../protocol/verify.js';
import { sameLabels } from '../protocol/labels.js';
import type { PeerQuery, VerifyPeer } from './verify-peer.js';

/** Parts a range is cut into when it differs. */
export const FANOUT = 16;
/** Ranges with at most this many records on either side are listed record by record. */
export const LEAF = 32;
/** Records listed per range of a leaf (more than LEAF: live writes may add some). */
const LEAF_LIST = 4 * LEAF;
/** Records per page of a metadata comparison. */
const PAGE = 2000;

/** One source entry and the destination entry it is copied to, over [start, stop). */
export interface CompareScope {
  srcEntry: string;
  dstEntry: string;
  start: bigint;
  stop: bigint;
}

/** Source changes after the delivered position (refreshed from the change log). */
export interface InFlight {
  has(srcEntry: string, ts: bigint): boolean;
  refresh(): Promise<void>;
}

/** What differs in one scope: every timestamp (repairs need them all), ascending per kind. */
export interface ScopeDiff {
  scope: CompareScope;
  sourceRecords: number;
  missing: bigint[];
  extra: bigint[];
  /** `dstLabels`: the destination's labels when they differ (a repair removes the extra ones). */
  different: Array<{ ts: bigint; parts: DifferentPart[]; dstLabels?: Record<string, string> }>;
  inFlight: number;
}

/** Inputs of a comparison. */
export interface CompareOptions {
  source: Bucket;
  filter?: RecordFilter;
  peer: VerifyPeer;
  inFlight: InFlight;
  /** Called with the number of source records judged so far, of `total`. */
  onProgress?(done: number, total: number): void;
}

interface Open {
  diff: ScopeDiff;
  start: bigint;
  stop: bigint;
  /** Ask the destination for its boundaries (it holds many more records than the source). */
  dstBounds: boolean;
}

/** Compares every scope; resolves with one diff per scope, in order. */
export async function compareScopes(
  scopes: readonly CompareScope[],
  o: CompareOptions,
): Promise<ScopeDiff[]> {
  const diffs: ScopeDiff[] = scopes.map((scope) => ({
    scope,
    sourceRecords: 0,
    missing: [],
    extra: [],
    different: [],
    inFlight: 0,
  }));
  // the source's first round of digests also gives its counts (progress); it runs while the
  // destination is asked
  const opening = o.peer.open();
  const top = sourceDigests(
    diffs.map((diff) => ({ diff, start: diff.scope.start, stop: diff.scope.stop, dstBounds: false })),
    o,
  );
  let total = 0;
  let done = 0;
  const progress = (n: number): void => {
    done += n;
    o.onProgress?.(Math.min(done, total), total);
  };
  const counted = top.then((digests) => {
    diffs.forEach((d, i) => {
      d.sourceRecords = digests[i]!.count;
      total += digests[i]!.count;
    });
    progress(0);
  });
  counted.catch(() => undefined); // awaited below
  await opening;
  if (o.peer.method === 'metadata') {
    await counted;
    for (const d of diffs) await compareByListing(d, o, progress);
  } else {
    await compareByDigests(diffs, o, progress, top);
  }
  await counted;
  for (const d of diffs) {
    d.missing.sort(cmp);
    d.extra.sort(cmp);
    d.different.sort((a, b) => cmp(a.ts, b.ts));
  }
  return diffs;
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

async function compareByDigests(
  diffs: ScopeDiff[],
  o: CompareOptions,
  progress: (n: number) => void,
  top: Promise<RangeDigest[]>,
): Promise<void> {
  // the first round's source digests were started by the caller
  let firstRound: Promise<RangeDigest[]> | undefined = top;
  let open: Open[] = diffs.map((diff) => ({
    diff,
    start: diff.scope.start,
    stop: diff.scope.stop,
    dstBounds: false,
  }));
  let leaves: Open[] = [];
  while (open.length > 0 || leaves.length > 0) {
    if (open.length > 0) {
      const queries: PeerQuery[] = open.map((r) => ({
        entry: r.diff.scope.dstEntry,
        start: r.start,
        stop: r.stop,
        ...(r.dstBounds ? { split: FANOUT } : {}),
      }));
      const [src, dst] = await Promise.all([firstRound ?? sourceDigests(open, o), o.peer.digests(queries)]);
      firstRound = undefined;
      const next: Open[] = [];
      open.forEach((r, i) => {
        const s = src[i]!;
        const d = dst[i]!;
        if (s.count === d.count && s.digest === d.digest) {
          progress(s.count);
          return;
        }
        if (Math.max(s.count, d.count) <= LEAF) {
          leaves.push(r);
          return;
        }
        if (!r.dstBounds && d.count > 2 * s.count + LEAF) {
          next.push({ ...r, dstBounds: true }); // cut where the destination's records are
          return;
        }
        const cuts = [...new Set([...s.bounds, ...(r.dstBounds ? d.bounds : [])])]
          .filter((t) => t > r.start && t < r.stop)
          .sort(cmp);
        if (cuts.length === 0) cuts.push(r.start + (r.stop - r.start) / 2n);
        const edges = [r.start, ...cuts, r.stop];
        for (let k = 1; k < edges.length; k++) {
          if (edges[k]! > edges[k - 1]!)
            next.push({ diff: r.diff, start: edges[k - 1]!, stop: edges[k]!, dstBounds: false });
        }
      });
      open = next;
    }
    if (leaves.length > 0) {
      const batch = leaves;
      leaves = [];
      const pages = await o.peer.list(
        batch.map((r) => ({ entry: r.diff.scope.dstEntry, start: r.start, stop: r.stop, limit: LEAF_LIST })),
      );
      const srcLists: RecordSummary[][] = [];
      for (const r of batch) {
        srcLists.push(
          await o.source.recordSummaries(
            r.diff.scope.srcEntry,
            r.start,
            r.stop,
            Number.MAX_SAFE_INTEGER,
            o.filter,
          ),
        );
      }
      await o.inFlight.refresh();
      batch.forEach((r, i) => {
        const page = pages[i]!;
        let src = srcLists[i]!;
        if (page.more && page.records.length > 0) {
          // more than listed (written meanwhile): judge what was listed, compare the rest again
          const last = page.records[page.records.length - 1]!.ts;
          src = src.filter((x) => x.ts <= last);
          open.push({ diff: r.diff, start: last + 1n, stop: r.stop, dstBounds: false });
        }
        judge(r.diff, src, page.records, o, progress);
      });
    }
  }
}

/** Source digests of the open ranges (boundaries asked for every one of them). */
async function sourceDigests(open: readonly Open[], o: CompareOptions): Promise<RangeDigest[]> {
  const out = [];
  for (const r of open) {
    const [d] = await o.source.rangeDigests(
      r.diff.scope.srcEntry,
      [{ start: r.start, stop: r.stop, split: FANOUT }],
      o.filter,
    );
    out.push(d!);
  }
  return out;
}

/** A plain destination: both sides listed page by page over the scope, merged. */
async function compareByListing(
  d: ScopeDiff,
  o: CompareOptions,
  progress: (n: number) => void,
): Promise<void> {
  let from = d.scope.start;
  const stop = d.scope.stop;
  while (from < stop) {
    const [page] = await o.peer.list([{ entry: d.scope.dstEntry, start: from, stop, limit: PAGE }]);
    const upTo =
      page!.more && page!.records.length > 0 ? page!.records[page!.records.length - 1]!.ts + 1n : stop;
    const src = await o.source.recordSummaries(
      d.scope.srcEntry,
      from,
      upTo,
      Number.MAX_SAFE_INTEGER,
      o.filter,
    );
    await o.inFlight.refresh();
    judge(d, src, page!.records, o, progress);
    from = upTo;
  }
}

/** Record-by-record comparison of one listed range. */
function judge(
  d: ScopeDiff,
  src: readonly RecordSummary[],
  dst: readonly RecordSummary[],
  o: CompareOptions,
  progress: (n: number) => void,
): void {
  let i = 0;
  let j = 0;
  const flying = (ts: bigint): boolean => {
    if (!o.inFlight.has(d.scope.srcEntry, ts)) return false;
    d.inFlight++;
    return true;
  };
  while (i < src.length || j < dst.length) {
    const s = src[i];
    const t = dst[j];
    if (t === undefined || (s !== undefined && s.ts < t.ts)) {
      if (!flying(s!.ts)) d.missing.push(s!.ts);
      i++;
      continue;
    }
    if (s === undefined || t.ts < s.ts) {
      if (!flying(t.ts)) d.extra.push(t.ts);
      j++;
      continue;
    }
    const parts: DifferentPart[] = [];
    // a plain destination has no content digests: only sizes say whether payloads differ
    if (s.size !== t.size || (t.digest !== '' && s.digest !== t.digest)) parts.push('payload');
    if (s.contentType !== t.contentType) parts.push('content_type');
    if (!sameLabels(s.labels, t.labels)) parts.push('labels');
    if (parts.length > 0 && !flying(s.ts)) {
      d.different.push(
        parts.includes('labels') ? { ts: s.ts, parts, dstLabels: t.labels } : { ts: s.ts, parts },
      );
    }
    i++;
    j++;
  }
  progress(src.length);
}
