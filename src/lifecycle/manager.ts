/**
 * Lifecycle service (api.md §16): owns the policies, their persistence and provisioning, schedules
 * a run of each enabled (or dry_run) policy every `interval`, and reports every run as a `$system`
 * event. Takes and returns wire-shaped JSON values and throws FerryError; `src/http` maps routes
 * onto it.
 *
 * On an instance with `RS_INSTANCE_ROLE=REPLICA` no job runs: a replica refuses every mutation
 * (api.md §7.5), and a job that deleted or rewrote its data would make it differ from its primary.
 * Policies can be read there (`is_running: false`, `status_reason` says why) but are not run.
 */
import type { FerryConfig } from '../config/types.js';
import { Errors, FerryError, isFerryError } from '../protocol/errors.js';
import { isValidBucketName } from '../protocol/names.js';
import type { Labels, Storage } from '../storage/types.js';
import { runCompressJob } from './compress-job.js';
import { runDeleteJob } from './delete-job.js';
import {
  parseLifecycleSettings,
  parseModeBody,
  policyDurations,
  sameScope,
  type LifecycleSettings,
} from './settings.js';
import { LifecycleStore, type PolicyState, type RunResult, type StoredPolicy } from './store.js';

/** Timers and time, injectable for tests. */
export interface LifecycleClock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

const realClock: LifecycleClock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Options of `LifecycleManager.open`. */
export interface LifecycleManagerOptions {
  storage: Storage;
  config: Pick<FerryConfig, 'dataPath' | 'storage' | 'lifecycles'> &
    Partial<Pick<FerryConfig, 'instanceRole'>>;
  /** Receives one event per run (the `$system` bucket). */
  onRun?: (policy: string, labels: Labels, result: RunResult) => void;
  /** Warnings (invalid provisioned policies, failed runs). */
  warn?: (message: string) => void;
  clock?: LifecycleClock;
  /** Records per removal batch (tests and benchmarks). */
  batchSize?: number;
}

const ON_REPLICA =
  'lifecycle jobs do not run on a REPLICA instance (RS_INSTANCE_ROLE=REPLICA refuses every mutation)';
/** setTimeout's limit; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Policy {
  name: string;
  settings: LifecycleSettings;
  provisioned: boolean;
  state: PolicyState;
  timer: unknown;
  nextRun: number | null;
  running: Promise<RunResult> | undefined;
  abort: boolean;
}

/** All lifecycle policies of this instance. */
export class LifecycleManager {
  private readonly policies = new Map<string, Policy>();
  private readonly store: LifecycleStore;
  private readonly clock: LifecycleClock;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  /** On a REPLICA no job runs (see the header). */
  private readonly replica: boolean;

  private constructor(private readonly opts: LifecycleManagerOptions) {
    this.replica = opts.config.instanceRole === 'REPLICA';
    this.store = new LifecycleStore(opts.config.dataPath, opts.config.storage.durability !== 'none');
    this.clock = opts.clock ?? realClock;
  }

  /** Loads the stored policies, applies the provisioned ones and schedules them. */
  static async open(opts: LifecycleManagerOptions): Promise<LifecycleManager> {
    const m = new LifecycleManager(opts);
    const defs = await m.store.load();
    const changed = m.applyProvisioned(defs);
    for (const [name, def] of defs) {
      const state = await m.store.loadState(name);
      m.policies.set(name, {
        name,
        settings: def.settings,
        provisioned: def.provisioned,
        state,
        timer: undefined,
        nextRun: null,
        running: undefined,
        abort: false,
      });
    }
    if (changed) await m.save();
    if (m.replica && m.policies.size > 0) m.warn(`Lifecycle policies: ${ON_REPLICA}`);
    for (const p of m.policies.values()) {
      // an interrupted run resumes at once; otherwise the next run is due one interval after the last
      const last = p.state.last_run === null ? m.clock.now() : Date.parse(p.state.last_run);
      m.schedule(p, p.state.window !== null ? m.clock.now() : last + policyDurations(p.settings).intervalMs);
    }
    return m;
  }

  private applyProvisioned(defs: Map<string, StoredPolicy>): boolean {
    let changed = false;
    const names = new Set<string>();
    for (const prov of this.opts.config.lifecycles) {
      try {
        if (!isValidBucketName(prov.name)) throw Errors.lifecycleInvalidName(prov.name);
        const settings = parseLifecycleSettings(prov.settings);
        const old = defs.get(prov.name);
        // like replications: an explicit _MODE wins, else the persisted mode (PATCH …/mode) stays
        if (prov.settings['mode'] === undefined && old) settings.mode = old.settings.mode;
        defs.set(prov.name, { settings, provisioned: true });
        names.add(prov.name);
        changed = true;
      } catch (e) {
        this.warn(`Provisioned lifecycle '${prov.name}' ignored: ${(e as Error).message}`);
      }
    }
    for (const [name, def] of defs) {
      if (def.provisioned && !names.has(name)) {
        def.provisioned = false;
        changed = true;
      }
    }
    return changed;
  }

  // ---- API ---------------------------------------------------------------------------------

  /** `GET /lifecycles`. */
  list(): { lifecycles: unknown[] } {
    return { lifecycles: [...this.policies.values()].sort(byName).map((p) => this.info(p)) };
  }

  /** `GET /lifecycles/{name}`. */
  get(name: string): { info: unknown; settings: LifecycleSettings } {
    const p = this.policy(name);
    return { info: this.info(p), settings: p.settings };
  }

  /** `POST /lifecycles/{name}`. */
  create(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      if (!isValidBucketName(name)) throw Errors.lifecycleInvalidName(name);
      if (this.policies.has(name)) throw Errors.lifecycleExists(name);
      const settings = this.parse(name, body);
      const p: Policy = {
        name,
        settings,
        provisioned: false,
        state: { last_run: null, last_result: null, cursor: null, window: null },
        timer: undefined,
        nextRun: null,
        running: undefined,
        abort: false,
      };
      this.policies.set(name, p);
      try {
        await this.store.removeState(name); // left behind by a policy of the same name
        await this.save();
      } catch (e) {
        this.policies.delete(name);
        throw e;
      }
      this.schedule(p, this.clock.now() + policyDurations(settings).intervalMs);
    });
  }

  /** `PUT /lifecycles/{name}`: a change of scope (type, bucket, entries, when) restarts the cursor. */
  update(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const p = this.policy(name);
      if (p.provisioned) throw Errors.lifecycleProvisioned(name, 'update');
      const settings = this.parse(name, body);
      await this.stopRun(p);
      const previous = p.settings;
      p.settings = settings;
      if (!sameScope(previous, settings)) {
        p.state.cursor = null;
        p.state.window = null;
        await this.store.saveState(name, p.state);
      }
      await this.save();
      this.schedule(p, this.clock.now() + policyDurations(settings).intervalMs);
    });
  }

  /** `PATCH /lifecycles/{name}/mode` (allowed for provisioned policies, persisted). */
  setMode(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const p = this.policy(name);
      const mode = parseModeBody(body);
      if (mode === 'disabled') await this.stopRun(p);
      p.settings = { ...p.settings, mode };
      await this.save();
      if (p.running === undefined)
        this.schedule(p, p.nextRun ?? this.clock.now() + policyDurations(p.settings).intervalMs);
    });
  }

  /** `DELETE /lifecycles/{name}`. */
  remove(name: string): Promise<void> {
    return this.exclusive(async () => {
      const p = this.policy(name);
      if (p.provisioned) throw Errors.lifecycleProvisioned(name, 'remove');
      await this.stopRun(p);
      this.policies.delete(name);
      await this.save();
      await this.store.removeState(name);
    });
  }

  /**
   * `POST /lifecycles/{name}/run` (Ferry extension): runs the policy now, in its mode, and returns
   * what the run did. 409 while a run is in progress or when the policy is disabled.
   */
  async runNow(name: string): Promise<RunResult> {
    const p = this.policy(name);
    if (p.running) throw Errors.lifecycleRunning(name);
    if (p.settings.mode === 'disabled') throw Errors.conflict(`Lifecycle '${name}' is disabled`);
    if (this.replica) throw Errors.forbidden(`Lifecycle '${name}': ${ON_REPLICA}`);
    return this.start(p);
  }

  /** Stops the timers, interrupts runs (their progress is kept) and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.policies.values()) {
      if (p.timer !== undefined) this.clock.clearTimer(p.timer);
      p.timer = undefined;
      p.abort = true;
    }
    await Promise.allSettled([...this.policies.values()].map((p) => p.running));
    await this.chain;
  }

  // ---- runs --------------------------------------------------------------------------------

  private schedule(p: Policy, at: number): void {
    if (p.timer !== undefined) this.clock.clearTimer(p.timer);
    p.timer = undefined;
    p.nextRun = null;
    if (this.closed || this.replica || p.settings.mode === 'disabled') return;
    p.nextRun = at;
    const arm = (): void => {
      const wait = Math.max(0, at - this.clock.now());
      p.timer = this.clock.setTimer(
        () => {
          p.timer = undefined;
          if (this.clock.now() < at) arm();
          else if (!p.running) void this.start(p).catch(() => undefined);
        },
        Math.min(wait, MAX_TIMER_MS),
      );
    };
    arm();
  }

  private start(p: Policy): Promise<RunResult> {
    p.abort = false;
    p.nextRun = null;
    const run = this.execute(p).finally(() => {
      p.running = undefined;
      if (this.policies.get(p.name) === p) {
        this.schedule(p, this.clock.now() + policyDurations(p.settings).intervalMs);
      }
    });
    p.running = run;
    return run;
  }

  private async stopRun(p: Policy): Promise<void> {
    if (p.timer !== undefined) this.clock.clearTimer(p.timer);
    p.timer = undefined;
    p.nextRun = null;
    if (!p.running) return;
    p.abort = true;
    await p.running.catch(() => undefined);
  }

  private async execute(p: Policy): Promise<RunResult> {
    const startedMs = this.clock.now();
    const settings = p.settings;
    const result: RunResult = {
      policy_name: p.name,
      action_type: settings.type,
      bucket: settings.bucket,
      mode: settings.mode,
      status: 'ok',
      started_at: new Date(startedMs).toISOString(),
      duration: 0,
      processed_records: 0,
      scanned_records: 0,
      protected_records: 0,
      window_start: null,
      window_stop: null,
      cutoff: null,
      caught_up: false,
      resumed: false,
    };
    try {
      const run = {
        storage: this.opts.storage,
        settings,
        durations: policyDurations(settings),
        state: p.state,
        saveState: (durable: boolean) => this.store.saveState(p.name, p.state, durable),
        nowUs: BigInt(startedMs) * 1000n,
        dryRun: settings.mode === 'dry_run',
        aborted: () => p.abort || this.closed,
      };
      let r: { window: { start: bigint; stop: bigint; cutoff: bigint } | null } & {
        caughtUp: boolean;
        resumed: boolean;
        interrupted: boolean;
      };
      if (settings.type === 'compress') {
        const c = await runCompressJob(run);
        result.processed_records = c.records;
        result.scanned_records = c.scanned;
        result.compressed_blocks = c.blocks;
        result.raw_bytes = c.rawBytes;
        result.stored_bytes = c.storedBytes;
        r = c;
      } else {
        const d = await runDeleteJob({
          ...run,
          ...(this.opts.batchSize !== undefined ? { batchSize: this.opts.batchSize } : {}),
        });
        result.processed_records = d.removed;
        result.scanned_records = d.scanned;
        result.protected_records = d.protected;
        result.removed_bytes = d.removedBytes;
        r = d;
      }
      result.window_start = r.window?.start ?? null;
      result.window_stop = r.window?.stop ?? null;
      result.cutoff = r.window?.cutoff ?? null;
      result.caught_up = r.caughtUp;
      result.resumed = r.resumed;
      if (r.interrupted) result.status = 'interrupted';
    } catch (e) {
      const err: FerryError = isFerryError(e) ? e : Errors.internal((e as Error).message);
      result.status = 'error';
      result.error_code = err.status;
      result.error_message = err.message;
      this.warn(`Lifecycle '${p.name}' failed: ${err.message}`);
    }
    result.duration = (this.clock.now() - startedMs) / 1000;
    p.state.last_run = new Date(this.clock.now()).toISOString();
    p.state.last_result = result;
    if (this.policies.get(p.name) === p) {
      await this.store
        .saveState(p.name, p.state)
        .catch((e) => this.warn(`Lifecycle '${p.name}': ${(e as Error).message}`));
    }
    this.opts.onRun?.(p.name, { type: settings.type, mode: settings.mode, status: result.status }, result);
    return result;
  }

  // ---- helpers -----------------------------------------------------------------------------

  private info(p: Policy): Record<string, unknown> {
    const s = p.settings;
    const info: Record<string, unknown> = {
      name: p.name,
      is_provisioned: p.provisioned,
      is_running: s.mode !== 'disabled' && !this.replica,
      type: s.type,
      mode: s.mode,
      last_run: p.state.last_run,
      // Ferry extensions
      run_in_progress: p.running !== undefined,
      next_run: p.nextRun === null ? null : new Date(p.nextRun).toISOString(),
      last_result: p.state.last_result,
    };
    if (this.replica) info['status_reason'] = ON_REPLICA;
    return info;
  }

  private parse(name: string, body: unknown): LifecycleSettings {
    const settings = parseLifecycleSettings(body);
    if (!this.opts.storage.hasBucket(settings.bucket))
      throw Errors.lifecycleBucketNotFound(settings.bucket, name);
    return settings;
  }

  private policy(name: string): Policy {
    const p = this.policies.get(name);
    if (!p) throw Errors.lifecycleNotFound(name);
    return p;
  }

  private save(): Promise<void> {
    const defs = new Map<string, StoredPolicy>();
    for (const p of [...this.policies.values()].sort(byName)) {
      defs.set(p.name, { settings: p.settings, provisioned: p.provisioned });
    }
    return this.store.save(defs);
  }

  private warn(message: string): void {
    (this.opts.warn ?? ((m: string) => process.emitWarning(m)))(message);
  }

  /** Serialises mutations so that concurrent requests see a consistent set of policies. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

const byName = (a: { name: string }, b: { name: string }): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
