/**
 * `replicate(src, dst, options)`: the one-call way to copy a bucket between two servers, in the
 * spirit of python-cloudant's `Replicator` (create, state, follow, stop).
 */
import type { ReplicationSettingsRequest } from '../protocol/replications.js';
import type { ReplicationState, ReplicationStatus } from '../protocol/replication-status.js';
import type { FerryClient } from './ferry-client.js';
import type { FollowOptions, ReplicationEvent } from './replications.js';
import type { CallOptions } from './transport.js';

/** Where to replicate to: another client, or a URL and token. */
export type Destination = FerryClient | { url: string; token?: string };

/** Options of {@link replicate}. */
export interface ReplicateOptions extends CallOptions {
  /** Bucket to copy from. */
  srcBucket: string;
  /** Bucket to copy to (default: the source bucket's name). */
  dstBucket?: string;
  /** Replication name on the source (default `replicate-<random>`). */
  name?: string;
  /**
   * Further settings, compatible (`entries`, `when`, `dst_prefix`, `compression`, `mode`) or Ferry
   * extensions (`batch`, `retry`, `on_write_failure`, …).
   */
  settings?: Omit<
    Partial<ReplicationSettingsRequest>,
    'src_bucket' | 'dst_bucket' | 'dst_host' | 'dst_token'
  >;
}

/** A running replication created by {@link replicate}. */
export interface ReplicationHandle {
  /** Name of the replication on the source server. */
  readonly name: string;
  /** Current state (`replicating`, `idle`, `retrying`, `completed`, …). */
  state(opts?: CallOptions): Promise<ReplicationState>;
  /** The full status. */
  status(opts?: CallOptions): Promise<ReplicationStatus>;
  /** Live events until `completed`, an abort or a break (see `Replications.follow`). */
  follow(opts?: FollowOptions): AsyncGenerator<ReplicationEvent>;
  /** Stops the replication for good (deletes it on the source; copied data stays). */
  stop(opts?: CallOptions): Promise<void>;
}

function destinationOf(src: FerryClient, dst: Destination): { host: string; token: string | undefined } {
  if ('http' in dst) {
    // The same server: its own engine, no HTTP hop and no token needed.
    if (dst.url === src.url) return { host: '', token: undefined };
    return { host: dst.url, token: dst.http.token };
  }
  return { host: dst.url.replace(/\/+$/, ''), token: dst.token };
}

/**
 * Creates a replication on `src` that copies `srcBucket` to `dst`, and returns a handle on it.
 * @example
 * import { FerryClient, replicate } from 'ferry/client';
 * const edge = new FerryClient('http://edge:8383', { token: 'edge-token' });
 * const cloud = new FerryClient('https://cloud:8383', { token: 'cloud-token' });
 * const job = await replicate(edge, cloud, { srcBucket: 'cameras', dstBucket: 'robot-1' });
 * console.log(await job.state());
 * await job.stop();
 */
export async function replicate(
  src: FerryClient,
  dst: Destination,
  options: ReplicateOptions,
): Promise<ReplicationHandle> {
  const name = options.name ?? `replicate-${globalThis.crypto.randomUUID().slice(0, 8)}`;
  const { host, token } = destinationOf(src, dst);
  const settings: ReplicationSettingsRequest = {
    ...options.settings,
    src_bucket: options.srcBucket,
    dst_bucket: options.dstBucket ?? options.srcBucket,
    dst_host: host,
  };
  if (token !== undefined) settings.dst_token = token;
  await src.replications.create(name, settings, options);
  return {
    name,
    state: async (opts) => (await src.replications.status(name, opts)).state,
    status: (opts) => src.replications.status(name, opts),
    follow: (opts) => src.replications.follow(name, opts),
    stop: (opts) => src.replications.delete(name, opts),
  };
}
