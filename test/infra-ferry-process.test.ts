import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { spawnFerry } from './helpers/ferry-process.js';
import { waitFor } from './helpers/wait.js';

/** A stand-in server speaking just enough to exercise the process management. */
const STAND_IN = `
import { createServer } from 'node:http';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const mode = process.env.STANDIN_MODE ?? 'ok';
if (mode === 'crash') { console.error('boom: cannot start'); process.exit(3); }
if (mode === 'hang') { console.log('starting slowly'); setInterval(() => {}, 1000); }
else {
  const counter = join(process.env.RS_DATA_PATH, 'starts');
  const starts = (existsSync(counter) ? Number(readFileSync(counter, 'utf8')) : 0) + 1;
  writeFileSync(counter, String(starts));
  const server = createServer((req, res) => {
    const authorized = req.headers.authorization === 'Bearer ' + process.env.RS_API_TOKEN;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ starts, authorized, pid: process.pid, leaked: process.env.RS_LEAK ?? null,
      extra: process.env.STANDIN_EXTRA ?? null }));
  });
  server.listen(Number(process.env.RS_PORT), process.env.RS_HOST, () => {
    console.log('Ferry listening on http://' + process.env.RS_HOST + ':' + process.env.RS_PORT);
  });
  process.on('SIGTERM', () => { console.log('graceful shutdown'); server.close(); process.exit(0); });
}
`;

interface StandInReply {
  starts: number;
  authorized: boolean;
  pid: number;
  leaked: string | null;
  extra: string | null;
}

function standIn(): { cliPath: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-standin-'));
  const cliPath = join(dir, 'stand-in.mjs');
  writeFileSync(cliPath, STAND_IN);
  return { cliPath, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function ask(url: string, token: string): Promise<StandInReply> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return (await res.json()) as StandInReply;
}

test('spawns, passes the settings and does not leak RS_* from the parent', async () => {
  const s = standIn();
  process.env.RS_LEAK = 'parent value';
  try {
    const ferry = await spawnFerry({ cliPath: s.cliPath, env: { STANDIN_EXTRA: 'x' } });
    try {
      assert.match(ferry.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(ferry.url, `http://127.0.0.1:${ferry.port}`);
      assert.ok(ferry.token.length >= 16);
      const reply = await ask(ferry.url, ferry.token);
      assert.equal(reply.authorized, true);
      assert.equal(reply.pid, ferry.pid);
      assert.equal(reply.leaked, null);
      assert.equal(reply.extra, 'x');
      assert.ok(existsSync(join(ferry.dataPath, 'starts')));
      assert.match(ferry.output(), /Ferry listening on/);
    } finally {
      await ferry.destroy();
    }
    assert.equal(existsSync(ferry.dataPath), false, 'destroy() removes the data dir it created');
  } finally {
    delete process.env.RS_LEAK;
    s.cleanup();
  }
});

test('kill crashes the server; restart reuses port and data path', async () => {
  const s = standIn();
  const dataPath = mkdtempSync(join(tmpdir(), 'ferry-data-given-'));
  try {
    const ferry = await spawnFerry({ cliPath: s.cliPath, dataPath, token: 'fixed-token-for-test' });
    const { port } = ferry;
    const firstPid = ferry.pid;
    assert.equal((await ask(ferry.url, 'fixed-token-for-test')).starts, 1);
    await ferry.kill();
    assert.equal(ferry.running, false);
    await assert.rejects(fetch(ferry.url));
    assert.match(ferry.output(), /signal SIGKILL/);

    await ferry.restart();
    assert.equal(ferry.port, port);
    assert.notEqual(ferry.pid, firstPid);
    const reply = await ask(ferry.url, 'fixed-token-for-test');
    assert.equal(reply.starts, 2);
    assert.equal(reply.authorized, true);

    await ferry.stop();
    assert.match(ferry.output(), /graceful shutdown/);
    await ferry.destroy();
    assert.equal(existsSync(dataPath), true, 'a data dir given by the caller is kept');
    assert.equal(readFileSync(join(dataPath, 'starts'), 'utf8'), '2');
  } finally {
    rmSync(dataPath, { recursive: true, force: true });
    s.cleanup();
  }
});

test('a server that exits early rejects with its output', async () => {
  const s = standIn();
  try {
    await assert.rejects(
      spawnFerry({ cliPath: s.cliPath, env: { STANDIN_MODE: 'crash' } }),
      (err: Error) =>
        /exited before it was ready/.test(err.message) && /boom: cannot start/.test(err.message),
    );
  } finally {
    s.cleanup();
  }
});

test('a server that never gets ready times out with its output', async () => {
  const s = standIn();
  try {
    await assert.rejects(
      spawnFerry({ cliPath: s.cliPath, env: { STANDIN_MODE: 'hang' }, startTimeoutMs: 4000 }),
      (err: Error) => /within 4000 ms/.test(err.message) && /starting slowly/.test(err.message),
    );
  } finally {
    s.cleanup();
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const ending of ['exit', 'SIGTERM'] as const) {
  test(`servers die with the process that spawned them (${ending})`, async () => {
    const s = standIn();
    const helper = new URL('./helpers/ferry-process.js', import.meta.url).href;
    const script = `
      const { spawnFerry } = await import(${JSON.stringify(helper)});
      const f = await spawnFerry({ cliPath: ${JSON.stringify(s.cliPath)} });
      console.log('PID ' + f.pid + ' DATA ' + f.dataPath);
      ${ending === 'exit' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}
    `;
    try {
      const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise((resolve) => parent.once('exit', resolve));
      let out = '';
      parent.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const pid = await waitFor(
        () => {
          const m = /PID (\d+)/.exec(out);
          return m ? Number(m[1]) : undefined;
        },
        { timeoutMs: 10_000, message: 'child pid' },
      );
      assert.equal(alive(pid), true);
      if (ending === 'SIGTERM') parent.kill('SIGTERM');
      await exited;
      await waitFor(() => !alive(pid), { timeoutMs: 5000, message: `server ${pid} to be gone` });
      const data = /DATA (\S+)/.exec(out)?.[1];
      assert.ok(data !== undefined);
      assert.equal(existsSync(data), false, 'its own data directory is removed too');
    } finally {
      s.cleanup();
    }
  });
}

const realCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

test(
  'the real Ferry CLI starts, survives a crash and keeps its data',
  { skip: !existsSync(realCli) && 'CLI not built yet' },
  async () => {
    const ferry = await spawnFerry();
    try {
      const auth = { authorization: `Bearer ${ferry.token}` };
      const alive = await fetch(`${ferry.url}/api/v1/alive`);
      assert.equal(alive.status, 200);
      assert.equal((await fetch(`${ferry.url}/api/v1/info`)).status, 401);
      const created = await fetch(`${ferry.url}/api/v1/b/infra`, { method: 'POST', headers: auth });
      assert.equal(created.status, 200);
      const put = await fetch(`${ferry.url}/api/v1/b/infra/e?ts=1000`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'text/plain' },
        body: 'persist me',
      });
      assert.equal(put.status, 200);
      await ferry.kill('SIGKILL');
      await ferry.restart();
      const got = await fetch(`${ferry.url}/api/v1/b/infra/e?ts=1000`, { headers: auth });
      assert.equal(got.status, 200);
      assert.equal(await got.text(), 'persist me');
    } finally {
      await ferry.destroy();
    }
  },
);
