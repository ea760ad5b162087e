/**
 * Ferry's rich view of its replications (replication.md §9), built only on the replication
 * manager's public API (`list`, `inspect`): the status route's object, the `active_tasks` list, and the
 * figures `/metrics` and the events stream read. It samples every replication's counters once a
 * second to compute throughput over the last 10 s and minute, and remembers when each task run
 * started and when its status last changed (the engine does not keep those).
 */
import { stringifyJson } from '../protocol/json.js';
import {
  FINAL_STATES,
  type ActiveTasks,
  type FilterRef,
  type LastUpdate,
  type ReplicationCounters,
  type ReplicationState,
  type ReplicationStatus,
} from '../protocol/replication-status.js';
import type { ReplicationInfo, ReplicationList, ReplicationSettingsJson } from '../protocol/replications.js';
import type { VerificationTask } from '../protocol/verify.js';
import type { RemoteRef } from '../protocol/remotes.js';
import { zeroCounters } from './checkpoint-store.js';
import { RollingRate, type CounterSample } from './rolling-rate.js';

/** Ferry's view of one replication, as the manager gives it. */
export interface ReplicationInspection {
  info: ReplicationInfo;
  /** Every setting, the Ferry extensions too; `dst_token` masked. */
  settings: ReplicationSettingsJson;
  /** The engine's status object (fields may be missing; see {@link EngineStatus}). */
  status: Record<string, unknown>;
}

/** What the monitor reads: the replication manager's answers. */
export interface ReplicationStatusSource {
  list(): ReplicationList;
  /** Throws 404 for an unknown name. */
  inspect(name: string): ReplicationInspection;
}

/** Options of {@link ReplicationMonitor}. */
export interface ReplicationMonitorOptions {
  /** Clock (ms since epoch); injected by tests. */
  now?: () => number;
  /** Sampling period (default 1000 ms); 0 = no timer (tests call `sample()`). */
  sampleMs?: number;
  /** The stored filter a replication runs with (wired by the filters service). */
  filterOf?: (name: string) => FilterRef | null;
  /** Verifications (verify-service.ts): shown in each status and listed in `active_tasks`. */
  verifications?: {
    statusOf(name: string): Record<string, unknown> | null;
    active(): VerificationTask[];
  };
}

/** The engine's status object as the manager returns it today (fields may be missing). */
interface EngineStatus {
  state?: ReplicationState;
  state_reason?: string | null;
  since?: string;
  destination?: { target?: string; instance_id?: string | null; available?: boolean };
  counters?: Partial<ReplicationCounters>;
  pending_records?: number;
  pending_bytes?: number;
  lag_ms?: number;
  throughput?: { records_per_sec?: number; bytes_per_sec?: number };
  last_update?: LastUpdate;
  [key: string]: unknown;
}

/** Settings fields of later runs (one-shot) that the settings type may not know yet. */
type Settings = ReplicationSettingsJson & { continuous?: boolean };

interface Tracked {
  rate: RollingRate;
  startedAt: number;
  updatedAt: number;
  fingerprint: string;
  lastUpdateAt: string | undefined;
  delivered: number;
}

const WINDOW_10S = 10_000;
const WINDOW_1M = 60_000;

/** Destination URL without user info, query or fragment ('' stays '' = this instance). */
export function publicHost(dstHost: string): string {
  if (dstHost === '') return '';
  try {
    const u = new URL(dstHost);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return '';
  }
}

const counterSample = (at: number, c: ReplicationCounters): CounterSample => ({
  at,
  records: c.records_written + c.records_already_present,
  bytes: c.bytes_written,
});

const iso = (ms: number): string => new Date(ms).toISOString();

/** Rich status, active tasks and throughput of every replication. */
export class ReplicationMonitor {
  private readonly tracked = new Map<string, Tracked>();
  private readonly now: () => number;
  private readonly filterOf: (name: string) => FilterRef | null;
  private readonly verifications: ReplicationMonitorOptions['verifications'];
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: ReplicationStatusSource,
    opts: ReplicationMonitorOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.filterOf = opts.filterOf ?? (() => null);
    this.verifications = opts.verifications;
    const every = opts.sampleMs ?? 1000;
    if (every > 0) {
      this.timer = setInterval(() => this.sample(), every);
      this.timer.unref();
    }
    this.sample();
  }

  /** Takes one counter sample of every replication (the timer calls it every second). */
  sample(): void {
    const at = this.now();
    const seen = new Set<string>();
    for (const r of this.listRaw()) {
      seen.add(r.name);
      const t = this.observe(r.name, r.status, at);
      t.rate.add(counterSample(at, this.counters(r.status)));
    }
    for (const name of this.tracked.keys()) if (!seen.has(name)) this.tracked.delete(name);
  }

  /** Names of every replication, sorted. */
  names(): string[] {
    return this.source.list().replications.map((r) => r.name);
  }

  /** `GET /replications/{name}/status`. Throws the manager's 404 for an unknown name. */
  status(name: string): ReplicationStatus {
    const full = this.source.inspect(name);
    const settings: Settings = full.settings;
    const st: EngineStatus = full.status;
    const at = this.now();
    const t = this.observe(name, st, at);
    const counters = this.counters(st);
    const present = counterSample(at, counters);
    const engineDst = st.destination;
    const e = st as Partial<ReplicationStatus>;
    const own: ReplicationStatus = {
      name,
      mode: full.info.mode,
      is_active: full.info.is_active,
      is_provisioned: full.info.is_provisioned,
      continuous: settings.continuous ?? true,
      effective_type: e.effective_type ?? 'async',
      state: st.state ?? 'suspended',
      state_reason: st.state_reason ?? null,
      since: st.since ?? iso(at),
      started_at: iso(t.startedAt),
      updated_at: iso(t.updatedAt),
      source: {
        bucket: settings.src_bucket,
        entries: [...settings.entries],
        ...(settings.src_group !== undefined ? { group: settings.src_group } : {}),
      },
      destination: {
        // a replication that names a remote has no dst_host of its own
        host: (st.remote as RemoteRef | undefined)?.url ?? publicHost(settings.dst_host),
        bucket: settings.dst_bucket,
        prefix: settings.dst_prefix,
        instance_id: engineDst?.instance_id ?? null,
        available: engineDst?.available ?? false,
      },
      filter: this.filterOf(name),
      cursor_lsn: e.cursor_lsn ?? 0n,
      log_last_lsn: e.log_last_lsn ?? 0n,
      pending_records: st.pending_records ?? 0,
      pending_bytes: st.pending_bytes ?? 0,
      lag_ms: st.lag_ms ?? 0,
      in_flight_batches: e.in_flight_batches ?? 0,
      throughput: {
        records_per_sec: st.throughput?.records_per_sec ?? 0,
        bytes_per_sec: st.throughput?.bytes_per_sec ?? 0,
        last_10s: t.rate.rate(WINDOW_10S, present),
        last_1m: t.rate.rate(WINDOW_1M, present),
      },
      counters,
      retries: e.retries ?? 0,
      consecutive_failures: e.consecutive_failures ?? 0,
      last_error: e.last_error ?? null,
      next_retry_at: e.next_retry_at ?? null,
      needs_verify: e.needs_verify ?? false,
      needs_verify_reason: e.needs_verify_reason ?? null,
      log: e.log ?? { max_bytes: 0, on_overflow: 'drop_oldest', over_bound: false },
      last_update: st.last_update ?? null,
      // like `destination.host`: user info and query of the URL may be credentials
      settings: { ...full.settings, dst_host: publicHost(full.settings.dst_host) },
    };
    // fields the engine adds later (progress of a copy, per-entry cursors…) flow through after these
    const extra = Object.fromEntries(Object.entries(st).filter(([k]) => !(k in own) && k !== 'destination'));
    const verification = this.verifications?.statusOf(name);
    if (verification) extra.verification = verification;
    return { ...own, ...extra };
  }

  /**
   * `GET /active_tasks`: replications that run now, i.e. not disabled and not in a final state
   * (`completed`); suspended ones are listed, since they still hold their cursor and need a user.
   */
  activeTasks(): ActiveTasks {
    const tasks: ActiveTasks['tasks'] = [];
    for (const r of this.listRaw()) {
      if (r.mode === 'disabled' || FINAL_STATES.has(r.status.state ?? '')) continue;
      let s: ReplicationStatus;
      try {
        s = this.status(r.name);
      } catch {
        continue; // removed meanwhile
      }
      tasks.push({
        type: 'replication',
        name: s.name,
        state: s.state,
        state_reason: s.state_reason,
        source: s.source,
        destination: { host: s.destination.host, bucket: s.destination.bucket, prefix: s.destination.prefix },
        continuous: s.continuous,
        started_on: s.started_at,
        updated_on: s.updated_at,
        pending_records: s.pending_records,
        pending_bytes: s.pending_bytes,
        lag_ms: s.lag_ms,
        throughput: s.throughput,
        counters: s.counters,
        retries: s.retries,
        consecutive_failures: s.consecutive_failures,
        ...(s.progress !== undefined ? { progress: s.progress } : {}),
        ...(s.base !== undefined ? { base: s.base } : {}),
        ...(s.group !== undefined ? { group: s.group } : {}),
        ...(s.replication_type
          ? { replication_type: s.replication_type, effective_type: s.effective_type }
          : {}),
      });
    }
    tasks.push(...(this.verifications?.active() ?? []));
    return { tasks };
  }

  /** Stops sampling. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Every replication with the engine's status (one removed meanwhile is left out). */
  private listRaw(): Array<ReplicationInfo & { status: EngineStatus }> {
    const out: Array<ReplicationInfo & { status: EngineStatus }> = [];
    for (const info of this.source.list().replications) {
      try {
        out.push({ ...info, status: this.source.inspect(info.name).status });
      } catch {
        // removed between list() and inspect()
      }
    }
    return out;
  }

  private counters(st: EngineStatus | undefined): ReplicationCounters {
    return { ...zeroCounters(), ...st?.counters };
  }

  /** Tracks start and change times of one replication's run. */
  private observe(name: string, st: EngineStatus, at: number): Tracked {
    const c = this.counters(st);
    // what a user sees change (not the cursor, which also moves over changes out of scope)
    const fingerprint = stringifyJson([
      st.state,
      st.state_reason,
      c,
      st.pending_records,
      st.pending_bytes,
      st.last_error,
    ]);
    const delivered = c.records_written + c.records_already_present;
    let t = this.tracked.get(name);
    const lastUpdateAt = st.last_update?.at;
    // a PUT restarts the task; a recreated replication starts its counters from zero again
    const restarted = t !== undefined && (lastUpdateAt !== t.lastUpdateAt || delivered < t.delivered);
    if (!t || restarted) {
      const startedAt = restarted && lastUpdateAt !== t?.lastUpdateAt ? Date.parse(lastUpdateAt!) : at;
      const rate = t?.rate ?? new RollingRate(WINDOW_1M);
      // The first sight is the first sample: what was delivered before it is not in any window.
      rate.add(counterSample(at, c));
      t = {
        rate,
        startedAt: Number.isFinite(startedAt) ? startedAt : at,
        updatedAt: at,
        fingerprint,
        lastUpdateAt,
        delivered,
      };
      this.tracked.set(name, t);
    } else if (fingerprint !== t.fingerprint) {
      t.fingerprint = fingerprint;
      t.updatedAt = at;
    }
    t.delivered = delivered;
    return t;
  }
}
