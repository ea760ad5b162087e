/**
 * Stored filters of one server (`/api/v1/filters/{name}`): `when` templates with
 * `{"$param": "<name>"}` placeholders that replications fill with their `query_params`.
 */
import type { FilterJson, FilterList, FilterRequest } from '../protocol/filters.js';
import { encodePath, type CallOptions, type Transport } from './transport.js';

/** Stored filters; obtained as `client.filters`. */
export class Filters {
  constructor(private readonly http: Transport) {}

  private path(name: string): string {
    return `filters/${encodePath(name)}`;
  }

  /**
   * Every stored filter, sorted by name, with its version and the replications that use it.
   * @example
   * for (const f of await client.filters.list()) console.log(f.name, f.version, f.used_by);
   */
  async list(opts: CallOptions = {}): Promise<FilterJson[]> {
    return (await this.http.json<FilterList>({ ...opts, method: 'GET', path: 'filters' })).filters;
  }

  /**
   * One stored filter; 404 if unknown.
   * @example
   * const { when, params } = await client.filters.get('min-score');
   */
  get(name: string, opts: CallOptions = {}): Promise<FilterJson> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name) });
  }

  /**
   * Stores a new filter.
   * @example
   * await client.filters.create('min-score', {
   *   when: { '&score': { $gte: { $param: 'min' } } },
   *   params: { min: { type: 'number', default: 0.5 } },
   *   description: 'records scoring at least min',
   * });
   * await client.replications.create('good', { src_bucket: 'a', dst_bucket: 'b', dst_host: '', filter: 'min-score', query_params: { min: 0.8 } });
   */
  async create(name: string, filter: FilterRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'POST', path: this.path(name), json: filter });
  }

  /**
   * Replaces a filter (its version goes up; replications that use it follow the change).
   * @example
   * await client.filters.replace('min-score', { when: { '&score': { $gt: { $param: 'min' } } } });
   */
  async replace(name: string, filter: FilterRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'PUT', path: this.path(name), json: filter });
  }

  /**
   * Deletes a filter (refused while replications use it).
   * @example
   * await client.filters.delete('min-score');
   */
  async delete(name: string, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'DELETE', path: this.path(name) });
  }
}
