/**
 * The SDK in a real browser (issue 13: "runs in Node and in browsers"): Debian's Chromium, driven by
 * playwright-core, loads the compiled `src/client` and `src/protocol` modules unbundled through an
 * import map and talks to a real Ferry server across origins (CORS). What a browser user relies on:
 * buckets, records with labels, a streamed read, a batch, a query, typed errors with the server's
 * message, an abort, and `follow()` over the events stream.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { spawnFerry, freePort, type FerryProcess } from './helpers/ferry-process.js';

const CHROMIUM = process.env['FERRY_CHROMIUM'] ?? '/usr/bin/chromium';
/** dist/ (this file runs as dist/test/sdk-browser.test.js). */
const dist = join(fileURLToPath(import.meta.url), '..', '..');
const modules = join(dist, '..', 'node_modules');

/** Debian's chromium, installed here when missing and allowed (CI runs as root); else a clear failure. */
function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    process.stderr.write('sdk-browser: installing Debian chromium (apt-get install chromium)\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env });
  }
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set FERRY_CHROMIUM`,
  );
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.html': 'text/html',
  '.map': 'application/json',
};

/** Serves the page, dist/src/{client,protocol} and lossless-json: nothing else of the tree. */
function staticServer(): Server {
  const page = `<!doctype html><html><head><script type="importmap">${JSON.stringify({
    imports: {
      'ferry/client': '/src/client/index.js',
      'lossless-json': '/nm/lossless-json/lib/esm/index.js',
    },
  })}</script></head><body>sdk</body></html>`;
  return createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      return;
    }
    const roots: Array<[string, string]> = [
      ['/src/client/', join(dist, 'src', 'client')],
      ['/src/protocol/', join(dist, 'src', 'protocol')],
      ['/nm/lossless-json/', join(modules, 'lossless-json')],
    ];
    for (const [prefix, dir] of roots) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(dir + sep) || !existsSync(file)) break;
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(readFileSync(file));
      return;
    }
    res.writeHead(404).end();
  });
}

let ferry: FerryProcess;
let site: Server;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

before(async () => {
  ensureChromium();
  site = staticServer();
  const sitePort = await freePort();
  await new Promise<void>((r) => site.listen(sitePort, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${sitePort}`;
  ferry = await spawnFerry({ env: { RS_CORS_ALLOW_ORIGIN: origin } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('requestfailed', (r) => {
    // The aborted request of the abort test is expected; anything else is a finding.
    if (!r.url().includes('slow-abort'))
      pageErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  await page.goto(origin + '/');
});

after(async () => {
  await browser?.close();
  await ferry?.destroy();
  await new Promise((r) => (site ? site.close(r) : r(undefined)));
});

/** Runs `body` in the page with `sdk` = the ferry/client module and `client` = a client for the server. */
async function inPage<T>(body: string): Promise<T> {
  const fn = `(async ({ url, token }) => {
    const sdk = await import('ferry/client');
    const client = new sdk.FerryClient(url, { token });
    ${body}
  })`;
  return (await page.evaluate(`${fn}(${JSON.stringify({ url: ferry.url, token: ferry.token })})`)) as T;
}

test('records with labels, a streamed read, a batch and a query from the browser', async () => {
  const got = await inPage<{
    text: string;
    labels: Record<string, string>;
    contentType: string;
    streamed: number;
    queried: Array<{ ts: string; text: string; labels: Record<string, string> }>;
    entries: string[];
  }>(`
    const bucket = await client.createBucket('browser-b');
    await bucket.write('cam', 1000n, 'hello from chromium', { contentType: 'text/plain', labels: { site: 'lab', n: '1' } });
    const rec = await bucket.read('cam', 1000n);
    const text = await rec.text();
    const big = new Uint8Array(300000).map((_, i) => i % 251);
    await bucket.write('cam', 2000n, big);
    const r2 = await bucket.read('cam', 2000n);
    let streamed = 0;
    const reader = r2.stream.getReader();
    for (;;) { const { done, value } = await reader.read(); if (done) break; streamed += value.length; }
    await bucket.writeBatch('cam', [
      { ts: 3000n, data: 'b1', labels: { n: '3' } },
      { ts: 4000n, data: 'b2', labels: { n: '4' } },
    ]);
    const queried = [];
    for await (const q of bucket.query('cam', { start: 3000n, when: { '&n': { '$gte': 3 } } }))
      queried.push({ ts: String(q.ts), text: new TextDecoder().decode(q.data), labels: q.labels });
    const entries = (await bucket.entries()).map((e) => e.name);
    return { text, labels: rec.labels, contentType: rec.contentType, streamed, queried, entries };
  `);
  assert.deepEqual(pageErrors, []);
  assert.equal(got.text, 'hello from chromium');
  assert.deepEqual(got.labels, { site: 'lab', n: '1' });
  assert.equal(got.contentType, 'text/plain');
  assert.equal(got.streamed, 300000);
  assert.deepEqual(got.queried, [
    { ts: '3000', text: 'b1', labels: { n: '3' } },
    { ts: '4000', text: 'b2', labels: { n: '4' } },
  ]);
  assert.deepEqual(got.entries, ['cam']);
});

test('typed errors carry the status and the server message; an abort is a FerryError too', async () => {
  const got = await inPage<{
    missing: [boolean, number, string];
    badToken: [number, string];
    aborted: [boolean, number];
  }>(`
    const errorOf = async (p) => { try { await p; return null; } catch (e) { return e; } };
    const nf = await errorOf(client.bucket('no-such-bucket').info());
    const bad = await errorOf(new sdk.FerryClient(url, { token: 'wrong' }).listBuckets());
    const ac = new AbortController();
    const pending = errorOf(client.bucket('slow-abort').info({ signal: ac.signal }));
    ac.abort();
    const ab = await pending;
    return {
      missing: [sdk.isFerryError(nf), nf.status, nf.message],
      badToken: [bad.status, bad.message],
      aborted: [sdk.isFerryError(ab), ab.status],
    };
  `);
  assert.deepEqual(got.missing, [true, 404, "Bucket 'no-such-bucket' is not found"]);
  assert.equal(got.badToken[0], 401);
  assert.match(got.badToken[1], /token/i);
  assert.deepEqual(got.aborted, [true, -5]);
});

test('follow() streams status events of a replication to the browser until aborted', async () => {
  const got = await inPage<{ first: string; name: string }>(`
    await client.createBucket('browser-src');
    await client.createBucket('browser-dst');
    await client.replications.create('browser-r', { src_bucket: 'browser-src', dst_bucket: 'browser-dst', dst_host: '' });
    await client.bucket('browser-src').write('e', 1n, 'x');
    const ac = new AbortController();
    let first = '', name = '';
    for await (const ev of client.replications.follow('browser-r', { signal: ac.signal, intervalMs: 100 })) {
      if (ev.type === 'status') { first ||= ev.status.state; name = ev.status.name; }
      if (first) break;
    }
    ac.abort();
    return { first, name };
  `);
  assert.equal(got.name, 'browser-r');
  assert.match(got.first, /^(initializing|replicating|idle)$/);
});
