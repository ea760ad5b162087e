/**
 * Where a replication's copy begins, for verification (replication.md §6, §10): the source's log
 * position when the replication was created. A replication ships what is written after it (plus
 * a `since` backfill), so records written before are not expected at the destination. Kept in
 * `.ferry/verify/<name>.origin.json`; a replication created before this file existed has none,
 * and is then compared over every record.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { writeFileAtomic } from '../storage/atomic-file.js';

const fileOf = (dataPath: string, name: string): string =>
  join(dataPath, '.ferry', 'verify', `${name}.origin.json`);

/** Records the creation position of replication `name`. */
export async function saveCopyOrigin(
  dataPath: string,
  name: string,
  lsn: bigint,
  sync: boolean,
): Promise<void> {
  await mkdir(join(dataPath, '.ferry', 'verify'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fileOf(dataPath, name), stringifyJson({ created_lsn: lsn }), { noSync: !sync });
}

/** The creation position of replication `name`, undefined when unknown. */
export async function loadCopyOrigin(dataPath: string, name: string): Promise<bigint | undefined> {
  try {
    const v = (parseJson(await readFile(fileOf(dataPath, name), 'utf8')) as { created_lsn?: unknown })
      .created_lsn;
    return typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : undefined;
  } catch {
    return undefined;
  }
}

/** Forgets it (replication removed), with its last verification result. */
export async function removeCopyOrigin(dataPath: string, name: string): Promise<void> {
  await rm(fileOf(dataPath, name), { force: true });
  await rm(join(dataPath, '.ferry', 'verify', `${name}.json`), { force: true });
}
