/**
 * Dependency rules that the compiler cannot see: `src/protocol/` imports nothing from the layers above
 * it, and the SDK (`src/client/`) imports `src/protocol/` only and nothing Node-specific, so that it
 * runs in browsers (issue 13).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : n.endsWith('.ts') ? [p] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2]!);
}

/** Problems of one layer: imports that leave `allowedDirs` or name a package not in `packages`. */
function violations(layer: string, allowedDirs: string[], packages: string[]): string[] {
  const out: string[] = [];
  for (const file of sources(join(root, 'src', layer))) {
    for (const spec of imports(file)) {
      if (spec.startsWith('.')) {
        const target = relative(join(root, 'src'), resolve(dirname(file), spec));
        if (!allowedDirs.some((d) => target.startsWith(d + '/')))
          out.push(`${relative(root, file)} → ${spec}`);
      } else if (!packages.includes(spec)) out.push(`${relative(root, file)} → ${spec}`);
    }
  }
  return out;
}

test('src/protocol imports nothing from the layers above it', () => {
  assert.ok(sources(join(root, 'src', 'protocol')).length > 0, 'sources found');
  assert.deepEqual(violations('protocol', ['protocol'], ['lossless-json']), []);
});
