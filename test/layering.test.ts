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

/** Source without comments: they hold examples (`import … from 'ferry/client'`, `process.env`). */
function code(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
}

function imports(file: string): string[] {
  return [...code(file).matchAll(IMPORT)].map((m) => m[1] ?? m[2]!);
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
test('src/client imports src/protocol only and nothing Node-specific', () => {
  const files = sources(join(root, 'src', 'client'));
  assert.ok(files.length > 0, 'sources found');
  assert.deepEqual(violations('client', ['client', 'protocol'], ['lossless-json']), []);
  // Node globals that browsers lack; the protocol files the SDK reaches must avoid them too.
  const reached = [...files, ...clientProtocolFiles(files)];
  const nodeOnly = reached.filter((f) => /\bBuffer\b|\bprocess\.|\brequire\(/.test(code(f)));
  assert.deepEqual(
    nodeOnly.map((f) => relative(root, f)),
    [],
  );
});

/** Protocol files imported (transitively) by the SDK. */
function clientProtocolFiles(clientFiles: string[]): string[] {
  const seen = new Set<string>();
  const queue = [...clientFiles];
  while (queue.length > 0) {
    const file = queue.pop()!;
    for (const spec of imports(file)) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      if (target.includes(`${join('src', 'protocol')}`) && !seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return [...seen];
}
