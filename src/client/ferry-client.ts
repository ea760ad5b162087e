/**
 * The entry point of the SDK: one server, its buckets, tokens, replications and monitoring.
 */
import type { BucketList, BucketSettingsPatch, BucketInfo, U64 } from '../protocol/buckets.js';
import type { ActiveTasks } from '../protocol/replication-status.js';
import type { ServerInfo } from '../protocol/server-info.js';
import type { TokenCreated, TokenCreateRequest, TokenJson, TokenList } from '../protocol/tokens.js';
import { Bucket } from './bucket.js';
import { Filters } from './filters.js';
import { Groups } from './groups.js';
import { Remotes } from './remotes.js';
import { Replications } from './replications.js';
import { encodePath, Transport, type CallOptions, type ClientOptions } from './transport.js';

/** Options of {@link FerryClient.createBucket}. */
export interface CreateBucketOptions extends CallOptions {
  /** Succeed when the bucket already exists (its settings are left as they are). */
  existOk?: boolean;
}

/** Client of one Ferry (or ReductStore) server. */
export class FerryClient {
  /** The transport (URL, token, timeouts) shared by every handle of this client. */
  readonly http: Transport;
  /** The replication API. */
  readonly replications: Replications;
  /** Stored filters for replications. */
  readonly filters: Filters;
  /** Consistency groups of buckets. */
  readonly groups: Groups;
  /** Remotes: named connections to other instances. */
  readonly remotes: Remotes;

  /**
   * @param url base URL of the server, e.g. `http://127.0.0.1:8383` (a base path may follow)
   * @example
   * import { FerryClient } from 'ferry/client';
   * const client = new FerryClient('http://127.0.0.1:8383', { token: 'my-token', timeoutMs: 10_000 });
   */
  constructor(url: string, options: ClientOptions = {}) {
    this.http = new Transport(url, options);
    this.replications = new Replications(this.http);
    this.filters = new Filters(this.http);
    this.groups = new Groups(this.http);
    this.remotes = new Remotes(this.http);
  }

  /** Base URL of the server (no trailing slash). */
  get url(): string {
    return this.http.url;
  }

  /**
   * Server version, role, usage and bucket defaults.
   * @example
   * const { version, instance_name, bucket_count } = await client.info();
   */
  info(opts: CallOptions = {}): Promise<ServerInfo<U64>> {
    return this.http.json({ ...opts, method: 'GET', path: 'info' });
  }

  /**
   * True when the server answers `/alive` (no token needed); false when it cannot be reached.
   * @example
   * if (!(await client.alive())) console.error('server down');
   */
  async alive(opts: CallOptions = {}): Promise<boolean> {
    try {
      await this.http.empty({ ...opts, method: 'GET', path: 'alive' });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The calling token (value masked) with its permissions.
   * @example
   * const me = await client.me();
   * console.log(me.name, me.permissions.full_access);
   */
  me(opts: CallOptions = {}): Promise<TokenJson> {
    return this.http.json({ ...opts, method: 'GET', path: 'me' });
  }

  /**
   * Buckets the token can read.
   * @example
   * for (const b of await client.listBuckets()) console.log(b.name, b.entry_count, b.size);
   */
  async listBuckets(opts: CallOptions = {}): Promise<BucketInfo<U64>[]> {
    return (await this.http.json<BucketList<U64>>({ ...opts, method: 'GET', path: 'list' })).buckets;
  }

  /**
   * A handle on a bucket (no request is made).
   * @example
   * const bucket = client.bucket('cameras');
   * await bucket.write('front', 1n, 'hello');
   */
  bucket(name: string): Bucket {
    return new Bucket(this.http, name);
  }

  /**
   * Creates a bucket (settings left out take the server's defaults) and returns its handle.
   * @example
   * const bucket = await client.createBucket('cameras', { quota_type: 'FIFO', quota_size: 1e9 }, { existOk: true });
   */
  async createBucket(
    name: string,
    settings: BucketSettingsPatch<U64> = {},
    opts: CreateBucketOptions = {},
  ): Promise<Bucket> {
    try {
      await this.http.empty({ ...opts, method: 'POST', path: `b/${encodePath(name)}`, json: settings });
    } catch (e) {
      if (!(opts.existOk && (e as { status?: number }).status === 409)) throw e;
    }
    return this.bucket(name);
  }

  /**
   * Renames a bucket (tokens follow the new name).
   * @example
   * await client.renameBucket('cams', 'cameras');
   */
  async renameBucket(name: string, newName: string, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({
      ...opts,
      method: 'PUT',
      path: `b/${encodePath(name)}/rename`,
      json: { new_name: newName },
    });
  }

  /**
   * Every token (values masked).
   * @example
   * console.log((await client.listTokens()).map((t) => t.name));
   */
  async listTokens(opts: CallOptions = {}): Promise<TokenJson[]> {
    return (await this.http.json<TokenList>({ ...opts, method: 'GET', path: 'tokens' })).tokens;
  }

  /**
   * Creates a token; the answer is the only time its value is shown.
   * @example
   * const { value } = await client.createToken('reader', { permissions: { read: ['cameras'] } });
   */
  createToken(name: string, request: TokenCreateRequest = {}, opts: CallOptions = {}): Promise<TokenCreated> {
    return this.http.json({ ...opts, method: 'POST', path: `tokens/${encodePath(name)}`, json: request });
  }

  /**
   * Removes a token.
   * @example
   * await client.removeToken('reader');
   */
  async removeToken(name: string, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'DELETE', path: `tokens/${encodePath(name)}` });
  }

  /**
   * What runs now (replications and verifications) with their counters or progress.
   * @example
   * for (const t of await client.activeTasks())
   *   if (t.type === 'replication') console.log(t.name, t.state, t.pending_records);
   */
  async activeTasks(opts: CallOptions = {}): Promise<ActiveTasks['tasks']> {
    return (await this.http.json<ActiveTasks>({ ...opts, method: 'GET', path: 'active_tasks' })).tasks;
  }
}
