/**
 * Verifications of replications (replication.md §10, issue 11): `POST
 * /api/v1/replications/{name}/verify` compares the replication's source scope with its destination
 * (verify-compare.ts), optionally repairs (verify-repair.ts) and verifies again; the last result of
 * each replication is kept (and persisted) for `GET …/verify`. A running verification is visible in
 * `active_tasks` and in the replication's status and events, with progress.
 *
 * What is compared: per source entry in scope (patterns, `$meta` children, `when` on metadata; a
 * stateful `when` cannot be verified), the destination entry with `dst_prefix`, from the source
 * entry's oldest record (each side keeps its own retention: what the source evicted is not extra
 * at the destination) or from `start`, up to `stop`. Changes after the replication's delivered
 * cursor (acknowledged by the destination, persisted or not yet) are in flight and not judged.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors } from '../protocol/errors.js';
import { parseJson, stringifyJson, U64_MAX } from '../protocol/json.js';
import {
  VERIFY_FIRST_LISTED,
  type EntryVerification,
  type VerificationTask,
  type VerifyResult,
} from '../protocol/verify.js';
import { compileCondition } from '../query/condition/index.js';
import { compileEntryPatterns, isMetaEntry, matchesWithMeta } from '../query/entry-pattern.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { Labels, RecordFilter, Storage } from '../storage/types.js';
import { destinationEntry, type ReplicationSettings } from './settings.js';
import type { Target } from './target.js';
import { compareScopes, type CompareScope, type InFlight, type ScopeDiff } from './verify-compare.js';
import type { VerifyPeer } from './verify-peer.js';
import { repairDiffs } from './verify-repair.js';

/** What a verification needs of one replication (the replication manager provides it). */
export interface VerifySubject {
  /** The settings the task runs with (a stored filter resolved into `when`). */
  settings: ReplicationSettings;
  /** A fresh target like the task's (repairs ship through it); closed after the verification. */
  target: Target;
  /** The destination to compare with; closed after the verification. */
  peer: VerifyPeer;
  /** The replication's delivered cursor: every change up to it was acknowledged (or skipped). */
  deliveredLsn(): Promise<bigint>;
  /** The source's log position when the replication was created (verify-origin.ts). */
  createdLsn(): Promise<bigint | undefined>;
  /** Why the replication needs verification, null when it does not. */
  needsVerifyReason(): string | null;
  /** Clears `needs_verify` if its reason is still `reason`; resolves whether it did. */
  clearNeedsVerify(reason: string): Promise<boolean>;
}

/** Where the subjects come from. */
export interface VerifySubjects {
  /** Throws 404 for an unknown replication. */
  verifySubject(name: string): VerifySubject;
}

/** `POST …/verify` body and query. */
export interface VerifyRequest {
  start?: bigint;
  stop?: bigint;
  /** Source entry names or patterns narrowing the replication's scope. */
  entries?: string[];
  repair: boolean;
  remove_extra: boolean;
}

/**
 * The `since` / `until` of a replication's copy. With a `base`, everything before `up_to` is
 * claimed and the copy starts there: the destination is expected to hold all of it.
 */
function copyBounds(s: ReplicationSettings): { from?: bigint; until?: bigint } {
  const big = (v: unknown): bigint | undefined =>
    typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : undefined;
  const out: { from?: bigint; until?: bigint } = {};
  const from = s.base ? 0n : big(s.since);
  const until = big(s.until);
  if (from !== undefined) out.from = from;
  if (until !== undefined) out.until = until;
  return out;
}

/** Change-log entries read per call when collecting what is in flight. */
const LOG_PAGE = 4096;

function u64Field(v: unknown, what: string): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint' && v >= 0n && v <= U64_MAX) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v) && BigInt(v) <= U64_MAX) return BigInt(v);
  throw Errors.verifyInvalid(`'${what}' must be a timestamp in microseconds`);
}

/** Validates a verify request (body may be empty; `repair` comes from the query string). */
export function parseVerifyRequest(body: unknown, query: URLSearchParams): VerifyRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== 'object' || Array.isArray(b)) throw Errors.verifyInvalid('the body must be a JSON object');
  for (const k of Object.keys(b)) {
    if (!['start', 'stop', 'entries', 'remove_extra'].includes(k))
      throw Errors.verifyInvalid(`unknown field '${k}'`);
  }
  const flag = (raw: string | null, what: string): boolean => {
    if (raw === null || raw === 'false') return false;
    if (raw === 'true') return true;
    throw Errors.verifyInvalid(`'${what}' must be true or false`);
  };
  const req: VerifyRequest = { repair: flag(query.get('repair'), 'repair'), remove_extra: false };
  const start = u64Field(b.start ?? query.get('start') ?? undefined, 'start');
  const stop = u64Field(b.stop ?? query.get('stop') ?? undefined, 'stop');
  if (start !== undefined) req.start = start;
  if (stop !== undefined) req.stop = stop;
  if (start !== undefined && stop !== undefined && start >= stop)
    throw Errors.verifyInvalid("'start' must be before 'stop'");
  if (b.entries !== undefined) {
    if (
      !Array.isArray(b.entries) ||
      b.entries.length > 1000 ||
      !b.entries.every((e) => typeof e === 'string' && e.length > 0 && e.length <= 1024)
    ) {
      throw Errors.verifyInvalid("'entries' must be a list of at most 1000 entry names or patterns");
    }
    req.entries = b.entries as string[];
  }
  if (b.remove_extra !== undefined) {
    if (typeof b.remove_extra !== 'boolean')
      throw Errors.verifyInvalid("'remove_extra' must be true or false");
    req.remove_extra = b.remove_extra;
  }
  if (req.remove_extra && !req.repair) throw Errors.verifyInvalid("'remove_extra' needs ?repair=true");
  return req;
}

/** Source changes after the delivered position, per source entry. */
class LogInFlight implements InFlight {
  private readonly keys = new Map<string, Set<bigint>>();
  private after: bigint;

  constructor(
    private readonly storage: Storage,
    private readonly bucket: string,
    delivered: bigint,
  ) {
    this.after = delivered;
  }

  has(entry: string, ts: bigint): boolean {
    return this.keys.get(entry)?.has(ts) ?? false;
  }

  async refresh(): Promise<void> {
    const log = this.storage.changes;
    const last = log.lastLsn();
    while (this.after < last) {
      const page = await log.read(this.after, LOG_PAGE);
      if (page.length === 0) break;
      for (const c of page) {
        if (c.bucket !== this.bucket) continue;
        let set = this.keys.get(c.entry);
        if (!set) this.keys.set(c.entry, (set = new Set()));
        set.add(c.ts);
      }
      this.after = page[page.length - 1]!.lsn;
    }
  }
}

interface Running {
  task: VerificationTask;
}

const firstOf = (list: readonly bigint[]) => ({
  count: list.length,
  first: list.slice(0, VERIFY_FIRST_LISTED),
});

/** Verifications of every replication of this instance. */
export class VerifyService {
  private readonly running = new Map<string, Running>();
  private readonly last = new Map<string, VerifyResult>();
  private readonly listeners = new Map<string, Set<(e: { type: 'changed' }) => void>>();
  private readonly dir: string;

  constructor(
    private readonly storage: Storage,
    private readonly subjects: VerifySubjects,
    dataPath: string,
    private readonly sync = true,
  ) {
    this.dir = join(dataPath, '.ferry', 'verify');
  }

  /** `{type: 'changed'}` whenever a verification of `name` progressed or finished. */
  subscribe(name: string, listener: (e: { type: 'changed' }) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(name);
    };
  }

  private emit(name: string): void {
    for (const l of this.listeners.get(name) ?? []) {
      try {
        l({ type: 'changed' });
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /** Verifications running now (for `active_tasks`), sorted by name. */
  active(): VerificationTask[] {
    return [...this.running.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, r]) => ({ ...r.task, progress: { ...r.task.progress } }));
  }

  /** The running verification of `name`, else a summary of its last result, else null. */
  statusOf(name: string): Record<string, unknown> | null {
    const r = this.running.get(name);
    if (r) return { running: true, ...r.task };
    const l = this.last.get(name);
    if (!l) return null;
    return { running: false, finished_at: l.finished_at, outcome: l.outcome, totals: l.totals };
  }

  /** `GET …/verify`: the last result (404 before the first verification). */
  async lastResult(name: string): Promise<VerifyResult> {
    this.subjects.verifySubject(name); // 404 for an unknown replication
    const known = this.last.get(name);
    if (known) return known;
    try {
      const stored = parseJson(await readFile(this.file(name), 'utf8')) as VerifyResult;
      this.last.set(name, stored);
      return stored;
    } catch {
      throw Errors.verifyNoResult(name);
    }
  }

  /** Forgets the result of a removed replication. */
  forget(name: string): void {
    this.last.delete(name);
  }

  private file(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  /**
   * `POST …/verify`: runs a verification (and a repair) to its end and returns its result.
   * `purpose: 'base'`: the check of a `base` claim (base-seed.ts), shown as such in `active_tasks`.
   */
  async run(name: string, req: VerifyRequest, purpose?: 'base'): Promise<VerifyResult> {
    if (this.running.has(name)) throw Errors.verifyRunning(name);
    const subject = this.subjects.verifySubject(name);
    const s = subject.settings;
    const cond = s.when === null || s.when === undefined ? null : compileCondition(s.when);
    if (cond?.stateful) {
      await Promise.allSettled([subject.peer.close(), subject.target.close()]);
      throw Errors.verifyStateful(name);
    }
    const now = new Date().toISOString();
    const task: VerificationTask = {
      type: 'verification',
      name,
      started_on: now,
      updated_on: now,
      phase: 'verifying',
      repair: req.repair,
      progress: { records_done: 0, records_total: 0, percent: 0 },
      round_trips: 0,
      ...(purpose ? { purpose } : {}),
    };
    this.running.set(name, { task });
    this.emit(name);
    const startedAt = Date.now();
    const reasonAtStart = subject.needsVerifyReason();
    let result: VerifyResult;
    try {
      result = await this.verify(name, req, subject, cond, task, startedAt, reasonAtStart);
    } catch (e) {
      result = this.result(name, startedAt, [], subject, 0n);
      result.outcome = 'failed';
      result.error = (e as Error)?.message ?? String(e);
    } finally {
      await Promise.allSettled([subject.peer.close(), subject.target.close()]);
      this.running.delete(name);
    }
    this.last.set(name, result);
    await this.persist(name, result);
    this.emit(name);
    return result;
  }

  private async persist(name: string, result: VerifyResult): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.file(name), stringifyJson(result), { noSync: !this.sync });
    } catch {
      // the result is still answered and kept in memory
    }
  }

  private async verify(
    name: string,
    req: VerifyRequest,
    subject: VerifySubject,
    cond: ReturnType<typeof compileCondition> | null,
    task: VerificationTask,
    startedAt: number,
    reasonAtStart: string | null,
  ): Promise<VerifyResult> {
    const s = subject.settings;
    const source = this.storage.bucket(s.src_bucket);
    const scopes = this.scopes(s, req);
    const delivered = await subject.deliveredLsn();
    const inFlight = new LogInFlight(this.storage, s.src_bucket, delivered);
    await inFlight.refresh();
    const filters = await this.filters(subject, cond);
    const progress = (done: number, total: number): void => {
      task.progress = {
        records_done: done,
        records_total: total,
        percent: total > 0 ? Math.floor((done * 100) / total) : 100,
      };
      task.round_trips = subject.peer.exchange.round_trips;
      task.updated_on = new Date().toISOString();
      this.emit(name);
    };
    // `$meta` attachments bypass `when`, as in the engine
    const compare = async (): Promise<ScopeDiff[]> => {
      const meta = scopes.filter((x) => isMetaEntry(x.srcEntry));
      const plain = scopes.filter((x) => !isMetaEntry(x.srcEntry));
      const base = { source, peer: subject.peer, inFlight, onProgress: progress };
      const out = await compareScopes(plain, { ...base, filter: filters.plain });
      if (meta.length > 0) out.push(...(await compareScopes(meta, { ...base, filter: filters.meta })));
      return out;
    };
    let diffs = await compare();
    let result = this.result(name, startedAt, diffs, subject, delivered);
    if (!req.repair) return result;
    const before = result.totals;
    task.phase = 'repairing';
    this.emit(name);
    const repair = await repairDiffs(diffs, {
      source,
      target: subject.target,
      peer: subject.peer,
      removeExtra: req.remove_extra,
      onProgress: progress,
    });
    task.phase = 'reverifying';
    this.emit(name);
    diffs = await compare();
    result = this.result(name, startedAt, diffs, subject, delivered);
    result.repair = repair;
    result.before_repair = before;
    if (
      reasonAtStart !== null &&
      result.totals.missing === 0 &&
      result.totals.different === 0 &&
      repair.failed === 0
    ) {
      result.needs_verify_cleared = await subject.clearNeedsVerify(reasonAtStart);
    }
    return result;
  }

  /**
   * What the replication ships of an entry: records written after its creation (or from its
   * `since` on) that pass `when`; `$meta` attachments bypass `when`, as in the engine.
   */
  private async filters(
    subject: VerifySubject,
    cond: ReturnType<typeof compileCondition> | null,
  ): Promise<{ plain: RecordFilter; meta: RecordFilter }> {
    const created = await subject.createdLsn();
    const { from, until } = copyBounds(subject.settings);
    const meta: RecordFilter = {};
    if (subject.settings.continuous === false) {
      // a one-shot copies what existed when it was created, within [since, until) (see scopes)
      if (created !== undefined) meta.upToLsn = created;
    } else {
      if (created !== undefined) meta.afterLsn = created;
      if (from !== undefined) meta.olderAccepted = (ts) => ts >= from && (until === undefined || ts < until);
    }
    if (!cond) return { plain: meta, meta };
    const accept = (ts: bigint, labels: Labels): boolean => {
      try {
        return cond.evaluate({ ts, labels }) === true;
      } catch {
        return false; // strict mode, as the engine: a record whose evaluation errors is not shipped
      }
    };
    return { plain: { ...meta, accept }, meta };
  }

  /** Source entries in the scope (and in `entries` when given), with their destination names. */
  private scopes(s: ReplicationSettings, req: VerifyRequest): CompareScope[] {
    const bucket = this.storage.bucket(s.src_bucket);
    const inScope = compileEntryPatterns(s.entries);
    const asked = req.entries ? compileEntryPatterns(req.entries) : () => true;
    const info = new Map(bucket.entries().map((e) => [e.name, e]));
    const out: CompareScope[] = [];
    for (const e of bucket.entryNames()) {
      if (!matchesWithMeta(inScope, e) || !matchesWithMeta(asked, e)) continue;
      if (info.get(e)?.record_count === 0n) continue; // an implicit parent holds nothing
      let start = req.start ?? info.get(e)?.oldest_record ?? 0n;
      let stop = req.stop ?? U64_MAX;
      if (s.continuous === false) {
        const { from, until } = copyBounds(s);
        if (from !== undefined && from > start) start = from;
        if (until !== undefined && until < stop) stop = until;
      }
      if (start >= stop) continue;
      out.push({ srcEntry: e, dstEntry: destinationEntry(s.dst_prefix, e), start, stop });
    }
    return out;
  }

  private result(
    name: string,
    startedAt: number,
    diffs: readonly ScopeDiff[],
    subject: VerifySubject,
    delivered: bigint,
  ): VerifyResult {
    const entries: EntryVerification[] = diffs.map((d) => ({
      entry: d.scope.dstEntry,
      source_entry: d.scope.srcEntry,
      start: d.scope.start,
      stop: d.scope.stop,
      source_records: d.sourceRecords,
      missing: firstOf(d.missing),
      extra: firstOf(d.extra),
      different: {
        count: d.different.length,
        first: d.different.slice(0, VERIFY_FIRST_LISTED).map((x) => ({ ts: x.ts, parts: x.parts })),
      },
      in_flight: d.inFlight,
    }));
    const totals = { missing: 0, extra: 0, different: 0, in_flight: 0, source_records: 0 };
    for (const e of entries) {
      totals.missing += e.missing.count;
      totals.extra += e.extra.count;
      totals.different += e.different.count;
      totals.in_flight += e.in_flight;
      totals.source_records += e.source_records;
    }
    const finished = Date.now();
    const differs = totals.missing + totals.extra + totals.different > 0;
    return {
      replication: name,
      started_at: new Date(startedAt).toISOString(),
      finished_at: new Date(finished).toISOString(),
      duration_ms: finished - startedAt,
      outcome: differs ? 'differences' : 'clean',
      error: null,
      method: subject.peer.method,
      payloads_compared: subject.peer.method === 'digest',
      delivered_lsn: delivered,
      entries,
      totals,
      exchange: { ...subject.peer.exchange },
      repair: null,
      before_repair: null,
      needs_verify_cleared: false,
    };
  }
}
