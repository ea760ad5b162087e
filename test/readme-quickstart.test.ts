/**
 * The README's quick start, run as written: its start command (after the `npm ci` that this run has
 * done already) starts the server from the built tree, its curl block and its reduct-js example run
 * against it, and what they print and store is what the README says. The only substitution is the
 * port: the servers listen on free ports instead of 8383 (RS_PORT, which the README leaves unset).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { Client } from 'reduct-js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';

const run = promisify(execFile);
/** The repository: this file runs as dist/test/readme-quickstart.test.js. */
const root = fileURLToPath(new URL('../..', import.meta.url));
const README_PORT = '8383';
const README_TOKEN = 'my-token';

interface Block {
  lang: string;
  code: string;
}

/** The fenced code blocks of the README's "Quick start" section, in order. */
function quickStartBlocks(): Block[] {
  const text = readFileSync(join(root, 'README.md'), 'utf8');
  const start = text.indexOf('\n## Quick start\n');
  assert.ok(start >= 0, 'README has a "## Quick start" section');
  const end = text.indexOf('\n## ', start + 1);
  const section = text.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

const blocks = quickStartBlocks();
const servers: FerryProcess[] = [];
const scratch: string[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.destroy()));
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** The commands of a shell block without comments and blank lines, continuation lines joined. */
function commands(code: string): string[] {
  return code
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Replaces the README's port by `port`; the block must have named it. */
function onPort(code: string, port: number): string {
  assert.ok(code.includes(`127.0.0.1:${README_PORT}`), `the block talks to 127.0.0.1:${README_PORT}`);
  return code.replaceAll(`127.0.0.1:${README_PORT}`, `127.0.0.1:${port}`);
}

/** Starts a server with the README's start block, minus the `npm ci` this run has done already. */
async function startAsReadmeSays(): Promise<FerryProcess> {
  const start = blocks[0]!;
  assert.equal(start.lang, 'sh');
  const [install, ...rest] = commands(start.code);
  assert.equal(install, 'npm ci', 'the start block installs first');
  assert.equal(rest.length, 1, 'then one command starts the server');
  assert.match(rest[0]!, /\bnpm start$/);
  // token '': the README's command has to set RS_API_TOKEN itself
  const ferry = await spawnFerry({ command: rest[0], cwd: root, token: '', startTimeoutMs: 60_000 });
  servers.push(ferry);
  return ferry;
}

test('README quick start: the blocks this test runs are there', () => {
  assert.deepEqual(
    blocks.map((b) => b.lang),
    ['sh', 'sh', 'js'],
    'start block, curl block, reduct-js example (update this test with the README)',
  );
});

test(
  'README quick start: the curl block stores a frame and reads it back',
  { timeout: 120_000 },
  async () => {
    const ferry = await startAsReadmeSays();
    const dir = mkdtempSync(join(tmpdir(), 'ferry-readme-curl-'));
    scratch.push(dir);
    const script = onPort(blocks[1]!.code, ferry.port);
    const { stdout, stderr } = await run('/bin/sh', ['-e', '-c', script], { cwd: dir, timeout: 60_000 });
    assert.equal(stderr, '', 'no command complains');
    const lines = stdout.trim().split('\n');
    assert.ok(lines.includes('same frame'), `the frame read back is the frame written:\n${stdout}`);

    // "The last command prints the bucket's settings and its entry `front` with one record."
    const info = JSON.parse(lines[lines.length - 1]!) as {
      settings: unknown;
      entries: Array<{ name: string; record_count: number }>;
    };
    assert.ok(info.settings !== undefined);
    assert.deepEqual(
      info.entries.map((e) => [e.name, e.record_count]),
      [['front', 1]],
    );
    const frame = readFileSync(join(dir, 'frame.jpg'));
    assert.equal(frame.length, 4096);
    assert.deepEqual(readFileSync(join(dir, 'latest.jpg')), frame);

    const bucket = await new Client(ferry.url, { apiToken: README_TOKEN }).getBucket('cameras');
    const records = [];
    for await (const r of bucket.query('front')) {
      records.push({ labels: r.labels, contentType: r.contentType, data: await r.read() });
    }
    assert.deepEqual(records, [{ labels: { quality: 'ok' }, contentType: 'image/jpeg', data: frame }]);
  },
);

test(
  'README quick start: the reduct-js example type-checks and runs as the README says',
  { timeout: 120_000 },
  async () => {
    const ferry = await startAsReadmeSays();
    // Inside the clone, as the README says, so that `reduct-js` resolves from its node_modules.
    mkdirSync(join(root, '.tmp'), { recursive: true });
    const dir = mkdtempSync(join(root, '.tmp', 'readme-js-'));
    scratch.push(dir);
    const code = onPort(blocks[2]!.code, ferry.port);

    // "It is JavaScript and TypeScript alike": strict TypeScript accepts it as it is.
    writeFileSync(join(dir, 'quickstart.mts'), code);
    const program = ts.createProgram([join(dir, 'quickstart.mts')], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      typeRoots: [join(root, 'node_modules', '@types')],
      skipLibCheck: true,
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    assert.deepEqual(problems, [], 'the example type-checks');

    writeFileSync(join(dir, 'quickstart.mjs'), code);
    const { stdout, stderr } = await run(process.execPath, ['quickstart.mjs'], { cwd: dir, timeout: 60_000 });
    assert.equal(stderr, '');
    // "It prints the good frame once from the query and once from its replicated copy; the blurred
    // frame stays in `cameras` only."
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 2, stdout);
    const good = /^good frame: (\d+)n \{ quality: 'ok' \} 4096 bytes$/.exec(lines[0]!);
    const copied = /^replicated: (\d+)n \{ quality: 'ok' \}$/.exec(lines[1]!);
    assert.ok(good && copied, stdout);
    assert.equal(copied[1], good[1], 'the copy is the good frame');

    const client = new Client(ferry.url, { apiToken: README_TOKEN });
    const count = async (bucket: string): Promise<string[]> => {
      const out: string[] = [];
      for await (const r of (await client.getBucket(bucket)).query('front'))
        out.push(r.labels.quality as string);
      return out;
    };
    assert.deepEqual(await count('cameras'), ['ok', 'blurred']);
    assert.deepEqual(await count('cameras-ok'), ['ok']);
    const replication = await client.getReplication('good-frames');
    assert.equal(replication.info.pendingRecords, 0n);
  },
);
