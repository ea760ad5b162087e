/**
 * Provisioned consistency groups (replication.md §8): `FERRY_GROUP_<ID>_NAME` and
 * `FERRY_GROUP_<ID>_BUCKETS` (comma list of member buckets), grouped by an arbitrary `<ID>` like
 * `RS_BUCKET_<ID>_*`. Names and membership are validated by the group service when the server
 * starts (the buckets must exist by then: provisioned buckets are created first); here a group
 * without its name is dropped with a warning, and a name or bucket given twice stops the start.
 */
import { nonEmpty, parseList } from './env-values.js';
import { collectGroups } from './provisioning.js';
import type { ProvisionedGroup } from './types.js';

/** `FERRY_GROUP_<ID>_{NAME,BUCKETS}`. */
export function readProvisionedGroups(env: NodeJS.ProcessEnv, warnings: string[]): ProvisionedGroup[] {
  const out: ProvisionedGroup[] = [];
  const owner = new Map<string, string>();
  for (const [id, g] of collectGroups(env, 'FERRY_GROUP_', ['NAME', 'BUCKETS'])) {
    const name = nonEmpty(g.get('NAME'));
    if (!name) {
      warnings.push(`Provisioned group FERRY_GROUP_${id}_* ignored: FERRY_GROUP_${id}_NAME is required`);
      continue;
    }
    if (out.some((p) => p.name === name))
      throw new Error(`FERRY_GROUP_${id}_NAME: group '${name}' is provisioned twice`);
    const buckets = parseList(g.get('BUCKETS') ?? '');
    for (const b of buckets) {
      const other = owner.get(b);
      if (other !== undefined)
        throw new Error(
          `FERRY_GROUP_${id}_BUCKETS: bucket '${b}' is also in provisioned group '${other}' (a bucket belongs to at most one group)`,
        );
      owner.set(b, name);
    }
    out.push({ name, buckets });
  }
  return out;
}
