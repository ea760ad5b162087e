/**
 * Replication throughput: catch-up of a backlog written while the replication was paused, to a
 * bucket of the same instance (LocalTarget) and to another in-process Ferry (RemoteTarget, batch
 * protocol v1 over HTTP). `npm run bench:replication [records] [size]` (defaults 20 000 × 1 KiB).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { startFerry } from '../src/server.js';
import { openStorage } from '../src/storage/engine.js';
import type { Storage } from '../src/storage/types.js';
import { ReplicationManager } from '../src/replication/manager.js';

const RECORDS = Number(process.argv[2] ?? 20_000);
const SIZE = Number(process.argv[3] ?? 1024);
const TOKEN = 'bench-token';

async function backlog(storage: Storage, bucket: string): Promise<void> {
  const payload = Buffer.alloc(SIZE, 7);
  const b = storage.bucket(bucket);
  const CONCURRENCY = 64;
  for (let i = 0; i < RECORDS; i += CONCURRENCY) {
    const n = Math.min(CONCURRENCY, RECORDS - i);
    await Promise.all(
      Array.from({ length: n }, (_, k) =>
        b.write(`e${(i + k) % 4}`, BigInt(1 + i + k), { size: SIZE, labels: { k: String(k) } }, payload),
      ),
    );
  }
}

async function run(label: string, dstHost: string, extraDir?: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-repl-'));
  const config = loadConfig({
    RS_DATA_PATH: dir,
    RS_HOST: '127.0.0.1',
    RS_PORT: '8383',
    FERRY_DURABILITY: 'fsync',
  });
  const storage = await openStorage({ dataPath: dir, durability: 'fsync' });
  const manager = await ReplicationManager.open({ storage, config, port: 8383 });
  try {
    await storage.createBucket('src');
    await manager.create('bench', {
      src_bucket: 'src',
      dst_bucket: 'dst',
      dst_host: dstHost,
      dst_token: TOKEN,
      mode: 'paused',
    });
    await backlog(storage, 'src');
    const start = performance.now();
    await manager.setMode('bench', { mode: 'enabled' });
    for (;;) {
      const st = (
        manager.get('bench') as {
          status: { pending_records: number; state: string; state_reason: string | null };
        }
      ).status;
      if (st.pending_records === 0) break;
      if (st.state === 'suspended') throw new Error(`suspended: ${st.state_reason}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const sec = (performance.now() - start) / 1000;
    const mb = (RECORDS * SIZE) / 1e6;
    console.log(
      `${label.padEnd(8)} ${RECORDS} × ${SIZE} B: ${sec.toFixed(2)} s, ${Math.round(RECORDS / sec)} records/s, ${(mb / sec).toFixed(1)} MB/s`,
    );
  } finally {
    await manager.close();
    await storage.close();
    await rm(dir, { recursive: true, force: true });
    if (extraDir) await rm(extraDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await run('local', '');
  const dstDir = await mkdtemp(join(tmpdir(), 'ferry-bench-repl-dst-'));
  const dst = await startFerry(
    loadConfig({
      RS_DATA_PATH: dstDir,
      RS_API_TOKEN: TOKEN,
      RS_HOST: '127.0.0.1',
      RS_PORT: '0',
      RS_SYSTEM_EVENTS_ENABLED: 'false',
    }),
    { log: () => undefined },
  );
  try {
    await run('remote', dst.url);
  } finally {
    await dst.close();
    await rm(dstDir, { recursive: true, force: true });
  }
}

await main();
