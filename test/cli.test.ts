/**
 * The `ferry` command line as a subprocess against real servers: every command, `--json` output
 * parsed, exit codes, contexts (file mode 0600), errors that say what to do next, `cp` between
 * servers and folders, and `cp` and `replication follow` under a real pseudo-terminal.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { FerryClient } from 'ferry/client';
import { buildProgram } from '../src/cli/program.js';
import { runCli, type CliResult } from './helpers/cli-run.js';
import { spawnFerry, freePort, type FerryProcess } from './helpers/ferry-process.js';
import { waitFor } from './helpers/wait.js';

let a: FerryProcess;
let b: FerryProcess;
let dir: string;
let env: Record<string, string>;

before(async () => {
  [a, b] = await Promise.all([spawnFerry(), spawnFerry()]);
  dir = await mkdtemp(join(tmpdir(), 'ferry-cli-'));
  env = { FERRY_URL: a.url, FERRY_TOKEN: a.token, FERRY_CONFIG: join(dir, 'contexts.json') };
});
after(async () => {
  await Promise.all([a?.destroy(), b?.destroy()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const ferry = (args: string[], extra: Record<string, string | undefined> = {}): Promise<CliResult> =>
  runCli(args, { env: { ...env, ...extra } });

/** Runs with `--json`, expects exit 0 and returns the parsed stdout. */
async function json<T = unknown>(args: string[], extra: Record<string, string | undefined> = {}): Promise<T> {
  const r = await ferry(['--json', ...args], extra);
  assert.equal(r.code, 0, `ferry ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

describe('ferry: help, version, usage', () => {
  test('--version prints the package version; --help works on every command', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const v = await ferry(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), pkg.version);
    // the real binary: help of the program, of a group and of a leaf command
    for (const c of [[], ['bucket'], ['replication', 'verify']]) {
      const r = await ferry([...c, '--help']);
      assert.equal(r.code, 0, c.join(' '));
      assert.match(r.stdout, new RegExp(`^Usage: ferry${c.length ? ' ' + c.join(' ') : ''}`), c.join(' '));
    }
    // every other command of the same tree, without a process each
    const program = await buildProgram(false);
    const seen: string[] = [];
    const walk = (cmd: Command, path: string[]): void => {
      seen.push(path.join(' '));
      const help = cmd.helpInformation();
      assert.match(
        help,
        new RegExp(`^Usage: ferry${path.length ? ' ' + path.join(' ') : ''}`),
        path.join(' '),
      );
      assert.ok(cmd.description() !== '', `'ferry ${path.join(' ')}' has a description`);
      for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
    };
    walk(program, []);
    for (const c of [
      'serve',
      'bucket ls',
      'bucket create',
      'bucket info',
      'bucket rm',
      'entry ls',
      ...['ls', 'create', 'show', 'pause', 'resume', 'rm', 'follow', 'verify'].map((c) => `replication ${c}`),
      ...['ls', 'show', 'create', 'rm'].map((c) => `filter ${c}`),
      ...['ls', 'show', 'create', 'pin', 'rm'].map((c) => `remote ${c}`),
      ...['ls', 'show', 'create', 'rm'].map((c) => `group ${c}`),
      'tasks',
      'cp',
      ...['ls', 'add', 'use', 'rm'].map((c) => `context ${c}`),
    ])
      assert.ok(seen.includes(c), `'ferry ${c}' exists (commands: ${seen.join(', ')})`);
  });

  test('a wrong command line exits 2', async () => {
    const r = await ferry(['bucket', 'frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
    assert.equal((await ferry(['bucket', 'create'])).code, 2); // missing argument
    assert.equal((await ferry(['bucket', 'create', 'x', '--quota-type', 'MAYBE'])).code, 2);
  });
});

describe('ferry: errors say what to do next', () => {
  test('unreachable server: exit 5 and how to set the server', async () => {
    const port = await freePort();
    const r = await ferry(['bucket', 'ls'], { FERRY_URL: `http://127.0.0.1:${port}` });
    assert.equal(r.code, 5);
    assert.match(r.stderr, /Cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    assert.match(r.stderr, /--url, FERRY_URL or a context/);
    const j = await ferry(['--json', 'bucket', 'ls'], { FERRY_URL: `http://127.0.0.1:${port}` });
    assert.equal(j.code, 5);
    assert.equal((JSON.parse(j.stderr) as { error: { status: number } }).error.status, -3);
  });

  test('bad token: exit 4 and a hint about the token; the token is never printed', async () => {
    const r = await ferry(['bucket', 'ls'], { FERRY_TOKEN: 'not-the-token' });
    assert.equal(r.code, 4);
    assert.match(r.stderr, /Check the token: --token, FERRY_TOKEN/);
    assert.ok(!r.stderr.includes('not-the-token'));
  });

  test('unknown bucket and replication: exit 3 with the command that lists them', async () => {
    const r = await ferry(['bucket', 'info', 'no-such-bucket']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /Bucket 'no-such-bucket' is not found\nSee what exists with 'ferry bucket ls'/);
    const s = await ferry(['replication', 'show', 'no-such-rep']);
    assert.equal(s.code, 3);
    assert.match(s.stderr, /See what exists with 'ferry replication ls'/);
  });
});

describe('ferry bucket and entry', () => {
  test('create, ls, info, entry ls, rm (with --yes; refused without a terminal)', async () => {
    const created = await json<{ settings: { quota_type: string; quota_size: number } }>([
      'bucket',
      'create',
      'cli-b',
      '--quota-type',
      'FIFO',
      '--quota-size',
      '1MiB',
    ]);
    assert.equal(created.settings.quota_type, 'FIFO');
    assert.equal(created.settings.quota_size, 1024 * 1024);
    const dup = await ferry(['bucket', 'create', 'cli-b']);
    assert.equal(dup.code, 6);
    assert.equal((await ferry(['bucket', 'create', 'cli-b', '--exist-ok'])).code, 0);

    const c = new FerryClient(a.url, { token: a.token });
    await c.bucket('cli-b').writeBatch('cam/front', [
      { ts: 1n, data: 'a' },
      { ts: 2n, data: 'bb' },
    ]);
    const list = await json<Array<{ name: string; entry_count: number }>>(['bucket', 'ls']);
    assert.equal(list.find((x) => x.name === 'cli-b')?.entry_count, 2);
    const table = await ferry(['bucket', 'ls']);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /│ cli-b\s+│ 2\s+│/);

    const info = await json<{ entries: Array<{ name: string; record_count: number }> }>([
      'bucket',
      'info',
      'cli-b',
    ]);
    assert.deepEqual(
      info.entries.map((e) => [e.name, e.record_count]),
      [
        ['cam', 0],
        ['cam/front', 2],
      ],
    );
    const text = await ferry(['bucket', 'info', 'cli-b']);
    assert.match(text.stdout, /quota\s+FIFO 1\.0 MB/);
    const entries = await json<Array<{ name: string }>>(['entry', 'ls', 'cli-b']);
    assert.deepEqual(
      entries.map((e) => e.name),
      ['cam', 'cam/front'],
    );

    const refused = await ferry(['bucket', 'rm', 'cli-b']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /Pass --yes to confirm/);
    assert.equal((await ferry(['bucket', 'rm', 'cli-b', '--yes'])).code, 0);
    await waitFor(async () => (await ferry(['bucket', 'info', 'cli-b'])).code === 3, {
      message: 'bucket gone',
    });
  });
});

describe('ferry context', () => {
  test('add (checked, 0600), ls without tokens, use, rm; commands through --context', async () => {
    const clean = { FERRY_URL: undefined, FERRY_TOKEN: undefined };
    const bad = await ferry(['context', 'add', 'edge', '--url', a.url, '--token', 'wrong'], clean);
    assert.equal(bad.code, 4, 'a wrong token is refused when the context is added');
    assert.equal(
      (await ferry(['context', 'add', 'edge', '--url', a.url, '--token', a.token], clean)).code,
      0,
    );
    assert.equal(
      (await ferry(['context', 'add', 'cloud', '--url', b.url, '--token', b.token], clean)).code,
      0,
    );
    assert.equal((await stat(env.FERRY_CONFIG!)).mode & 0o777, 0o600);
    const ls = await json<Array<{ name: string; url: string; token: string; current: boolean }>>(
      ['context', 'ls'],
      clean,
    );
    assert.deepEqual(ls, [
      { name: 'edge', url: a.url, token: 'set', current: true },
      { name: 'cloud', url: b.url, token: 'set', current: false },
    ]);
    const lsText = await ferry(['context', 'ls'], clean);
    assert.ok(!lsText.stdout.includes(a.token) && !lsText.stdout.includes(b.token), 'tokens are not shown');

    await new FerryClient(b.url, { token: b.token }).createBucket('only-on-b');
    const viaCurrent = await json<Array<{ name: string }>>(['bucket', 'ls'], clean);
    assert.ok(!viaCurrent.some((x) => x.name === 'only-on-b'), 'current context = edge');
    const viaFlag = await json<Array<{ name: string }>>(['--context', 'cloud', 'bucket', 'ls'], clean);
    assert.ok(viaFlag.some((x) => x.name === 'only-on-b'));
    assert.equal((await ferry(['context', 'use', 'cloud'], clean)).code, 0);
    assert.ok(
      (await json<Array<{ name: string }>>(['bucket', 'ls'], clean)).some((x) => x.name === 'only-on-b'),
    );
    const unknown = await ferry(['--context', 'nowhere', 'bucket', 'ls'], clean);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /No context 'nowhere'.*ferry context ls/);
    assert.equal((await ferry(['context', 'rm', 'cloud'], clean)).code, 0);
    assert.equal((await ferry(['context', 'rm', 'cloud'], clean)).code, 3);
    assert.equal((await ferry(['context', 'use', 'edge'], clean)).code, 0);
  });
});

describe('ferry replication and tasks', () => {
  test('create, ls, show, pause, resume, follow --until idle, tasks, rm', async () => {
    await new FerryClient(a.url, { token: a.token }).createBucket('cli-rsrc', {}, { existOk: true });
    const created = await json<{ settings: { dst_token: null; entries: string[]; when: unknown } }>([
      'replication',
      'create',
      'cli-r',
      '--src',
      'cli-rsrc',
      '--dst',
      'cli-rdst',
      '--dst-url',
      b.url,
      '--dst-token',
      b.token,
      '--entries',
      'cam-*',
      '--when',
      '{"&q": {"$eq": "ok"}}',
    ]);
    assert.equal(created.settings.dst_token, null);
    assert.deepEqual(created.settings.entries, ['cam-*']);
    assert.deepEqual(created.settings.when, { '&q': { $eq: 'ok' } });
    const ls = await json<Array<{ name: string; mode: string }>>(['replication', 'ls']);
    assert.equal(ls.find((r) => r.name === 'cli-r')?.mode, 'enabled');
    assert.equal((await json<{ mode: string }>(['replication', 'pause', 'cli-r'])).mode, 'paused');
    const show = await json<{ info: { mode: string }; status: { state: string } }>([
      'replication',
      'show',
      'cli-r',
    ]);
    assert.equal(show.info.mode, 'paused');
    assert.equal(show.status.state, 'paused');
    assert.match((await ferry(['replication', 'show', 'cli-r'])).stdout, /state\s+paused/);
    assert.equal((await json<{ mode: string }>(['replication', 'resume', 'cli-r'])).mode, 'enabled');

    const c = new FerryClient(a.url, { token: a.token });
    await c.bucket('cli-rsrc').writeBatch(
      'cam-1',
      Array.from({ length: 40 }, (_, i) => ({ ts: i + 1, data: 'x', labels: { q: i % 2 ? 'ok' : 'bad' } })),
    );
    const follow = await ferry(['replication', 'follow', 'cli-r', '--until', 'idle', '--interval', '100']);
    assert.equal(follow.code, 0, follow.stderr);
    assert.match(follow.stderr, /cli-r: \d+\/\d+ records/, 'plain progress lines without a terminal');
    assert.match(follow.stderr, /cli-r: idle, \d+ records delivered/);
    await waitFor(
      async () =>
        (await new FerryClient(b.url, { token: b.token }).bucket('cli-rdst').info()).info.entry_count,
      {
        message: 'copied',
        timeoutMs: 20_000,
      },
    );

    const tasks = await json<Array<{ type: string; name: string }>>(['tasks']);
    assert.ok(tasks.some((t) => t.type === 'replication' && t.name === 'cli-r'));
    assert.match((await ferry(['tasks'])).stdout, /replication.*cli-r/);
    assert.equal((await ferry(['replication', 'rm', 'cli-r', '--yes'])).code, 0);
    assert.equal((await ferry(['replication', 'follow', 'cli-r'])).code, 3);
  });
});

describe('ferry replication follow on a suspension', () => {
  test('exits 7 with the reason when the replication is suspended', async () => {
    const port = await freePort();
    await new FerryClient(a.url, { token: a.token }).createBucket('cli-susp', {}, { existOk: true });
    const created = await ferry([
      'replication',
      'create',
      'cli-susp',
      '--src',
      'cli-susp',
      '--dst-url',
      `http://127.0.0.1:${port}`,
      '--settings',
      '{"retry": {"initial_ms": 50, "max_ms": 100, "max_outage_ms": 500}}',
    ]);
    assert.equal(created.code, 0, created.stderr);
    await new FerryClient(a.url, { token: a.token }).bucket('cli-susp').write('e', 1n, 'x');
    const r = await ferry(['replication', 'follow', 'cli-susp', '--interval', '100']);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /Replication 'cli-susp' is suspended: .+\. See 'ferry replication show cli-susp'/);
    assert.equal((await ferry(['replication', 'rm', 'cli-susp', '--yes'])).code, 0);
  });
});

describe('ferry filter', () => {
  test('create, ls, show, use by a replication, replace, rm (refused while used, 409 → exit 6)', async () => {
    await new FerryClient(a.url, { token: a.token }).createBucket('cli-f', {}, { existOk: true });
    const created = await json<{ name: string; version: number }>([
      'filter',
      'create',
      'cli-min',
      '--when',
      '{"&score": {"$gte": {"$param": "min"}}}',
      '--params',
      '{"min": {"type": "number", "default": 0.5}}',
      '--description',
      'at least min',
    ]);
    assert.equal(created.version, 1);
    const rep = await ferry([
      'replication',
      'create',
      'cli-fr',
      '--src',
      'cli-f',
      '--dst',
      'cli-f-copy',
      '--filter',
      'cli-min',
      '--params',
      '{"min": 0.8}',
    ]);
    assert.equal(rep.code, 0, rep.stderr);
    const list = await json<Array<{ name: string; used_by: string[] }>>(['filter', 'ls']);
    assert.deepEqual(list.find((f) => f.name === 'cli-min')?.used_by, ['cli-fr']);
    assert.match((await ferry(['filter', 'ls'])).stdout, /cli-min.*cli-fr/);
    assert.match((await ferry(['filter', 'show', 'cli-min'])).stdout, /description\s+at least min/);
    const replaced = await json<{ version: number }>([
      'filter',
      'create',
      'cli-min',
      '--replace',
      '--when',
      '{"&score": {"$gt": {"$param": "min"}}}',
    ]);
    assert.equal(replaced.version, 2);
    const busy = await ferry(['filter', 'rm', 'cli-min', '--yes']);
    assert.equal(busy.code, 6, busy.stderr);
    assert.equal((await ferry(['replication', 'rm', 'cli-fr', '--yes'])).code, 0);
    assert.equal((await ferry(['filter', 'rm', 'cli-min', '--yes'])).code, 0);
    const gone = await ferry(['filter', 'show', 'cli-min']);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /See what exists with 'ferry filter ls'/);
  });
});

describe('ferry cp', () => {
  const seed = async (bucket: string): Promise<void> => {
    const c = new FerryClient(a.url, { token: a.token });
    await c.createBucket(bucket, {}, { existOk: true });
    for (const entry of ['cam/front', 'cam/rear', 'log']) {
      await c.bucket(bucket).writeBatch(
        entry,
        Array.from({ length: 300 }, (_, i) => ({
          ts: 1000 + i,
          data: `${entry}-${i}`,
          contentType: entry === 'log' ? 'text/plain' : 'image/jpeg',
          labels: { n: String(i), q: i % 3 === 0 ? 'ok' : 'bad' },
        })),
      );
    }
  };

  test('server → server with filters, then export to a folder and import it back', async () => {
    await seed('cli-cp');
    const picked = Array.from({ length: 300 }, (_, i) => i).filter((i) => i >= 100 && i % 3 === 0);
    const bytes = picked.reduce((n, i) => n + `cam/front-${i}`.length + `cam/rear-${i}`.length, 0);
    const filtered = ['cp', ':cli-cp', `${b.url}/cli-cp-copy`, '--dst-token', b.token, '--entries', 'cam/*'];
    filtered.push('--start', '1100', '--when', '{"&q": {"$eq": "ok"}}');
    const out = await json<{ copied: number; bytes: number; skipped: number; failed: number }>(filtered);
    assert.deepEqual(out, { copied: picked.length * 2, bytes, skipped: 0, failed: 0, errors: [] });
    const cb = new FerryClient(b.url, { token: b.token });
    const copied = [];
    for await (const r of cb.bucket('cli-cp-copy').query('cam/rear')) copied.push(r);
    assert.equal(copied.length, picked.length);
    assert.equal(copied[0]!.ts, 1102n);
    assert.deepEqual(copied[0]!.labels, { n: '102', q: 'ok' });
    assert.equal(copied[0]!.contentType, 'image/jpeg');
    // a second run finds everything there
    const again = await json<{ copied: number; skipped: number }>(filtered);
    assert.equal(again.copied, 0);
    assert.equal(again.skipped, picked.length * 2);

    const folder = join(dir, 'export');
    const plain = await ferry(['cp', ':cli-cp', folder, '--progress-interval', '0']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /Copied 900 records/);
    assert.match(plain.stderr, /^cp: \d+\/900 records, \d+\/s/m, 'plain progress lines without a terminal');
    assert.ok(!plain.stderr.includes('\u001b['), 'no terminal control codes without a terminal');
    assert.deepEqual((await readdir(join(folder, 'cam'))).sort(), ['front', 'rear']);
    assert.equal(await readFile(join(folder, 'cam', 'front', '1005.jpg'), 'utf8'), 'cam/front-5');
    const meta = JSON.parse(await readFile(join(folder, 'log', '1005.meta.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.deepEqual(meta, {
      entry: 'log',
      ts: 1005,
      content_type: 'text/plain',
      labels: { n: '5', q: 'bad' },
      size: 5,
    });

    const back = await json<{ copied: number }>([
      'cp',
      folder,
      `:cli-cp-back`,
      '--entries',
      'log',
      '--stop',
      '1010',
    ]);
    assert.equal(back.copied, 10);
    const recs = [];
    for await (const r of new FerryClient(a.url, { token: a.token }).bucket('cli-cp-back').query('log'))
      recs.push(r);
    assert.deepEqual(
      recs.map((r) => [r.ts, new TextDecoder().decode(r.data), r.labels.n, r.contentType]),
      Array.from({ length: 10 }, (_, i) => [BigInt(1000 + i), `log-${i}`, String(i), 'text/plain']),
    );
    // refused records make the copy fail (exit 1) and are named
    assert.equal(
      (await ferry(['bucket', 'create', 'cli-cp-hard', '--quota-type', 'HARD', '--quota-size', '100'])).code,
      0,
    );
    const full = await ferry(['cp', folder, ':cli-cp-hard', '--entries', 'log', '-q']);
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /Quota of 'cli-cp-hard' exceeded/);
    const both = await ferry(['cp', folder, join(dir, 'other')]);
    assert.equal(both.code, 2);
  });

  test('under a pseudo-terminal the bar renders and ends cleanly; so does follow', async () => {
    await seed('cli-tty');
    const r = await runCli(['cp', ':cli-tty', join(dir, 'tty-export')], { env, tty: true });
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /cp \[[█░]+\] 100% \| 900\/900 records/, 'the bar reached 100%');
    assert.ok(
      r.stdout.includes('\u001b[?25l') && r.stdout.includes('\u001b[?25h'),
      'cursor hidden, then shown again',
    );
    assert.match(
      r.stdout,
      /100% \| 900\/900 records[^\n]*\r?\n[^]*Copied 900 records/,
      'the summary follows the finished bar',
    );

    const c = new FerryClient(a.url, { token: a.token });
    await c.replications.create('cli-tty-r', {
      src_bucket: 'cli-tty',
      dst_bucket: 'cli-tty-copy',
      dst_host: '',
    });
    await c.bucket('cli-tty').writeBatch(
      'new',
      Array.from({ length: 50 }, (_, i) => ({ ts: i + 1, data: 'y' })),
    );
    const f = await runCli(['replication', 'follow', 'cli-tty-r', '--until', 'idle', '--interval', '100'], {
      env,
      tty: true,
    });
    assert.equal(f.code, 0, f.stdout);
    assert.match(f.stdout, /cli-tty-r \[[█░]+\] \d+% \| \d+\/\d+ records/);
    assert.ok(f.stdout.includes('\u001b[?25h'), 'cursor shown again');
    await c.replications.delete('cli-tty-r');
  });
});

describe('ferry group', () => {
  test('create, ls, show, replace, a bucket in two groups (409 → exit 6), rm; unknown → exit 3', async () => {
    const client = new FerryClient(a.url, { token: a.token });
    for (const b of ['cli-g-cam', 'cli-g-pose', 'cli-g-imu'])
      await client.createBucket(b, {}, { existOk: true });
    const created = await json<{ name: string; buckets: string[] }>([
      'group',
      'create',
      'cli-robot',
      '--buckets',
      'cli-g-cam, cli-g-pose',
    ]);
    assert.deepEqual(created.buckets, ['cli-g-cam', 'cli-g-pose']);
    assert.deepEqual((await client.groups.get('cli-robot')).buckets, ['cli-g-cam', 'cli-g-pose']);
    assert.match((await ferry(['group', 'ls'])).stdout, /cli-robot.*cli-g-cam, cli-g-pose/);
    assert.match((await ferry(['group', 'show', 'cli-robot'])).stdout, /buckets\s+cli-g-cam, cli-g-pose/);
    const twice = await ferry(['group', 'create', 'cli-other', '--buckets', 'cli-g-pose']);
    assert.equal(twice.code, 6, twice.stderr);
    assert.match(twice.stderr, /cli-robot/);
    const replaced = await json<{ buckets: string[] }>([
      'group',
      'create',
      'cli-robot',
      '--replace',
      '--buckets',
      'cli-g-cam,cli-g-pose,cli-g-imu',
    ]);
    assert.deepEqual(replaced.buckets, ['cli-g-cam', 'cli-g-pose', 'cli-g-imu']);
    assert.equal((await ferry(['group', 'rm', 'cli-robot', '--yes'])).code, 0);
    const gone = await ferry(['group', 'show', 'cli-robot']);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /See what exists with 'ferry group ls'/);
    assert.ok(
      (await client.listBuckets()).some((b) => b.name === 'cli-g-cam'),
      'members stay',
    );
  });
});

describe('ferry replication verify', () => {
  test('clean → 0; a record removed at the destination → 8 with the entry and timestamp; --repair → 0; --last', async () => {
    const ca = new FerryClient(a.url, { token: a.token });
    const cb = new FerryClient(b.url, { token: b.token });
    await ca.createBucket('cli-v', {}, { existOk: true });
    const create = ['replication', 'create', 'cli-v', '--src', 'cli-v', '--dst', 'cli-v-copy'];
    const made = await ferry([...create, '--dst-url', b.url, '--dst-token', b.token]);
    assert.equal(made.code, 0, made.stderr);
    await ca.bucket('cli-v').writeBatch(
      'cam',
      Array.from({ length: 50 }, (_, i) => ({ ts: i + 1, data: `r${i}`, labels: { n: String(i) } })),
    );
    await waitFor(async () => (await ca.replications.status('cli-v')).pending_records === 0, {
      message: 'replicated',
    });
    const clean = await json<{ outcome: string; totals: { source_records: number } }>([
      'replication',
      'verify',
      'cli-v',
    ]);
    assert.equal(clean.outcome, 'clean');
    assert.equal(clean.totals.source_records, 50);

    await cb.bucket('cli-v-copy').removeRecord('cam', 17);
    const found = await ferry(['replication', 'verify', 'cli-v']);
    assert.equal(found.code, 8, found.stderr);
    assert.match(found.stdout, /cam\s.*50\s.*1\s.*missing 17/);
    assert.match(found.stdout, /cli-v: differences/);

    const repaired = await ferry(['replication', 'verify', 'cli-v', '--repair']);
    assert.equal(repaired.code, 0, repaired.stderr);
    assert.match(repaired.stdout, /repaired: 1 missing.* 1 written/);
    assert.equal(await (await cb.bucket('cli-v-copy').read('cam', 17)).text(), 'r16');
    const last = await json<{ outcome: string; repair: { written: number } }>([
      'replication',
      'verify',
      'cli-v',
      '--last',
    ]);
    assert.equal(last.outcome, 'clean');
    assert.equal(last.repair.written, 1);
    const unknown = await ferry(['replication', 'verify', 'no-such-rep']);
    assert.equal(unknown.code, 3);
    assert.match(unknown.stderr, /ferry replication ls/);
  });
});

describe('ferry remote', () => {
  test('create (token never shown), ls/show with the probe state, a replication over it, rm refused while used (exit 6)', async () => {
    const made = await json<Record<string, unknown>>([
      'remote',
      'create',
      'cli-cloud',
      b.url,
      '--remote-token',
      b.token,
    ]);
    assert.equal(made.has_token, true);
    await waitFor(
      async () => (await json<{ state: string }>(['remote', 'show', 'cli-cloud'])).state === 'up',
      {
        message: 'remote probed up',
        timeoutMs: 30_000,
      },
    );
    const shown = await ferry(['remote', 'show', 'cli-cloud']);
    assert.match(shown.stdout, /state\s+up/);
    assert.match(shown.stdout, /token\s+\(set\)/);
    const ls = await ferry(['remote', 'ls']);
    for (const out of [shown.stdout, ls.stdout, JSON.stringify(made)])
      assert.ok(!out.includes(b.token), 'no token');
    assert.match(ls.stdout, /cli-cloud.*up/);

    await new FerryClient(a.url, { token: a.token }).createBucket('cli-rem', {}, { existOk: true });
    const both = await ferry([
      'replication',
      'create',
      'cli-rem',
      '--src',
      'cli-rem',
      '--remote',
      'cli-cloud',
      '--dst-url',
      b.url,
    ]);
    assert.equal(both.code, 2, both.stderr);
    const rep = await ferry([
      'replication',
      'create',
      'cli-rem',
      '--src',
      'cli-rem',
      '--dst',
      'cli-rem-copy',
      '--remote',
      'cli-cloud',
    ]);
    assert.equal(rep.code, 0, rep.stderr);
    await new FerryClient(a.url, { token: a.token }).bucket('cli-rem').write('e', 1, 'over a remote');
    const cb = new FerryClient(b.url, { token: b.token });
    const text = await waitFor(
      async () => {
        try {
          return await (await cb.bucket('cli-rem-copy').read('e', 1)).text();
        } catch {
          return undefined; // not there yet (or still being written)
        }
      },
      { message: 'replicated over the remote' },
    );
    assert.equal(text, 'over a remote');
    assert.deepEqual((await json<{ replications: string[] }>(['remote', 'show', 'cli-cloud'])).replications, [
      'cli-rem',
    ]);
    const busy = await ferry(['remote', 'rm', 'cli-cloud', '--yes']);
    assert.equal(busy.code, 6, busy.stderr);
    assert.equal((await ferry(['remote', 'pin', 'cli-cloud'])).code, 0);
    assert.equal((await ferry(['replication', 'rm', 'cli-rem', '--yes'])).code, 0);
    assert.equal((await ferry(['remote', 'rm', 'cli-cloud', '--yes'])).code, 0);
    const gone = await ferry(['remote', 'show', 'cli-cloud']);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /See what exists with 'ferry remote ls'/);
  });
});

describe('ferry replication follow, one-shot', () => {
  test('follow of a continuous:false replication exits 0 once it is completed, with a last line that says so', async () => {
    const c = new FerryClient(a.url, { token: a.token });
    await c.createBucket('cli-once', {}, { existOk: true });
    await c.bucket('cli-once').writeBatch(
      'e',
      Array.from({ length: 200 }, (_, i) => ({ ts: i + 1, data: 'x' })),
    );
    const made = await ferry([
      'replication',
      'create',
      'cli-once',
      '--src',
      'cli-once',
      '--dst',
      'cli-once-copy',
      '--dst-url',
      b.url,
      '--dst-token',
      b.token,
      '--settings',
      '{"continuous": false}',
    ]);
    assert.equal(made.code, 0, made.stderr);
    const follow = await ferry(['replication', 'follow', 'cli-once', '--interval', '100']);
    assert.equal(follow.code, 0, follow.stderr);
    assert.match(follow.stderr, /cli-once: completed, 200 records delivered/);
    assert.equal((await ferry(['replication', 'rm', 'cli-once', '--yes'])).code, 0);
  });
});
