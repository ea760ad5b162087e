/**
 * Persisted remotes: `<dataPath>/.ferry/remotes.json`, replaced atomically and readable only by
 * the server's user (mode 0600), because it holds their tokens and proxy credentials. Also keeps
 * each remote's pinned instance id, so that a restart does not forget whom it trusted.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { RemoteSettings } from './remote-settings.js';

/** One remote as stored. */
export interface StoredRemote {
  settings: RemoteSettings;
  pinned_instance_id: string | null;
  pinned_at: string | null;
  created_at: string;
  updated_at: string;
}

interface FileShape {
  version: 1;
  remotes: Record<string, StoredRemote>;
}

/** Loads and saves the remotes file; saves are serialised. */
export class RemotesStore {
  readonly path: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    dataPath: string,
    private readonly sync: boolean,
  ) {
    this.path = join(dataPath, '.ferry', 'remotes.json');
  }

  /** Every stored remote (none when the file does not exist yet). */
  async load(): Promise<Map<string, StoredRemote>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw e;
    }
    const parsed = parseJson(text) as FileShape | undefined;
    return new Map(Object.entries(parsed?.remotes ?? {}));
  }

  /** Atomically replaces the file with `remotes` (taken at call time). */
  save(remotes: ReadonlyMap<string, StoredRemote>): Promise<void> {
    const body: FileShape = { version: 1, remotes: Object.fromEntries(remotes) };
    const text = stringifyJson(body, 2);
    const next = this.chain.then(() => writeFileAtomic(this.path, text, { mode: 0o600, noSync: !this.sync }));
    this.chain = next.catch(() => undefined);
    return next;
  }
}
