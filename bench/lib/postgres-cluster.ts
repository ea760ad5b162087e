/**
 * Throw-away PostgreSQL clusters for baseline measurements: created in a temp directory, listening on
 * 127.0.0.1 on a free port, always stopped and deleted afterwards. Runs the server as the `postgres`
 * user when this process is root (PostgreSQL refuses to run as root).
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  appendFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ferry-process.js';

/** A running throw-away cluster. */
export interface PgCluster {
  host: string;
  port: number;
  user: string;
  database: string;
  /** Directory holding the cluster (deleted by `stop()`). */
  dir: string;
  /** Opens a new client connection (caller ends it). */
  connect(): Promise<pg.Client>;
  /** Fast shutdown and removal of the directory; safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@link startPgCluster}. */
export interface PgClusterOptions {
  /** Extra `postgresql.conf` settings, e.g. `{ wal_level: 'logical' }`. */
  settings?: Record<string, string>;
}

const live = new Map<string, { dataDir: string; dir: string }>();
let hookInstalled = false;

/** Directory with `initdb`, `pg_ctl` and `postgres`, or undefined when PostgreSQL is not installed. */
export function findPostgresBin(): string | undefined {
  const candidates: string[] = [];
  const debianRoot = '/usr/lib/postgresql';
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join(debianRoot, v, 'bin')));
  }
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir !== '') candidates.push(dir);
  return candidates.find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((b) => existsSync(join(dir, b))));
}

export interface RunAs {
  user: string;
  uid: number;
  gid: number;
}

/** When root, the unprivileged account to run PostgreSQL as (created if missing). */
export function runAsAccount(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ['postgres', 'ferry-bench-pg']) {
    const uid = spawnSync('id', ['-u', user], { encoding: 'utf8' });
    if (uid.status === 0) {
      const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' });
      return { user, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    }
    if (user === 'ferry-bench-pg') {
      const made = spawnSync(
        'useradd',
        ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user],
        { encoding: 'utf8' },
      );
      if (made.status === 0) return runAsAccount();
    }
  }
  throw new Error('running as root and no unprivileged account is available for PostgreSQL');
}

/** Runs a PostgreSQL tool (as `runAs` when given) and resolves with its output; rejects on failure. */
export async function run(
  bin: string,
  args: string[],
  runAs: RunAs | undefined,
  cwd: string,
): Promise<string> {
  const [cmd, argv] = runAs ? ['runuser', ['-u', runAs.user, '--', bin, ...args]] : [bin, args];
  return await new Promise<string>((resolve, reject) => {
    // 'exit', not 'close': pg_ctl leaves a daemon behind that may hold inherited descriptors.
    const child = spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${bin} ${args.join(' ')} failed with code ${code}:\n${out}`));
    });
  });
}

export function killPostmaster(dataDir: string, signal: NodeJS.Signals): void {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (pid > 0) process.kill(pid, signal);
  } catch {
    // not running
  }
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const { dataDir, dir } of live.values()) {
      killPostmaster(dataDir, 'SIGQUIT'); // immediate shutdown
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/**
 * Creates and starts a cluster (trust auth, superuser `postgres`, database `postgres`) with default
 * durability (fsync on, synchronous_commit on). Undefined when PostgreSQL is not installed.
 */
export async function startPgCluster(opts: PgClusterOptions = {}): Promise<PgCluster | undefined> {
  const bin = findPostgresBin();
  if (bin === undefined) return undefined;
  installExitHook();
  const runAs = runAsAccount();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pg-'));
  const dataDir = join(dir, 'data');
  let started = false;
  const stop = async (): Promise<void> => {
    if (!live.has(dir)) return;
    live.delete(dir);
    try {
      if (started)
        await run(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], runAs, dir);
    } catch {
      killPostmaster(dataDir, 'SIGQUIT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  live.set(dir, { dataDir, dir });
  try {
    if (runAs) chownSync(dir, runAs.uid, runAs.gid);
    await run(
      join(bin, 'initdb'),
      ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'],
      runAs,
      dir,
    );
    const port = await freePort();
    const settings: Record<string, string> = {
      port: String(port),
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${dir}'`,
      ...opts.settings,
    };
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}\n`)
        .join(''),
    );
    await run(
      join(bin, 'pg_ctl'),
      ['-D', dataDir, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start'],
      runAs,
      dir,
    );
    started = true;
    const conn = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' };
    return {
      ...conn,
      dir,
      connect: async () => {
        const client = new pg.Client(conn);
        await client.connect();
        return client;
      },
      stop,
    };
  } catch (err) {
    started = existsSync(join(dataDir, 'postmaster.pid'));
    await stop();
    throw err;
  }
}
