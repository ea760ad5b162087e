/**
 * Migration of the legacy (≤ 1.20) query/replication filters into `when` (api.md §13.3 "Legacy
 * behaviour", §20.2): `include`, `exclude`, `each_n`, `each_s`.
 */
import type { Labels } from '../../storage/types.js';
import { JsonFloat } from '../../protocol/json.js';
import { parseDurationLiteral } from './duration.js';
import { inferLabel, toStr } from './value.js';

/** A JSON expression that evaluates to exactly the string `s` (escaping `$` and duration look-alikes). */
function stringLiteral(s: string): unknown {
  if (s.startsWith('$')) return `$${s}`;
  if (s.startsWith('&') || s.startsWith('@') || parseDurationLiteral(s) !== undefined) {
    // Concatenate single characters: none of them is a reference, operator or duration.
    return { $add: [...s].map((ch) => (ch === '$' ? '$$' : ch)) };
  }
  return s;
}

/** Condition "label `name` equals `value`" with legacy (textual) meaning, safe against type inference. */
function labelEquals(name: string, value: string): unknown {
  const ref = `&${name}`;
  const inferred = inferLabel(value);
  if (
    typeof inferred === 'boolean' ||
    typeof inferred === 'bigint' ||
    (typeof inferred === 'number' && Number.isFinite(inferred))
  ) {
    return { [ref]: { $eq: inferred } };
  }
  if (typeof inferred === 'string' && !value.startsWith('&') && !value.startsWith('@')) {
    return { [ref]: { $eq: stringLiteral(value) } };
  }
  // No literal can start with '&'/'@' (and JSON has no inf/NaN): compare string forms with a prefix.
  return { $eq: [{ $add: ['_', { $cast: [ref, 'string'] }] }, `_${toStr(inferred)}`] };
}

function allPairs(labels: Labels): unknown {
  const names = Object.keys(labels);
  return { $and: [{ $has: names.map(stringLiteral) }, ...names.map((n) => labelEquals(n, labels[n]))] };
}

/**
 * Migrates `{include, exclude, each_n, each_s}` into an equivalent `when`, combined (AND, legacy
 * filters first, sampling last) with an existing `when`. Directives of `when` stay top-level.
 * Returns `when` unchanged when there is nothing to migrate.
 */
export function legacyToWhen(
  legacy: { include?: Labels; exclude?: Labels; each_n?: number | bigint; each_s?: number },
  when?: unknown,
): unknown {
  const parts: unknown[] = [];
  const sampling: unknown[] = [];
  if (legacy.each_s !== undefined && legacy.each_s > 0) sampling.push({ $each_t: legacy.each_s });
  if (legacy.each_n !== undefined && Number(legacy.each_n) > 0) sampling.push({ $each_n: legacy.each_n });
  if (legacy.include && Object.keys(legacy.include).length > 0) parts.push(allPairs(legacy.include));
  if (legacy.exclude && Object.keys(legacy.exclude).length > 0)
    parts.push({ $not: [allPairs(legacy.exclude)] });
  if (parts.length === 0 && sampling.length === 0) return when;
  const directives: Record<string, unknown> = {};
  const hasWhen = when !== undefined && when !== null;
  if (hasWhen) {
    if (typeof when === 'object' && !Array.isArray(when) && !(when instanceof JsonFloat)) {
      const rest: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(when as Record<string, unknown>)) {
        if (k.startsWith('#')) directives[k] = v;
        else rest[k] = v;
      }
      if (Object.keys(rest).length > 0) parts.push(rest);
    } else parts.push(when);
  }
  return { ...directives, $and: [...parts, ...sampling] };
}
