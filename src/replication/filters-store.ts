/**
 * Stored filters (replication.md §3 `filter`): `<dataPath>/.ferry/filters.json`, replaced
 * atomically (mode 0600, like the replication definitions) and kept in memory. Each filter has a
 * version that a `PUT` increments. `resolve` turns a filter and a replication's `query_params`
 * into the `when` the replication runs with.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors } from '../protocol/errors.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { compileCondition } from '../query/condition/index.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import { resolveParams, substitute, type FilterDefinition } from './filter-template.js';

/** A filter as stored. */
export interface StoredFilter extends FilterDefinition {
  version: number;
  created_at: string;
  updated_at: string;
}

/** A filter resolved for one replication. */
export interface ResolvedFilter {
  when: unknown;
  version: number;
  updated_at: string;
}

interface FileShape {
  version: 1;
  filters: Record<string, StoredFilter>;
}

/** The filters of this instance. Mutations are not serialised here: the filter service does it. */
export class FiltersStore {
  private constructor(
    private readonly path: string,
    private readonly sync: boolean,
    private filters: Map<string, StoredFilter>,
  ) {}

  /** Loads the filters (none when the file does not exist yet). */
  static async open(dataPath: string, sync: boolean): Promise<FiltersStore> {
    const path = join(dataPath, '.ferry', 'filters.json');
    let filters = new Map<string, StoredFilter>();
    try {
      const parsed = parseJson(await readFile(path, 'utf8')) as FileShape | undefined;
      filters = new Map(Object.entries(parsed?.filters ?? {}));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return new FiltersStore(path, sync, filters);
  }

  /** Every filter, sorted by name. */
  list(): Array<[string, StoredFilter]> {
    return [...this.filters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  get(name: string): StoredFilter | undefined {
    return this.filters.get(name);
  }

  /** Stores a new filter (version 1); 409 when it exists. */
  async create(name: string, def: FilterDefinition): Promise<void> {
    if (this.filters.has(name)) throw Errors.filterExists(name);
    const now = new Date().toISOString();
    await this.save(name, { ...def, version: 1, created_at: now, updated_at: now });
  }

  /** Replaces a filter (version + 1); 404 when it does not exist. */
  async update(name: string, def: FilterDefinition): Promise<void> {
    const old = this.filters.get(name);
    if (!old) throw Errors.filterNotFound(name);
    await this.save(name, {
      ...def,
      version: old.version + 1,
      created_at: old.created_at,
      updated_at: new Date().toISOString(),
    });
  }

  /** Removes a filter; 404 when it does not exist. */
  async remove(name: string): Promise<void> {
    if (!this.filters.has(name)) throw Errors.filterNotFound(name);
    await this.save(name, undefined);
  }

  /**
   * The `when` of filter `name` for `queryParams` (422 naming an unknown filter or a missing,
   * unknown or ill-typed parameter; 422 when the result does not compile). `def` checks a
   * definition that is not stored yet.
   */
  resolve(name: string, queryParams: unknown, def?: FilterDefinition): ResolvedFilter {
    const f = def ?? this.filters.get(name);
    if (!f) throw Errors.replicationFilterUnknown(name);
    const when = substitute(f.when, resolveParams(name, f, queryParams));
    try {
      compileCondition(when);
    } catch (e) {
      throw Errors.unprocessable(`Invalid replication condition (filter '${name}'): ${(e as Error).message}`);
    }
    const stored = this.filters.get(name);
    return { when, version: stored?.version ?? 0, updated_at: stored?.updated_at ?? '' };
  }

  /** Writes the file with `name` set to `filter` (or removed), then makes it the current state. */
  private async save(name: string, filter: StoredFilter | undefined): Promise<void> {
    const next = new Map(this.filters);
    if (filter) next.set(name, filter);
    else next.delete(name);
    const body: FileShape = { version: 1, filters: Object.fromEntries(next) };
    await writeFileAtomic(this.path, stringifyJson(body, 2), { mode: 0o600, noSync: !this.sync });
    this.filters = next;
  }
}
