/**
 * Remotes of one server (`/api/v1/remotes/{name}`, replication.md §5): named, monitored
 * connections to other instances that replications name with `remote` instead of repeating a URL
 * and a token. Tokens are write-only: no answer carries them.
 */
import type { RemoteJson, RemoteList, RemotePinRequest, RemoteRequest } from '../protocol/remotes.js';
import { encodePath, type CallOptions, type Transport } from './transport.js';

/** Remotes; obtained as `client.remotes`. */
export class Remotes {
  constructor(private readonly http: Transport) {}

  private path(name: string, suffix = ''): string {
    return `remotes/${encodePath(name)}${suffix}`;
  }

  /**
   * Every remote with its probe state, round-trip time, pinned identity and users.
   * @example
   * for (const r of await client.remotes.list()) console.log(r.name, r.state, r.rtt_ms, r.replications);
   */
  async list(opts: CallOptions = {}): Promise<RemoteJson[]> {
    return (await this.http.json<RemoteList>({ ...opts, method: 'GET', path: 'remotes' })).remotes;
  }

  /**
   * One remote; 404 if unknown.
   * @example
   * const { state, identity, last_error } = await client.remotes.get('cloud');
   */
  get(name: string, opts: CallOptions = {}): Promise<RemoteJson> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name) });
  }

  /**
   * Creates a remote; the server starts probing it at once.
   * @example
   * await client.remotes.create('cloud', { url: 'https://cloud:8383', token: process.env.CLOUD_TOKEN });
   * await client.replications.create('to-cloud', { src_bucket: 'cams', dst_bucket: 'robot-1', remote: 'cloud' });
   */
  async create(name: string, remote: RemoteRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'POST', path: this.path(name), json: remote });
  }

  /**
   * Replaces a remote's settings (a token left out keeps the stored one).
   * @example
   * await client.remotes.replace('cloud', { url: 'https://cloud:8383', request_timeout_ms: 30_000 });
   */
  async replace(name: string, remote: RemoteRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'PUT', path: this.path(name), json: remote });
  }

  /**
   * Pins the remote's instance identity again after a deliberate move: to `instance_id`, or (left
   * out) to whichever instance answers next. Until then a mismatch stops every replication to it.
   * @example
   * const r = await client.remotes.pin('cloud');
   * console.log(r.identity.pinned_instance_id);
   */
  pin(name: string, request: RemotePinRequest = {}, opts: CallOptions = {}): Promise<RemoteJson> {
    return this.http.json({ ...opts, method: 'POST', path: this.path(name, '/pin'), json: request });
  }

  /**
   * Deletes a remote; refused (409) while replications use it unless `force`.
   * @example
   * await client.remotes.delete('old-cloud');
   */
  async delete(name: string, opts: CallOptions & { force?: boolean } = {}): Promise<void> {
    await this.http.empty({
      ...opts,
      method: 'DELETE',
      path: this.path(name),
      query: { force: opts.force ? true : undefined },
    });
  }
}
