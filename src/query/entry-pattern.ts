/**
 * Entry name patterns of queries and replication tasks (api.md §11.3, §20.2): exact names, `*`
 * within one path segment, `**` for any number of segments, a flat pattern ending in `*` as a
 * prefix match, `!pattern` exclusions applied after the includes, a leading `/` ignored. Omitted,
 * empty or `["*"]` means every entry except the hidden `<entry>/$meta` attachment entries, which
 * match only patterns whose last segment is literally `$meta`.
 */

import { isMetaEntry, MAX_NAME_BYTES } from '../protocol/names.js';
import { MAX_ENTRY_NAME_BYTES } from '../protocol/limits.js';

const META = '$meta';

export { isMetaEntry };

function escapeRegex(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

/** One segment with `*` wildcards (never crossing `/`). */
function segmentSource(seg: string): string {
  return seg.split('*').map(escapeRegex).join('[^/]*');
}

interface CompiledPattern {
  test(entry: string): boolean;
  /** May match a `$meta` entry. */
  meta: boolean;
}

function compileOne(raw: string): CompiledPattern {
  const pattern = raw.startsWith('/') ? raw.replace(/^\/+/, '') : raw;
  if (!pattern.includes('*')) return { test: (e) => e === pattern, meta: true };
  const segments = pattern.split('/');
  const meta = segments[segments.length - 1] === META;
  let source: string;
  if (segments.length === 1 && pattern.endsWith('*') && !pattern.endsWith('**')) {
    // Flat prefix pattern: `x-*` matches `x-a` and `x-a/b`.
    source = `${segmentSource(pattern.slice(0, -1))}.*`;
  } else if (segments.length === 1 && pattern === '**') {
    source = '.*';
  } else {
    source = '';
    let prevDouble = false;
    segments.forEach((seg, i) => {
      const last = i === segments.length - 1;
      if (seg === '**') {
        if (last) source += i === 0 ? '.*' : '(?:/.*)?';
        else source += i === 0 ? '(?:[^/]+/)*' : '/(?:[^/]+/)*';
        prevDouble = true;
      } else {
        source += (i === 0 || prevDouble ? '' : '/') + segmentSource(seg);
        prevDouble = false;
      }
    });
  }
  const re = new RegExp(`^${source}$`);
  return { test: (e) => re.test(e), meta };
}

/**
 * Compiles entry patterns once into a predicate on entry names. Patterns are checked here only for
 * shape; names that match nothing are simply absent from results.
 */
export function compileEntryPatterns(patterns: string[] | undefined): (entry: string) => boolean {
  const includes: CompiledPattern[] = [];
  const excludes: CompiledPattern[] = [];
  for (const p of patterns ?? []) {
    if (p.startsWith('!')) excludes.push(compileOne(p.slice(1)));
    else includes.push(compileOne(p));
  }
  const all = includes.length === 0;
  return (entry) => {
    const meta = isMetaEntry(entry);
    let included: boolean;
    if (all) included = !meta;
    else {
      included = false;
      for (let i = 0; i < includes.length; i++) {
        const p = includes[i];
        if ((!meta || p.meta) && p.test(entry)) {
          included = true;
          break;
        }
      }
    }
    if (!included) return false;
    for (let i = 0; i < excludes.length; i++) if (excludes[i].test(entry)) return false;
    return true;
  };
}

/**
 * Replication rule: a `<parent>/$meta` entry follows its parent's match (or matches when named
 * explicitly); other entries use `match` directly.
 */
export function matchesWithMeta(match: (entry: string) => boolean, entry: string): boolean {
  if (entry.endsWith('/$meta')) return match(entry.slice(0, -'/$meta'.length)) || match(entry);
  return match(entry);
}

/** A segment of an entry pattern: name characters and `*` wildcards. */
const PATTERN_SEGMENT = /^[A-Za-z0-9_*-]+$/;

/**
 * True for an entry name or pattern this file compiles: an optional leading `!`
 * (exclusion) and `/`, then `/`-separated segments of name characters and `*`, the last one
 * possibly `$meta`. Anything else could never match an entry (a replication listing it would
 * silently ship nothing of it).
 */
export function isValidEntryPattern(p: string): boolean {
  if (p.length === 0 || p.length > MAX_ENTRY_NAME_BYTES) return false;
  const body = (p.startsWith('!') ? p.slice(1) : p).replace(/^\/+/, '');
  if (body === '') return false;
  const segments = body.split('/');
  return segments.every(
    (seg, i) =>
      seg.length <= MAX_NAME_BYTES &&
      (PATTERN_SEGMENT.test(seg) || (seg === '$meta' && i > 0 && i === segments.length - 1)),
  );
}
