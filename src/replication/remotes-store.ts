/**
 * Persisted remotes: `<dataPath>/.ferry/remotes.json`, replaced atomically and readable only by
 * the server's user (mode 0600), because it holds their tokens and proxy credentials. Also keeps
 * each remote's pinned instance id, so that a restart does not forget whom it trusted.
 */
import { join } from 'node:path';
import { JsonMapFile } from './json-map-file.js';
import type { RemoteSettings } from './remote-settings.js';

/** One remote as stored. */
export interface StoredRemote {
  settings: RemoteSettings;
  pinned_instance_id: string | null;
  pinned_at: string | null;
  created_at: string;
  updated_at: string;
}

/** The remotes file. */
export class RemotesStore extends JsonMapFile<StoredRemote> {
  constructor(dataPath: string, sync: boolean) {
    super(join(dataPath, '.ferry', 'remotes.json'), 'remotes', sync);
  }
}
