/**
 * Replication service (api.md §17, replication.md §3, §9, §11): owns the definitions, their
 * persistence and provisioning, and one running `ReplicationTask` per replication. Takes and
 * returns wire-shaped JSON values and throws FerryError; `src/http` maps routes onto it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FerryConfig } from '../config/types.js';
import { Errors, FerryError, isFerryError } from '../protocol/errors.js';
import { isValidBucketName } from '../protocol/names.js';
import { stringifyJson } from '../protocol/json.js';
import type {
  ReplicationDetail,
  ReplicationFailures,
  ReplicationInfo,
  ReplicationList,
  ReplicationSettingsJson,
} from '../protocol/replications.js';
import type { Storage } from '../storage/types.js';
import type { LastUpdate } from '../protocol/replication-status.js';
import { compileCondition, legacyToWhen } from '../query/condition/index.js';
import { CheckpointStore, initialCheckpoint, zeroCounters } from './checkpoint-store.js';
import { DefinitionsStore, type StoredDefinition } from './definitions-store.js';
import { FailureLog } from './failure-log.js';
import type { FiltersStore } from './filters-store.js';
import { LocalTarget } from './local-target.js';
import { RemoteTarget } from './remote-target.js';
import { RateLimitedTarget } from './rate-limited-target.js';
import type { RemoteRegistry } from './remotes.js';
import {
  compatibleSettingsToWire,
  effectiveSettings,
  isLoopbackHost,
  parseDestinationHost,
  parseMode,
  parseSettings,
  settingsToWire,
  urlPort,
  type ReplicationSettings,
} from './settings.js';
import type { Target } from './target.js';
import { SyncGates } from './sync-gates.js';
import { SYNC_CONNECTIONS } from './sync-settings.js';
import { ReplicationTask, type TaskEvent } from './task.js';
import { LocalPeer, type VerifyPeer } from './verify-peer.js';
import { RemotePeer } from './verify-remote.js';
import { loadCopyOrigin, removeCopyOrigin, saveCopyOrigin } from './verify-origin.js';
import { VerifyService, type VerifySubject } from './verify-service.js';
import { sameBase } from './base-settings.js';
import { BaseSeeder } from './base-seed.js';
import { BaseSeedStore } from './base-seed-store.js';
import {
  GroupWiring,
  newMemberCopy,
  PendingCopies,
  type GroupMembership,
  type GroupRemote,
  type PendingMemberCopy,
} from './group-wiring.js';
import type { GroupRun } from './group-run.js';

/** Options of `ReplicationManager.open`. */
export interface ReplicationManagerOptions {
  storage: Storage;
  config: FerryConfig;
  /** Port this server listens on (self-loop check and same-instance detection). */
  port: number;
  /**
   * Wraps the target of every task (fault injection and ordering checks in tests); the wrapper
   * must keep the `Target` contract.
   */
  wrapTarget?: (target: Target, replication: string) => Target;
  /** Stored filters, for replications that name one (`filter` + `query_params`). */
  filters?: Pick<FiltersStore, 'resolve'>;
  /** Sync gates the client writes pass (sync-gates.ts); the manager makes its own when absent. */
  syncGates?: SyncGates;
  /** Remotes, for replications that name one (`remote`). */
  remotes?: Pick<RemoteRegistry, 'has' | 'endpoint' | 'ref'>;
  /** Consistency groups, for replications of one (`src_group`). */
  groups?: GroupMembership;
}

/** Settings of a group replication. */
type GroupSettings = ReplicationSettings & { src_group: string };
const isGroup = (s: ReplicationSettings): s is GroupSettings => s.src_group !== undefined;

const notFound = (n: string): FerryError => Errors.notFound(`Replication '${n}' does not exist`);

/** All replications of this instance. */
export class ReplicationManager {
  private readonly defs = new Map<string, StoredDefinition>();
  private readonly tasks = new Map<string, ReplicationTask>();
  private readonly lastUpdate = new Map<string, LastUpdate>();
  private readonly store: DefinitionsStore;
  private readonly stateDir: string;
  private readonly failuresDir: string;
  private readonly sync: boolean;
  private ca: string | undefined;
  private caError: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Map<string, Set<(e: TaskEvent) => void>>();
  private readonly taskUnsubscribe = new Map<string, () => void>();
  /** Rate limiters of the running tasks that have a `rate_limit`, for their status. */
  private readonly limiters = new Map<string, RateLimitedTarget>();
  private closed = false;
  /** Gates of the sync replications (replication.md §7). */
  syncGates = new SyncGates();
  /** Verifications of these replications (`…/verify` routes; base seeding runs them too). */
  readonly verifications: VerifyService;
  /** `base` claims: checked before a replication ships (base-seed.ts). */
  private readonly seeder: BaseSeeder;
  private groupWiring!: GroupWiring;
  private readonly groupRuns = new Map<string, GroupRun>();

  private constructor(
    private readonly storage: Storage,
    private readonly config: FerryConfig,
    private readonly port: number,
    private readonly wrapTarget?: ReplicationManagerOptions['wrapTarget'],
    private readonly filters?: ReplicationManagerOptions['filters'],
    private readonly remotes?: ReplicationManagerOptions['remotes'],
  ) {
    this.sync = config.storage.durability !== 'none';
    this.store = new DefinitionsStore(config.dataPath, this.sync);
    this.stateDir = join(config.dataPath, '.ferry', 'replications');
    this.failuresDir = join(config.dataPath, '.ferry', 'failures');
    this.verifications = new VerifyService(storage, this, config.dataPath, this.sync);
    this.seeder = new BaseSeeder(new BaseSeedStore(config.dataPath, this.sync), this.verifications, {
      hold: (name, reason) => this.tasks.get(name)?.hold(reason),
      suspend: (name, reason, current) =>
        this.exclusive(async () => {
          if (current()) await this.tasks.get(name)?.suspendFor(reason);
        }),
      changed: (name) => this.emit(name, { type: 'changed' }),
    });
    if (config.replication.caPath) {
      try {
        this.ca = readFileSync(config.replication.caPath, 'utf8');
        if (!this.ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate found');
      } catch (e) {
        this.ca = undefined;
        this.caError = `Invalid CA certificate '${config.replication.caPath}': ${(e as Error).message}`;
      }
    }
  }

  /** Loads persisted definitions, applies provisioned ones and starts every task. */
  static async open(opts: ReplicationManagerOptions): Promise<ReplicationManager> {
    const m = new ReplicationManager(
      opts.storage,
      opts.config,
      opts.port,
      opts.wrapTarget,
      opts.filters,
      opts.remotes,
    );
    if (opts.syncGates) m.syncGates = opts.syncGates;
    m.groupWiring = new GroupWiring(opts.groups, opts.storage);
    // a group's replications follow its members (restarted with the new list, cursor kept)
    m.groupWiring.subscribe((group) => void m.followGroup(group));
    for (const [name, def] of await m.store.load()) m.defs.set(name, def);
    const changed = m.applyProvisioned();
    await m.dropOrphanSlots();
    for (const [name, def] of m.defs) {
      if (!isGroup(def.settings) && !m.storage.hasBucket(def.settings.src_bucket)) {
        process.emitWarning(
          `Replication '${name}': source bucket '${def.settings.src_bucket}' does not exist; task not started`,
        );
        continue;
      }
      try {
        await m.seeder.load(name, def.settings.base);
        await m.startTask(name, def, false);
        m.seeder.start(name);
      } catch (e) {
        if (!isFerryError(e)) throw e;
        process.emitWarning(`Replication '${name}': ${e.message}; task not started`); // e.g. its stored filter
      }
    }
    if (changed) await m.store.save(m.defs);
    m.syncGates.markReady(); // writes held at start-up now know their sync scopes
    return m;
  }

  /**
   * Slots whose replication no longer exists (a crash between removing the definition and dropping
   * the slot) would pin the log and block FIFO eviction forever.
   */
  private async dropOrphanSlots(): Promise<void> {
    const prefix = ReplicationTask.slotName('');
    for (const slot of this.storage.changes.listSlots()) {
      if (!slot.name.startsWith(prefix)) continue;
      const name = slot.name.slice(prefix.length);
      if (this.defs.has(name)) continue;
      await this.storage.changes.dropSlot(slot.name);
      process.emitWarning(`Dropped the change-log slot of removed replication '${name}'`);
    }
  }

  private parse(body: unknown, previousToken?: string | null): ReplicationSettings {
    const settings = parseSettings(body, {
      legacyToWhen,
      checkWhen: (when) => void compileCondition(when),
      ...(previousToken !== undefined ? { previousToken } : {}),
    });
    this.runSettings(settings); // a stored filter and its query_params must resolve
    return settings;
  }

  /** The settings a task runs with: a stored filter resolved into `when` (replicas follow its changes). */
  private runSettings(s: ReplicationSettings): ReplicationSettings {
    if (s.filter === undefined) return s;
    if (!this.filters) throw Errors.replicationFilterUnknown(s.filter);
    return { ...s, when: this.filters.resolve(s.filter, s.query_params).when };
  }

  /** Names of the replications that name stored filter `filter`, sorted. */
  filterUsers(filter: string): string[] {
    return [...this.defs]
      .filter(([, d]) => d.settings.filter === filter)
      .map(([n]) => n)
      .sort();
  }

  /**
   * Runs a change of stored filter `filter` serialised with every change of definitions: `change`
   * first (it may refuse), then each running replication whose resolved `when` changed restarts
   * with it and a fresh state of stateful operators; its cursor is kept.
   */
  changeFilter(filter: string, change: () => Promise<void>): Promise<void> {
    return this.exclusive(async () => {
      const users = this.filterUsers(filter);
      const before = new Map(
        users.map((n) => [n, stringifyJson(this.runSettings(this.defs.get(n)!.settings).when)]),
      );
      await change();
      for (const name of users) {
        const def = this.defs.get(name);
        const task = this.tasks.get(name);
        if (!def || !task || stringifyJson(this.runSettings(def.settings).when) === before.get(name))
          continue;
        this.tasks.delete(name);
        await task.close();
        await this.startTask(name, def, true);
        this.lastUpdate.set(name, { at: new Date().toISOString(), cursor: 'kept', filter_state: 'reset' });
      }
    });
  }

  /** Provisioned replications (api.md §20.5): re-applied at every start. */
  private applyProvisioned(): boolean {
    let changed = false;
    const provisioned = new Set<string>();
    for (const p of this.config.replications) {
      try {
        const raw = p.settings;
        const settings = this.parse(raw);
        const old = this.defs.get(p.name);
        const modeSet = raw.mode !== undefined && raw.mode !== null;
        const mode = modeSet ? settings.mode : (old?.mode ?? settings.mode);
        settings.mode = mode;
        parseDestinationHost(settings.dst_host);
        this.defs.set(p.name, { settings, mode, provisioned: true });
        provisioned.add(p.name);
        changed = true;
      } catch (e) {
        process.emitWarning(`Provisioned replication '${p.name}' ignored: ${(e as Error).message}`);
      }
    }
    for (const [name, def] of this.defs) {
      if (def.provisioned && !provisioned.has(name)) {
        def.provisioned = false;
        changed = true;
      }
    }
    return changed;
  }

  /** Checks that a definition can run here (api.md §17.6). */
  private validateTarget(name: string, s: ReplicationSettings): void {
    const remote = this.remoteUrl(s.dst_host);
    if (isGroup(s)) {
      if (remote !== null && this.caError) throw Errors.unprocessable(this.caError);
      this.groupWiring.validate(s, this.groupRemote(s));
      return;
    }
    if (!this.storage.hasBucket(s.src_bucket)) {
      throw Errors.notFound(`Source bucket '${s.src_bucket}' for replication '${name}' does not exist`);
    }
    if (s.remote !== undefined) {
      if (!this.remotes?.has(s.remote)) throw Errors.replicationRemoteUnknown(s.remote);
      return;
    }
    if (s.src_bucket === s.dst_bucket && remote === null) {
      throw Errors.unprocessable('Source and destination buckets must be different');
    }
    if (remote !== null && this.caError) throw Errors.unprocessable(this.caError);
  }

  /** URL of another instance; null for this one (no host, or a loopback host on our port). */
  private remoteUrl(dstHost: string): URL | null {
    const url = parseDestinationHost(dstHost);
    if (url === null || (isLoopbackHost(url.hostname) && urlPort(url) === this.port)) return null;
    return url;
  }

  /** A group replication's destination when it is another instance (null: this one). */
  private groupRemote(s: ReplicationSettings): GroupRemote | null {
    const url = this.remoteUrl(s.dst_host);
    if (url === null) return null;
    return {
      url,
      token: s.dst_token,
      timeoutMs: this.config.replication.timeoutMs,
      verifyTls: this.config.replication.verifySsl,
      ...(this.ca ? { ca: this.ca } : {}),
    };
  }

  /**
   * The group run of a group replication: its target is the run's destination (member buckets
   * are created through per-bucket targets of the same kind).
   */
  private groupRun(name: string, s: GroupSettings, copy?: PendingMemberCopy): GroupRun {
    const run = this.groupWiring.run(
      name,
      s,
      this.groupRemote(s),
      (bucket) =>
        this.newTarget({
          ...s,
          src_group: undefined,
          src_bucket: '',
          dst_bucket: bucket,
        } as ReplicationSettings),
      copy && { copy, onCopied: (member) => void this.memberCopied(name, member) },
    );
    this.groupRuns.set(name, run);
    return run;
  }

  private makeTarget(name: string, s: ReplicationSettings, copy?: PendingMemberCopy): Target {
    if (isGroup(s)) return this.groupRun(name, s, copy).destination;
    const inner = this.newTarget(s);
    const target = this.wrapTarget ? this.wrapTarget(inner, name) : inner;
    this.limiters.delete(name);
    if (!s.rate_limit) return target;
    const limited = new RateLimitedTarget(target, s.rate_limit.bytes_per_sec);
    this.limiters.set(name, limited);
    return limited;
  }

  /** Names of the replications that use remote `remote`, sorted. */
  remoteUsers(remote: string): string[] {
    return [...this.defs]
      .filter(([, d]) => d.settings.remote === remote)
      .map(([n]) => n)
      .sort();
  }

  private newTarget(s: ReplicationSettings): Target {
    const url = this.remoteUrl(s.dst_host);
    const eff = effectiveSettings(s);
    const common = {
      dstBucket: s.dst_bucket,
      createTarget: eff.create_target,
      ...(s.target_settings ? { targetSettings: s.target_settings } : {}),
    };
    if (s.remote !== undefined) {
      const name = s.remote;
      const remotes = this.remotes;
      const remote = { name, endpoint: () => remotes?.endpoint(name) };
      return new RemoteTarget({
        remote,
        compression: s.compression,
        sourceInstanceId: this.storage.instanceId,
        ...common,
      });
    }
    if (url === null) return new LocalTarget({ storage: this.storage, ...common });
    return new RemoteTarget({
      url,
      token: s.dst_token,
      compression: s.compression,
      sourceInstanceId: this.storage.instanceId,
      // a sync replication ships the entries of its waiting writers at once (task.ts)
      connections:
        s.replication_type === 'sync'
          ? Math.max(eff.batch.max_in_flight, SYNC_CONNECTIONS)
          : eff.batch.max_in_flight,
      verifyTls: this.config.replication.verifySsl,
      timeoutMs: this.config.replication.timeoutMs,
      ...(this.ca ? { ca: this.ca } : {}),
      ...common,
    });
  }

  private checkpoints(name: string): CheckpointStore {
    return new CheckpointStore(this.stateDir, name, this.sync);
  }

  private failureLog(name: string): FailureLog {
    return new FailureLog(this.failuresDir, name, this.sync);
  }

  private async startTask(
    name: string,
    def: StoredDefinition,
    resetFilter: boolean,
    restartCopy = false,
  ): Promise<ReplicationTask> {
    const settings = this.runSettings(def.settings);
    // a group replication copies members added to its group first, one at a time
    const copies = isGroup(def.settings) ? await this.pendingCopies(name).load() : [];
    const copy = copies[0];
    if (copy && !copy.started) {
      restartCopy = true;
      copy.started = true;
      await this.pendingCopies(name).save(copies);
    }
    const target = this.makeTarget(name, def.settings, copy);
    const group = isGroup(def.settings) ? this.groupRuns.get(name) : undefined;
    const task = new ReplicationTask({
      name,
      storage: this.storage,
      settings,
      mode: def.mode,
      checkpoints: this.checkpoints(name),
      failures: this.failureLog(name),
      target,
      resetFilter,
      restartCopy,
      timeoutMs: this.config.replication.timeoutMs,
      syncGate: this.syncGates.bind(name, settings), // sync replication (sync-gates.ts)
      held: this.seeder.holdReason(name), // a `base` claim not checked yet (base-seed.ts)
      ...(group ? { group } : {}),
    });
    // subscribed before it starts, so that its first transitions reach the listeners too
    const off = task.subscribe((e) => this.emit(name, e));
    this.taskUnsubscribe.get(name)?.();
    this.taskUnsubscribe.set(name, off);
    await task.start();
    this.tasks.set(name, task);
    task.hold(this.seeder.holdReason(name)); // the base check may have moved on while it started
    this.emit(name, { type: 'changed' });
    return task;
  }

  /**
   * Live events of replication `name` (whether it exists yet or not): `{type: 'state', from, to,
   * reason, at}` at every transition of its task and `{type: 'changed'}` whenever its figures
   * changed, also when the replication is replaced or removed. Listeners are called synchronously
   * and must not block; one that throws is ignored. Returns the unsubscribe function.
   */
  subscribe(name: string, listener: (e: TaskEvent) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      const cur = this.listeners.get(name);
      cur?.delete(listener);
      if (cur?.size === 0) this.listeners.delete(name);
    };
  }

  private emit(name: string, e: TaskEvent): void {
    for (const l of this.listeners.get(name) ?? []) {
      try {
        l(e);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /** Serialises mutations so that concurrent requests see a consistent set of definitions. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private info(name: string, def: StoredDefinition): ReplicationInfo {
    const task = this.tasks.get(name);
    return {
      name,
      mode: def.mode,
      is_active: task ? task.isActive() : false,
      is_provisioned: def.provisioned,
      pending_records: task ? task.pending().records : 0,
    };
  }

  private status(name: string): Record<string, unknown> {
    const task = this.tasks.get(name);
    const status: Record<string, unknown> = task
      ? task.status()
      : {
          state: 'suspended',
          state_reason: isGroup(this.defs.get(name)?.settings ?? ({} as ReplicationSettings))
            ? 'source group does not exist'
            : 'source bucket does not exist',
          counters: zeroCounters(),
        };
    const upd = this.lastUpdate.get(name);
    if (upd) status.last_update = upd;
    const remote = this.defs.get(name)?.settings.remote;
    if (remote !== undefined && this.remotes) status.remote = this.remotes.ref(remote);
    const limiter = this.limiters.get(name);
    if (limiter) status.rate_limit = limiter.status(Number(status.pending_bytes ?? 0));
    const base = this.seeder.status(name);
    if (base) status.base = base;
    return status;
  }

  /** `GET /replications`: `{"replications": [info, …]}` sorted by name (ReductStore's shape exactly). */
  list(): ReplicationList {
    const names = [...this.defs.keys()].sort();
    return { replications: names.map((n) => this.info(n, this.defs.get(n)!)) };
  }

  /** `GET /replications/{name}`: `{info, settings, diagnostics: {hourly}}`, ReductStore's keys only. */
  get(name: string): ReplicationDetail {
    const def = this.defs.get(name);
    if (!def) throw notFound(name);
    const task = this.tasks.get(name);
    return {
      info: this.info(name, def),
      settings: compatibleSettingsToWire(def.settings, def.mode),
      diagnostics: { hourly: task ? task.diagnostics.hourly() : { ok: 0, errored: 0, errors: {} } },
    };
  }

  /**
   * Ferry's view of one replication for its status route (the monitor) and the filters: the info,
   * every setting (token masked) and the engine's status object; 404 if unknown.
   */
  inspect(name: string): {
    info: ReplicationInfo;
    settings: ReplicationSettingsJson;
    status: Record<string, unknown>;
  } {
    const def = this.defs.get(name);
    if (!def) throw notFound(name);
    return {
      info: this.info(name, def),
      settings: settingsToWire(def.settings, def.mode),
      status: this.status(name),
    };
  }

  /** `POST /replications/{name}`. Does not contact the destination. */
  create(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const settings = this.parse(body);
      if (!isValidBucketName(name)) throw Errors.invalidName();
      if (this.defs.has(name)) throw Errors.conflict(`Replication '${name}' already exists`);
      this.validateTarget(name, settings);
      if (isGroup(settings)) await this.groupWiring.checkDestination(this.groupRemote(settings));
      const cps = this.checkpoints(name);
      await cps.remove();
      await this.failureLog(name).remove();
      const lsn = this.storage.changes.lastLsn();
      const eff = effectiveSettings(settings);
      await this.storage.changes.setSlot({
        name: ReplicationTask.slotName(name),
        bucket: settings.src_bucket,
        lsn,
        maxBytes: ReplicationTask.slotMaxBytes(eff),
        onOverflow: ReplicationTask.slotOverflow(eff),
      });
      await cps.save(initialCheckpoint(lsn));
      await saveCopyOrigin(this.config.dataPath, name, lsn, this.sync);
      const def: StoredDefinition = { settings, mode: settings.mode, provisioned: false };
      this.defs.set(name, def);
      await this.store.save(this.defs);
      await this.seeder.reset(name, settings.base);
      await this.startTask(name, def, false);
      this.seeder.start(name);
    });
  }

  /**
   * `PUT /replications/{name}`: full replacement; `dst_token` omitted/null keeps the old one.
   * Resolves with what happened to the run's copy: `restarted` when `since`, `until`,
   * `continuous` or the scope (bucket, entries, condition) changed, or a completed one-shot run
   * is replaced; `kept` when it goes on from its cursors; `none` when the run has no copy.
   */
  update(name: string, body: unknown): Promise<{ copy: 'restarted' | 'kept' | 'none' }> {
    return this.exclusive(async () => {
      const old = this.defs.get(name);
      if (!old) throw notFound(name);
      if (old.provisioned) throw Errors.conflict(`Can't update provisioned replication '${name}'`);
      const settings = this.parse(body, old.settings.dst_token);
      this.validateTarget(name, settings);
      if (isGroup(settings)) await this.groupWiring.checkDestination(this.groupRemote(settings));
      const filterReset =
        stringifyJson(this.runSettings(old.settings).when) !== stringifyJson(this.runSettings(settings).when);
      const task = this.tasks.get(name);
      const copy = this.copyOnUpdate(old.settings, settings, task?.isCompleted ?? false);
      this.tasks.delete(name);
      await task?.close();
      const def: StoredDefinition = { settings, mode: settings.mode, provisioned: false };
      this.defs.set(name, def);
      await this.store.save(this.defs);
      // a changed base is checked again; the same base keeps its state
      if (!sameBase(old.settings.base, settings.base)) await this.seeder.reset(name, settings.base);
      const started = await this.startTask(name, def, filterReset, copy === 'restarted');
      this.seeder.start(name);
      started.resume();
      this.lastUpdate.set(name, {
        at: new Date().toISOString(),
        cursor: 'kept',
        filter_state: filterReset ? 'reset' : 'kept',
        copy,
      });
      return { copy };
    });
  }

  /** What a PUT from `old` to `next` does to the run's copy (see `update`). */
  private copyOnUpdate(
    old: ReplicationSettings,
    next: ReplicationSettings,
    completed: boolean,
  ): 'restarted' | 'kept' | 'none' {
    if (next.since === undefined && next.base === undefined && next.continuous !== false) return 'none';
    const run = (s: ReplicationSettings): string =>
      stringifyJson([
        s.src_bucket,
        s.entries,
        this.runSettings(s).when,
        s.since ?? null,
        s.until ?? null,
        s.continuous ?? true,
        s.base?.up_to ?? null,
      ]);
    return completed || run(old) !== run(next) ? 'restarted' : 'kept';
  }

  /** `PATCH /replications/{name}/mode` (allowed on provisioned replications; persisted). */
  setMode(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const def = this.defs.get(name);
      if (!def) throw notFound(name);
      const mode = parseMode(body);
      def.mode = mode;
      def.settings.mode = mode;
      await this.store.save(this.defs);
      const task = this.tasks.get(name);
      if (task) {
        task.setMode(mode);
        // PATCH is also how a user resumes a suspended replication without changing its mode
        if (mode !== 'disabled') task.resume();
      }
    });
  }

  /** `DELETE /replications/{name}`: stops the task, drops its slot, checkpoint and failure log. */
  remove(name: string): Promise<void> {
    return this.exclusive(async () => {
      const def = this.defs.get(name);
      if (!def) throw notFound(name);
      if (def.provisioned) throw Errors.conflict(`Can't remove provisioned replication '${name}'`);
      const task = this.tasks.get(name);
      this.tasks.delete(name);
      await task?.close();
      this.defs.delete(name);
      this.lastUpdate.delete(name);
      this.limiters.delete(name);
      this.groupRuns.delete(name);
      await this.pendingCopies(name).remove();
      await this.store.save(this.defs);
      await this.storage.changes.dropSlot(ReplicationTask.slotName(name));
      await this.checkpoints(name).remove();
      await this.failureLog(name).remove();
      await removeCopyOrigin(this.config.dataPath, name);
      await this.seeder.forget(name);
      this.syncGates.remove(name); // its waiting writers: 503, outcome unknown
      this.taskUnsubscribe.get(name)?.();
      this.taskUnsubscribe.delete(name);
      this.emit(name, { type: 'changed' });
    });
  }

  /** `GET /replications/{name}/failures`: `{"total": n, "failures": [newest ≤ 1000 entries]}`. */
  async failures(name: string): Promise<ReplicationFailures> {
    if (!this.defs.has(name)) throw notFound(name);
    return this.failureLog(name).list();
  }

  // ---------------------------------------------------------------- verify (issue 11)

  /** What a verification of replication `name` needs (verify-service.ts); 404 for an unknown one. */
  verifySubject(name: string): VerifySubject {
    const def = this.defs.get(name);
    if (!def) throw notFound(name);
    if (isGroup(def.settings))
      throw Errors.unprocessable(`Replication '${name}' replicates a group: verify compares one bucket`);
    return {
      settings: this.runSettings(def.settings),
      // the peer first: it may refuse (unknown remote) before a target's pool exists
      peer: this.newPeer(def.settings),
      target: this.makeTarget(name, def.settings),
      // the live cursor: what the destination acknowledged, before the checkpoint catches up
      deliveredLsn: async () => {
        const persisted =
          (await this.checkpoints(name).load())?.lsn ??
          this.storage.changes.getSlot(ReplicationTask.slotName(name))?.lsn ??
          0n;
        const live = this.tasks.get(name)?.deliveredLsn ?? 0n;
        return live > persisted ? live : persisted;
      },
      createdLsn: () => loadCopyOrigin(this.config.dataPath, name),
      needsVerifyReason: () => {
        const st = this.tasks.get(name)?.status();
        return st?.needs_verify ? String(st.needs_verify_reason ?? '') : null;
      },
      clearNeedsVerify: (reason) => this.clearNeedsVerify(name, reason),
    };
  }

  private newPeer(s: ReplicationSettings): VerifyPeer {
    if (s.remote !== undefined) {
      // through the remote's own pool, like its target
      const ep = this.remotes?.endpoint(s.remote);
      if (!ep) throw Errors.remoteNotFound(s.remote);
      return new RemotePeer({
        url: ep.url,
        token: ep.token,
        bucket: s.dst_bucket,
        verifyTls: this.config.replication.verifySsl,
        timeoutMs: ep.requestTimeoutMs,
        dispatcher: ep.dispatcher,
      });
    }
    const url = this.remoteUrl(s.dst_host);
    if (url === null) return new LocalPeer(this.storage, s.dst_bucket);
    return new RemotePeer({
      url,
      token: s.dst_token,
      bucket: s.dst_bucket,
      verifyTls: this.config.replication.verifySsl,
      timeoutMs: this.config.replication.timeoutMs,
      ...(this.ca ? { ca: this.ca } : {}),
    });
  }

  /**
   * A verification with repair proved the copy complete: `needs_verify` is cleared if its reason
   * is still `reason` (a later overflow keeps it). The task restarts from its checkpoint with the
   * flag cleared, as after a PUT.
   */
  private clearNeedsVerify(name: string, reason: string): Promise<boolean> {
    return this.exclusive(async () => {
      const def = this.defs.get(name);
      const task = this.tasks.get(name);
      if (!def || !task) return false;
      const st = task.status();
      if (!st.needs_verify || String(st.needs_verify_reason ?? '') !== reason) return false;
      this.tasks.delete(name);
      await task.close();
      const cps = this.checkpoints(name);
      const cp = await cps.load();
      if (cp) await cps.save({ ...cp, needs_verify: false, needs_verify_reason: null });
      await this.startTask(name, def, false);
      return true;
    });
  }

  /**
   * Group `group` was created, changed or removed: each of its replications restarts with the
   * new members (cursor kept); a removed member is not shipped any more, one whose group is
   * gone stops (status says why).
   */
  private followGroup(group: string): Promise<void> {
    return this.exclusive(async () => {
      if (this.closed) return;
      for (const [name, def] of this.defs) {
        if (def.settings.src_group !== group) continue;
        const task = this.tasks.get(name);
        const before = this.groupRuns.get(name)?.members;
        this.tasks.delete(name);
        await task?.close();
        this.groupRuns.delete(name);
        await this.planMemberCopies(name, group, before);
        try {
          await this.startTask(name, def, false);
        } catch (e) {
          if (!isFerryError(e)) throw e;
          process.emitWarning(`Replication '${name}': ${e.message}; task not started`);
        }
      }
    });
  }

  private pendingCopies(name: string): PendingCopies {
    return new PendingCopies(this.stateDir, name, this.sync);
  }

  /**
   * After group `group` changed: members added since `before` are queued for a copy of the
   * records they hold up to the replication's cursor (later ones come from the log); members no
   * longer in the group leave the queue.
   */
  private async planMemberCopies(
    name: string,
    group: string,
    before: ReadonlySet<string> | undefined,
  ): Promise<void> {
    let now: readonly string[];
    try {
      now = this.groupWiring.members(group);
    } catch {
      return; // the group is gone: its replication stops (startTask says why)
    }
    const store = this.pendingCopies(name);
    const copies = (await store.load()).filter((c) => now.includes(c.member));
    if (before) {
      const lsn = (await this.checkpoints(name).load())?.lsn ?? this.storage.changes.lastLsn();
      for (const m of now)
        if (!before.has(m) && !copies.some((c) => c.member === m)) copies.push(newMemberCopy(m, lsn));
    }
    await store.save(copies);
  }

  /** The member copy of group replication `name` was delivered: the next one, or the log. */
  private memberCopied(name: string, member: string): Promise<void> {
    return this.exclusive(async () => {
      const def = this.defs.get(name);
      if (this.closed || !def) return;
      const store = this.pendingCopies(name);
      const copies = await store.load();
      if (copies[0]?.member !== member) return;
      const task = this.tasks.get(name);
      this.tasks.delete(name);
      await task?.close();
      this.groupRuns.delete(name);
      await store.save(copies.slice(1));
      await this.startTask(name, def, false);
    });
  }

  /** Stops every task (final checkpoints written). */
  close(): Promise<void> {
    return this.exclusive(async () => {
      if (this.closed) return;
      this.closed = true;
      this.seeder.close();
      const tasks = [...this.tasks.values()];
      this.tasks.clear();
      await Promise.all(tasks.map((t) => t.close()));
    });
  }
}
