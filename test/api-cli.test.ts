/**
 * `ferry serve` (src/cli/main.ts): option overrides, the start line, clean exit on SIGTERM, the
 * FERRY_HEAP_GROWING_PERCENT flag (src/cli/heap.ts); and HTTPS when a certificate and key are
 * configured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import { loadConfig } from '../src/config/load-config.js';
import { selfSignedCert } from './helpers/tls-cert.js';
import { heapGrowingFlag } from '../src/cli/heap.js';
import { startFerry } from '../src/server.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

test('ferry serve --port 0 --data <dir> prints the start line and exits cleanly on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-api-cli-'));
  try {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      RS_API_TOKEN: 'cli-secret-token',
      RS_HOST: '127.0.0.1',
    };
    const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data', dir], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line:\n${out}`)), 15_000);
      const onData = (chunk: Buffer): void => {
        out += chunk.toString();
        const m = /Ferry listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => reject(new Error(`exited early:\n${out}`)));
    });
    assert.ok(!out.includes('cli-secret-token'), 'the token must never be logged');
    const res = await fetch(`${url}/api/v1/info`, { headers: { authorization: 'Bearer cli-secret-token' } });
    assert.equal(res.status, 200);
    assert.ok((await readdir(dir)).length > 0, 'data directory from --data is used');
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    assert.equal(code, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('HTTPS when RS_CERT_PATH and RS_CERT_KEY_PATH are set', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-api-tls-'));
  try {
    const tls = selfSignedCert(dir);
    if (!tls) {
      t.skip('openssl is not available');
      return;
    }
    const { cert, key } = tls;
    const ferry = await startFerry(
      loadConfig({
        RS_DATA_PATH: join(dir, 'data'),
        RS_API_TOKEN: 't',
        RS_HOST: '127.0.0.1',
        RS_PORT: '0',
        RS_CERT_PATH: cert,
        RS_CERT_KEY_PATH: key,
        RS_SYSTEM_EVENTS_ENABLED: 'false',
      }),
      { log: () => undefined },
    );
    try {
      assert.match(ferry.url, /^https:\/\//);
      const status = await new Promise<number>((resolve, reject) => {
        https
          .get(`${ferry.url}/api/v1/alive`, { rejectUnauthorized: false }, (res) => {
            res.resume();
            assert.equal(res.headers['x-reduct-api'], '1.21');
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
      assert.equal(status, 200);
    } finally {
      await ferry.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ferry serve refuses an invalid FERRY_HEAP_GROWING_PERCENT with a message, before listening', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-api-cli-heap-'));
  try {
    const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data', dir], {
      env: { PATH: process.env.PATH, RS_HOST: '127.0.0.1', FERRY_HEAP_GROWING_PERCENT: 'lots' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(out, /FERRY_HEAP_GROWING_PERCENT must be a non-negative integer, got 'lots'/);
    assert.doesNotMatch(out, /Ferry listening/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FERRY_HEAP_GROWING_PERCENT → the V8 flag ferry serve sets (src/cli/heap.ts)', () => {
  assert.equal(heapGrowingFlag(undefined), '--heap-growing-percent=100');
  assert.equal(heapGrowingFlag(''), '--heap-growing-percent=100');
  assert.equal(heapGrowingFlag('0'), undefined, "0 keeps V8's adaptive default");
  assert.equal(heapGrowingFlag('25'), '--heap-growing-percent=25');
  for (const bad of ['lots', '-1', '1.5']) {
    assert.throws(() => heapGrowingFlag(bad), {
      message: `FERRY_HEAP_GROWING_PERCENT must be a non-negative integer, got '${bad}'`,
    });
  }
});
