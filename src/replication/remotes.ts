/**
 * Remotes (replication.md §5): named connections to other instances that replications name
 * instead of `dst_host`/`dst_token`. Each remote has one undici connection pool, shared by every
 * replication that uses it and by its prober; every new connection of the pool passes the
 * identity check of remote-connector.ts against the instance id pinned at first contact. The
 * prober asks `GET /api/v1/info` every `probeIntervalMs` and keeps the health of remote-health.ts.
 * CRUD takes and returns wire-shaped JSON and throws FerryError; secrets never leave this module
 * except in the `Authorization` header of requests to the remote itself.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher, Pool } from 'undici';
import { undici } from './undici.js';
import { Errors } from '../protocol/errors.js';
import { parseJson } from '../protocol/json.js';
import { MAX_REMOTES } from '../protocol/limits.js';
import { isValidBucketName } from '../protocol/names.js';
import type { RemoteJson, RemoteList, RemoteRef, RemoteState } from '../protocol/remotes.js';
import { IDENTITY_MISMATCH, remoteConnector } from './remote-connector.js';
import { RemoteHealth, type ProbeOutcome } from './remote-health.js';
import {
  parseRemoteSettings,
  proxyHasCredentials,
  publicProxy,
  type RemoteDefaults,
  type RemoteSettings,
} from './remote-settings.js';
import { RemotesStore, type StoredRemote } from './remotes-store.js';
import { realClock, type Clock } from './clock.js';

/** Connections of one remote's pool: enough for 8 replications with 4 shipments in flight each. */
const POOL_CONNECTIONS = 32;
/** Default period of the background probe. */
export const DEFAULT_PROBE_INTERVAL_MS = 10_000;

/** What a remote target uses to reach the remote now (the pool follows `PUT`s of the remote). */
export interface RemoteEndpoint {
  readonly name: string;
  /** Base URL (its path is the API base path). */
  readonly url: URL;
  /** Secret. */
  readonly token: string | null;
  /** The remote's one pool; requests must give `origin: url.origin`. */
  readonly dispatcher: Dispatcher;
  readonly requestTimeoutMs: number;
}

/** Options of {@link RemoteRegistry.open}. */
export interface RemoteRegistryOptions {
  dataPath: string;
  /** fsync the remotes file (durability is not `none`). */
  sync: boolean;
  defaults: RemoteDefaults;
  timers?: Clock;
  /** Period of the background probe (default 10 s); 0 = no background probe (tests call `probeNow`). */
  probeIntervalMs?: number;
  /** Warnings (never with a secret in them). */
  warn?: (message: string) => void;
}

/** One remote with its pool and health. */
class LiveRemote {
  health: RemoteHealth;
  pool: Pool;
  endpoint: RemoteEndpoint;
  mismatch = false;
  seenInstanceId: string | null = null;
  connectionsOpened = 0;
  timer: unknown;
  probing: Promise<void> | null = null;

  constructor(
    readonly name: string,
    public stored: StoredRemote,
    private readonly onPinned: () => void,
    private readonly now: () => number,
  ) {
    this.health = new RemoteHealth(stored.settings.request_timeout_ms / 2);
    this.pool = this.newPool();
    this.endpoint = this.newEndpoint();
  }

  get settings(): RemoteSettings {
    return this.stored.settings;
  }

  private newEndpoint(): RemoteEndpoint {
    const s = this.settings;
    return {
      name: this.name,
      url: new URL(s.url),
      token: s.token,
      dispatcher: this.pool,
      requestTimeoutMs: s.request_timeout_ms,
    };
  }

  private newPool(): Pool {
    const s = this.settings;
    const url = new URL(s.url);
    return new (undici().Pool)(url.origin, {
      connections: POOL_CONNECTIONS,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      // a re-sent batch is answered with one header per record (present or 409)
      maxHeaderSize: 4 * 1024 * 1024,
      headersTimeout: s.request_timeout_ms,
      bodyTimeout: s.request_timeout_ms,
      connect: remoteConnector({
        url,
        proxy: s.proxy === null ? null : new URL(s.proxy),
        connectTimeoutMs: s.connect_timeout_ms,
        requestTimeoutMs: s.request_timeout_ms,
        verifyTls: s.verify_tls,
        ca: s.ca,
        verify: (id) => this.verify(id),
        opened: () => void this.connectionsOpened++,
      }),
    });
  }

  /** The identity check of every new connection (replication.md §5). */
  private verify(seen: string | null): void {
    this.seenInstanceId = seen;
    const pinned = this.stored.pinned_instance_id;
    if (pinned === null) {
      // first contact: pin what answers (a ReductStore has no id to pin)
      if (seen !== null) {
        this.stored.pinned_instance_id = seen;
        this.stored.pinned_at = new Date(this.now()).toISOString();
        this.onPinned();
      }
      this.mismatch = false;
      return;
    }
    if (seen === pinned) {
      this.mismatch = false;
      return;
    }
    this.mismatch = true;
    const message =
      `remote identity mismatch: remote '${this.name}' is pinned to instance ${pinned}, but ` +
      `${new URL(this.settings.url).origin} answered as ${seen === null ? 'an instance without an id' : `instance ${seen}`}; ` +
      `nothing was sent. If this is the intended store, re-pin it with POST /api/v1/remotes/${this.name}/pin`;
    this.health.noteError(message, this.now());
    const e = new Error(message) as Error & { code: string };
    e.code = IDENTITY_MISMATCH;
    throw e;
  }

  /** New settings (or a new pin): a new pool; the old one finishes what it has in flight. */
  replace(stored: StoredRemote): void {
    const old = this.pool;
    this.stored = stored;
    this.health = new RemoteHealth(stored.settings.request_timeout_ms / 2);
    this.mismatch = false;
    this.seenInstanceId = null;
    this.pool = this.newPool();
    this.endpoint = this.newEndpoint();
    void old.close().catch(() => undefined);
  }

  state(): RemoteState {
    return this.mismatch ? 'down' : this.health.state;
  }

  async close(): Promise<void> {
    await this.pool.destroy().catch(() => undefined);
  }
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Every remote of this instance. */
export class RemoteRegistry {
  private readonly remotes = new Map<string, LiveRemote>();
  private readonly timers: Clock;
  private readonly intervalMs: number;
  private users: (remote: string) => string[] = () => [];
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly store: RemotesStore,
    private readonly opts: RemoteRegistryOptions,
  ) {
    this.timers = opts.timers ?? realClock;
    this.intervalMs = opts.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  }

  /** Loads the stored remotes and starts probing them. */
  static async open(opts: RemoteRegistryOptions): Promise<RemoteRegistry> {
    const r = new RemoteRegistry(new RemotesStore(opts.dataPath, opts.sync), opts);
    for (const [name, stored] of await r.store.load()) r.add(name, stored);
    return r;
  }

  /** Tells the registry which replications use a remote (the replication manager knows). */
  setUsers(users: (remote: string) => string[]): void {
    this.users = users;
  }

  private add(name: string, stored: StoredRemote): LiveRemote {
    const live = new LiveRemote(name, stored, () => this.persist(), this.timers.now);
    this.remotes.set(name, live);
    this.schedule(live, 0);
    return live;
  }

  private persist(): void {
    const snapshot = new Map([...this.remotes].map(([n, r]) => [n, r.stored]));
    this.store
      .save(snapshot)
      .catch((e: unknown) => this.opts.warn?.(`Saving the remotes failed: ${(e as Error).message}`));
  }

  private async save(): Promise<void> {
    await this.store.save(new Map([...this.remotes].map(([n, r]) => [n, r.stored])));
  }

  /** Serialises mutations. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private live(name: string): LiveRemote {
    const r = this.remotes.get(name);
    if (!r) throw Errors.remoteNotFound(name);
    return r;
  }

  // ------------------------------------------------------------------ probing

  private schedule(r: LiveRemote, delayMs: number): void {
    if (this.closed || this.intervalMs <= 0) return;
    this.timers.clearTimeout(r.timer);
    r.timer = this.timers.setTimeout(() => {
      void this.probe(r).finally(() => {
        if (this.remotes.get(r.name) === r) this.schedule(r, this.intervalMs);
      });
    }, delayMs);
  }

  /** Probes remote `name` now and resolves once the probe has ended (tests, re-pin). */
  async probeNow(name: string): Promise<void> {
    await this.probe(this.live(name));
  }

  private probe(r: LiveRemote): Promise<void> {
    r.probing ??= this.runProbe(r).finally(() => (r.probing = null));
    return r.probing;
  }

  private async runProbe(r: LiveRemote): Promise<void> {
    const health = r.health;
    const ep = r.endpoint;
    const outcome = await probeOnce(ep);
    // a PUT meanwhile replaced the health: this probe was of the old settings
    if (r.health === health) health.record(outcome, this.timers.now());
  }

  // ------------------------------------------------------------------ for replications

  /** Whether remote `name` exists. */
  has(name: string): boolean {
    return this.remotes.has(name);
  }

  /** The current endpoint of remote `name` (undefined once removed). */
  endpoint(name: string): RemoteEndpoint | undefined {
    return this.remotes.get(name)?.endpoint;
  }

  /** What the status of a replication using remote `name` shows about it. */
  ref(name: string): RemoteRef {
    const r = this.remotes.get(name);
    if (!r)
      return {
        name,
        state: 'unknown',
        url: '',
        identity_mismatch: false,
        last_error: {
          message: `Remote '${name}' does not exist`,
          at: new Date(this.timers.now()).toISOString(),
        },
      };
    const err = r.health.lastError;
    return {
      name,
      state: r.state(),
      url: r.settings.url,
      identity_mismatch: r.mismatch,
      last_error: err ? { message: err.message, at: iso(err.at)! } : null,
    };
  }

  // ------------------------------------------------------------------ API

  private json(r: LiveRemote): RemoteJson {
    const s = r.settings;
    const h = r.health;
    const stats = r.pool.stats;
    return {
      name: r.name,
      url: s.url,
      has_token: s.token !== null,
      proxy: publicProxy(s.proxy),
      proxy_has_credentials: proxyHasCredentials(s.proxy),
      connect_timeout_ms: s.connect_timeout_ms,
      request_timeout_ms: s.request_timeout_ms,
      verify_tls: s.verify_tls,
      ca: s.ca,
      state: r.state(),
      rtt_ms: h.rttMs === null ? null : Math.round(h.rttMs * 10) / 10,
      instance_id: h.instanceId,
      version: h.version,
      last_probe_at: iso(h.lastProbeAt),
      last_ok_at: iso(h.lastOkAt),
      last_error: h.lastError ? { message: h.lastError.message, at: iso(h.lastError.at)! } : null,
      identity: {
        pinned_instance_id: r.stored.pinned_instance_id,
        pinned_at: r.stored.pinned_at,
        mismatch: r.mismatch,
        seen_instance_id: r.seenInstanceId,
      },
      replications: this.users(r.name),
      pool: {
        connections_opened: r.connectionsOpened,
        connected: stats.connected,
        pending: stats.pending,
        running: stats.running,
      },
      created_at: r.stored.created_at,
      updated_at: r.stored.updated_at,
    };
  }

  /** `GET /remotes`. */
  list(): RemoteList {
    const names = [...this.remotes.keys()].sort();
    return { remotes: names.map((n) => this.json(this.remotes.get(n)!)) };
  }

  /** `GET /remotes/{name}`. */
  get(name: string): RemoteJson {
    return this.json(this.live(name));
  }

  /** `POST /remotes/{name}`: stored, then probed at once (the first contact pins its identity). */
  create(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      if (!isValidBucketName(name)) throw Errors.remoteInvalidName(name);
      const settings = parseRemoteSettings(body, this.opts.defaults);
      if (this.remotes.has(name)) throw Errors.remoteExists(name);
      if (this.remotes.size >= MAX_REMOTES) throw Errors.remoteTooMany(MAX_REMOTES);
      const at = new Date(this.timers.now()).toISOString();
      const live = this.add(name, {
        settings,
        pinned_instance_id: null,
        pinned_at: null,
        created_at: at,
        updated_at: at,
      });
      try {
        await this.save();
      } catch (e) {
        this.remotes.delete(name);
        await live.close();
        throw e;
      }
    });
  }

  /**
   * `PUT /remotes/{name}`: replaces the settings (`token` omitted or null keeps the old one). The
   * pin is kept: a new URL that leads to another instance is refused until re-pinned.
   */
  update(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const r = this.live(name);
      const settings = parseRemoteSettings(body, this.opts.defaults, r.settings);
      r.replace({ ...r.stored, settings, updated_at: new Date(this.timers.now()).toISOString() });
      await this.save();
      this.schedule(r, 0);
    });
  }

  /**
   * `POST /remotes/{name}/pin`: pins `instance_id` when given, else forgets the pin so that the
   * next contact (the probe run now) pins whatever answers. Answers the remote after that probe.
   */
  pin(name: string, body: unknown): Promise<RemoteJson> {
    return this.exclusive(async () => {
      const r = this.live(name);
      let id: string | null = null;
      if (body !== undefined && body !== null) {
        if (typeof body !== 'object' || Array.isArray(body)) throw Errors.invalidJson('expected an object');
        const b = body as Record<string, unknown>;
        for (const k of Object.keys(b))
          if (k !== 'instance_id') throw Errors.remoteInvalid(k, 'unknown field');
        if (b.instance_id !== undefined && b.instance_id !== null) {
          if (typeof b.instance_id !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(b.instance_id))
            throw Errors.remoteInvalid(
              'instance_id',
              'must be an instance id (1 to 128 printable characters)',
            );
          id = b.instance_id;
        }
      }
      const at = new Date(this.timers.now()).toISOString();
      r.replace({ ...r.stored, pinned_instance_id: id, pinned_at: id === null ? null : at, updated_at: at });
      await this.save();
      await this.probe(r);
      this.schedule(r, this.intervalMs);
      return this.json(r);
    });
  }

  /** `DELETE /remotes/{name}`: refused (409) while replications use it, unless `force`. */
  remove(name: string, force: boolean): Promise<void> {
    return this.exclusive(async () => {
      const r = this.live(name);
      const users = this.users(name);
      if (users.length > 0 && !force) throw Errors.remoteInUse(name, users);
      this.timers.clearTimeout(r.timer);
      this.remotes.delete(name);
      await this.save();
      await r.close();
    });
  }

  /** Stops probing and closes every pool. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.remotes.values()];
    for (const r of all) this.timers.clearTimeout(r.timer);
    await Promise.all(all.map((r) => r.close()));
  }
}

/** One `GET /api/v1/info` through the remote's pool. */
async function probeOnce(ep: RemoteEndpoint): Promise<ProbeOutcome> {
  const base = ep.url.pathname.replace(/\/+$/, '');
  const started = performance.now();
  try {
    const res = await ep.dispatcher.request({
      origin: ep.url.origin,
      method: 'GET',
      path: `${base}/api/v1/info`,
      headers: ep.token ? { authorization: `Bearer ${ep.token}` } : {},
      signal: AbortSignal.timeout(ep.requestTimeoutMs * 2),
    });
    const text = await res.body.text();
    const rttMs = performance.now() - started;
    if (res.statusCode !== 200) {
      const err = res.headers['x-reduct-error'];
      return {
        ok: false,
        message: `HTTP ${res.statusCode}${typeof err === 'string' ? `: ${err.slice(0, 512)}` : ''}`,
      };
    }
    const inst = res.headers['x-ferry-instance'];
    let version: string | null = null;
    try {
      const info = parseJson(text) as { version?: unknown } | undefined;
      if (typeof info?.version === 'string') version = info.version.slice(0, 64);
    } catch {
      // a body that is not JSON: still reachable
    }
    return { ok: true, rttMs, instanceId: typeof inst === 'string' ? inst : null, version };
  } catch (e) {
    const err = e as Error & { code?: string };
    const timeout = err.name === 'TimeoutError' || /TIMEOUT/.test(err.code ?? '');
    return { ok: false, message: `${timeout ? 'Timeout' : 'Connection error'}: ${err.message}` };
  }
}
