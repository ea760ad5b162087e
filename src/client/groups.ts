/**
 * Consistency groups of one server (`/api/v1/groups/{name}`, replication.md §8): buckets that a
 * replication with `src_group` ships as one unit, in commit order.
 */
import type { GroupInfo, GroupList, GroupSettings } from '../protocol/groups.js';
import { encodePath, type CallOptions, type Transport } from './transport.js';

/** Consistency groups; obtained as `client.groups`. */
export class Groups {
  constructor(private readonly http: Transport) {}

  private path(name: string): string {
    return `groups/${encodePath(name)}`;
  }

  /**
   * Every group with its member buckets.
   * @example
   * for (const g of await client.groups.list()) console.log(g.name, g.buckets.join(','));
   */
  async list(opts: CallOptions = {}): Promise<GroupInfo[]> {
    return (await this.http.json<GroupList>({ ...opts, method: 'GET', path: 'groups' })).groups;
  }

  /**
   * One group; 404 if unknown.
   * @example
   * const { buckets, is_provisioned } = await client.groups.get('robot-1');
   */
  get(name: string, opts: CallOptions = {}): Promise<GroupInfo> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name) });
  }

  /**
   * Creates a group of existing buckets (a bucket belongs to at most one group: 409 otherwise).
   * @example
   * await client.groups.create('robot-1', { buckets: ['camera', 'lidar', 'pose'] });
   */
  async create(name: string, settings: GroupSettings, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'POST', path: this.path(name), json: settings });
  }

  /**
   * Replaces the member list of a group.
   * @example
   * await client.groups.replace('robot-1', { buckets: ['camera', 'lidar', 'pose', 'imu'] });
   */
  async replace(name: string, settings: GroupSettings, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'PUT', path: this.path(name), json: settings });
  }

  /**
   * Deletes a group (its buckets and their data stay).
   * @example
   * await client.groups.delete('robot-1');
   */
  async delete(name: string, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'DELETE', path: this.path(name) });
  }
}
