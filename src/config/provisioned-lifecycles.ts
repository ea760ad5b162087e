/**
 * Provisioned lifecycle policies (api.md §16, §18): `RS_LIFECYCLE_<ID>_NAME`, `_BUCKET` and
 * `_OLDER_THAN` (required), `_TYPE` (`delete`|`compress`), `_ENTRIES` (comma list), `_INTERVAL`,
 * `_PROCESSING_INTERVAL`, `_WHEN` (JSON) and `_MODE` (`enabled`|`disabled`|`dry_run`; when set it
 * overrides the persisted mode at every start, as for replications). Values are validated by the
 * lifecycle module when the server starts; a group without a required variable is dropped here.
 */
import { nonEmpty, parseList } from './env-values.js';
import { collectGroups, readWhenVariable } from './provisioning.js';
import type { ProvisionedLifecycle } from './types.js';

const SUFFIXES = [
  'NAME',
  'TYPE',
  'BUCKET',
  'ENTRIES',
  'OLDER_THAN',
  'INTERVAL',
  'PROCESSING_INTERVAL',
  'WHEN',
  'MODE',
] as const;

/** `RS_LIFECYCLE_<ID>_*` into raw settings in the wire shape of api.md §16. */
export function readProvisionedLifecycles(
  env: NodeJS.ProcessEnv,
  warnings: string[],
): ProvisionedLifecycle[] {
  // PROCESSING_INTERVAL ends in _INTERVAL: never read `<ID>_PROCESSING` as an ID with INTERVAL.
  const groups = collectGroups(env, 'RS_LIFECYCLE_', SUFFIXES, {
    skip: /^RS_LIFECYCLE_.+_PROCESSING_INTERVAL$/,
  });
  for (const [id, g] of collectGroups(env, 'RS_LIFECYCLE_', ['PROCESSING_INTERVAL'])) {
    const v = g.get('PROCESSING_INTERVAL');
    if (v === undefined) continue;
    let target = groups.get(id);
    if (!target) groups.set(id, (target = new Map()));
    target.set('PROCESSING_INTERVAL', v);
  }
  const out: ProvisionedLifecycle[] = [];
  for (const [id, g] of [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const v = (k: string) => nonEmpty(g.get(k));
    const missing = ['NAME', 'BUCKET', 'OLDER_THAN'].filter((k) => v(k) === undefined);
    if (missing.length > 0) {
      warnings.push(
        `Provisioned lifecycle RS_LIFECYCLE_${id}_* dropped: missing ${missing.map((k) => `RS_LIFECYCLE_${id}_${k}`).join(', ')}`,
      );
      continue;
    }
    const name = v('NAME') as string;
    const settings: Record<string, unknown> = { bucket: v('BUCKET'), older_than: v('OLDER_THAN') };
    const type = v('TYPE');
    if (type !== undefined) settings['type'] = type.toLowerCase();
    if (g.has('ENTRIES')) settings['entries'] = parseList(g.get('ENTRIES') as string);
    const interval = v('INTERVAL');
    if (interval !== undefined) settings['interval'] = interval;
    const pi = v('PROCESSING_INTERVAL');
    if (pi !== undefined) settings['processing_interval'] = pi;
    if (!readWhenVariable(`lifecycle '${name}'`, `RS_LIFECYCLE_${id}_WHEN`, v('WHEN'), settings, warnings))
      continue;
    const mode = v('MODE');
    if (mode !== undefined) settings['mode'] = mode.toLowerCase();
    if (out.some((l) => l.name === name)) {
      warnings.push(
        `Provisioned lifecycle '${name}' (RS_LIFECYCLE_${id}_*) dropped: the name is provisioned twice`,
      );
      continue;
    }
    out.push({ name, settings });
  }
  return out;
}
