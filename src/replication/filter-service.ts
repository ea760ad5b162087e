/**
 * The stored-filters API (replication.md §3 `filter` + `query_params`): wire shapes in and out,
 * the rules that involve replications, and the filter a replication's status shows.
 *
 * Replications follow a filter: a `PUT` that changes what a replication's `when` resolves to
 * restarts it on the new version with a fresh state of stateful operators (`$each_n`, `$limit`…),
 * keeping its cursor; its status shows `filter: {name, version, updated_at}`. A `PUT` that would
 * no longer fit a replication's `query_params`, and a `DELETE` of a filter in use, are refused (409).
 */
import { Errors } from '../protocol/errors.js';
import type { FilterJson, FilterList } from '../protocol/filters.js';
import { isValidBucketName } from '../protocol/names.js';
import type { FilterRef } from '../protocol/replication-status.js';
import type { ReplicationSettingsJson } from '../protocol/replications.js';
import { compileCondition } from '../query/condition/index.js';
import { parseFilterDefinition } from './filter-template.js';
import type { FiltersStore, StoredFilter } from './filters-store.js';

/** What the service needs of the replication manager. */
export interface FilterUsers {
  filterUsers(filter: string): string[];
  changeFilter(filter: string, change: () => Promise<void>): Promise<void>;
  /** Every setting of a replication (404 if unknown). */
  inspect(name: string): { settings: ReplicationSettingsJson };
}

const checkWhen = (when: unknown): void => void compileCondition(when);

/** Stored filters, wired to the replications that use them. */
export class FilterService {
  constructor(
    private readonly store: FiltersStore,
    private readonly replications: FilterUsers,
  ) {}

  /** `GET /filters`. */
  list(): FilterList {
    return { filters: this.store.list().map(([name, f]) => this.json(name, f)) };
  }

  /** `GET /filters/{name}`. */
  get(name: string): FilterJson {
    const f = this.store.get(name);
    if (!f) throw Errors.filterNotFound(name);
    return this.json(name, f);
  }

  /** `POST /filters/{name}`. */
  create(name: string, body: unknown): Promise<void> {
    if (!isValidBucketName(name)) throw Errors.filterInvalidName(name);
    const def = parseFilterDefinition(body, checkWhen);
    return this.replications.changeFilter(name, () => this.store.create(name, def));
  }

  /** `PUT /filters/{name}`: a new version; replications that use it follow. */
  update(name: string, body: unknown): Promise<void> {
    const def = parseFilterDefinition(body, checkWhen);
    return this.replications.changeFilter(name, async () => {
      if (!this.store.get(name)) throw Errors.filterNotFound(name);
      for (const user of this.replications.filterUsers(name)) {
        const params = this.replications.inspect(user).settings.query_params;
        try {
          this.store.resolve(name, params, def);
        } catch (e) {
          throw Errors.filterDoesNotFit(name, user, (e as Error).message);
        }
      }
      await this.store.update(name, def);
    });
  }

  /** `DELETE /filters/{name}`: refused while a replication names it. */
  remove(name: string): Promise<void> {
    return this.replications.changeFilter(name, async () => {
      if (!this.store.get(name)) throw Errors.filterNotFound(name);
      const users = this.replications.filterUsers(name);
      if (users.length > 0) throw Errors.filterInUse(name, users);
      await this.store.remove(name);
    });
  }

  /** The filter replication `replication` runs with, for its status (null when none). */
  refOf(replication: string): FilterRef | null {
    const name = this.replications.inspect(replication).settings.filter;
    const f = name === undefined ? undefined : this.store.get(name);
    return name === undefined || !f ? null : { name, version: f.version, updated_at: f.updated_at };
  }

  private json(name: string, f: StoredFilter): FilterJson {
    return {
      name,
      description: f.description,
      when: f.when,
      params: f.params,
      version: f.version,
      created_at: f.created_at,
      updated_at: f.updated_at,
      used_by: this.replications.filterUsers(name),
    };
  }
}
