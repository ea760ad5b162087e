/**
 * Persisted replication definitions: `<dataPath>/.ferry/replications.json`, replaced atomically and
 * readable only by the server's user (mode 0600) because it holds `dst_token`s.
 */
import { join } from 'node:path';
import { JsonMapFile } from './json-map-file.js';
import type { ReplicationMode, ReplicationSettings } from './settings.js';

/** One stored definition. */
export interface StoredDefinition {
  settings: ReplicationSettings;
  /** Current mode (PATCH …/mode is persisted for provisioned ones as well). */
  mode: ReplicationMode;
  provisioned: boolean;
}

/** The definitions file; saves are serialised. */
export class DefinitionsStore extends JsonMapFile<StoredDefinition> {
  constructor(dataPath: string, sync: boolean) {
    super(join(dataPath, '.ferry', 'replications.json'), 'replications', sync);
  }
}
