/**
 * Persisted replication definitions: `<dataPath>/.ferry/replications.json`, replaced atomically and
 * readable only by the server's user (mode 0600) because it holds `dst_token`s.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../storage/atomic-file.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import type { ReplicationMode, ReplicationSettings } from './settings.js';

/** One stored definition. */
export interface StoredDefinition {
  settings: ReplicationSettings;
  /** Current mode (PATCH …/mode is persisted for provisioned ones as well). */
  mode: ReplicationMode;
  provisioned: boolean;
}

interface FileShape {
  version: 1;
  replications: Record<string, StoredDefinition>;
}

/** Loads and saves the definitions file; saves are serialised. */
export class DefinitionsStore {
  readonly path: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    dataPath: string,
    private readonly sync: boolean,
  ) {
    this.path = join(dataPath, '.ferry', 'replications.json');
  }

  /** Reads all definitions (empty when the file does not exist yet). */
  async load(): Promise<Map<string, StoredDefinition>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
    const parsed = parseJson(text) as FileShape | undefined;
    return new Map(Object.entries(parsed?.replications ?? {}));
  }

  /** Atomically replaces the file with `defs`. */
  save(defs: ReadonlyMap<string, StoredDefinition>): Promise<void> {
    const body: FileShape = { version: 1, replications: Object.fromEntries(defs) };
    const text = stringifyJson(body, 2);
    const next = this.chain.then(() => writeFileAtomic(this.path, text, { mode: 0o600, noSync: !this.sync }));
    this.chain = next.catch(() => undefined);
    return next;
  }
}
