/**
 * A small JSON file of named objects, `{"version": 1, "<key>": {name: object, …}}`, replaced
 * atomically (mode 0600: such files hold credentials) with saves serialised. Replication
 * definitions and remotes are kept this way.
 */
import { readFile } from 'node:fs/promises';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { writeFileAtomic } from '../storage/atomic-file.js';

/** Loads and saves one file of named `T`s. */
export class JsonMapFile<T> {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    /** Top-level key of the objects (`replications`, `remotes`). */
    private readonly key: string,
    private readonly sync: boolean,
  ) {}

  /** Every stored object (none when the file does not exist yet). */
  async load(): Promise<Map<string, T>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
    const parsed = parseJson(text) as Record<string, Record<string, T> | undefined> | undefined;
    return new Map(Object.entries(parsed?.[this.key] ?? {}));
  }

  /** Atomically replaces the file with `entries` (as they are at call time). */
  save(entries: ReadonlyMap<string, T>): Promise<void> {
    const text = stringifyJson({ version: 1, [this.key]: Object.fromEntries(entries) }, 2);
    const next = this.chain.then(() => writeFileAtomic(this.path, text, { mode: 0o600, noSync: !this.sync }));
    this.chain = next.catch(() => undefined);
    return next;
  }
}
