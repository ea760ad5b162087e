/**
 * PostgreSQL with a synchronous physical standby on loopback, the baseline of the sync replication
 * rows of `bench:replication`: a primary (`synchronous_standby_names = '*'`) and a streaming
 * standby made by `pg_basebackup -R`, both throw-away clusters deleted afterwards. A commit then
 * waits for the standby (`synchronous_commit = on`: flushed there; `remote_apply`: applied there).
 */
import { chownSync, mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ferry-process.js';
import {
  findPostgresBin,
  killPostmaster,
  run,
  runAsAccount,
  startPgCluster,
  type PgCluster,
} from './postgres-cluster.js';
import { waitUntil } from './wait.js';

/** A primary whose commits wait for a synchronous streaming standby. */
export interface PgSyncPair {
  primary: PgCluster;
  /** Stops both clusters and removes them; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts the pair; undefined when PostgreSQL is not installed. */
export async function startPgSyncPair(): Promise<PgSyncPair | undefined> {
  const bin = findPostgresBin();
  if (bin === undefined) return undefined;
  const primary = await startPgCluster({ settings: { synchronous_standby_names: "'*'" } });
  if (primary === undefined) return undefined;
  const runAs = runAsAccount();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pg-standby-'));
  const dataDir = join(dir, 'data');
  let started = false;
  const onExit = (): void => {
    killPostmaster(dataDir, 'SIGQUIT');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const stop = async (): Promise<void> => {
    process.off('exit', onExit);
    try {
      if (started)
        await run(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], runAs, dir);
    } catch {
      killPostmaster(dataDir, 'SIGQUIT');
    }
    rmSync(dir, { recursive: true, force: true });
    await primary.stop();
  };
  try {
    if (runAs) chownSync(dir, runAs.uid, runAs.gid);
    await run(
      join(bin, 'pg_basebackup'),
      [
        '-h',
        primary.host,
        '-p',
        String(primary.port),
        '-U',
        primary.user,
        '-D',
        dataDir,
        '-R',
        '-X',
        'stream',
      ],
      runAs,
      dir,
    );
    const port = await freePort();
    // later lines win: the copied postgresql.conf still names the primary's port and socket directory
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      `port = ${port}\nunix_socket_directories = '${dir}'\nsynchronous_standby_names = ''\n`,
    );
    await run(
      join(bin, 'pg_ctl'),
      ['-D', dataDir, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start'],
      runAs,
      dir,
    );
    started = true;
    const c: pg.Client = await primary.connect();
    try {
      await waitUntil('the standby to be synchronous', 30_000, async () => {
        const r = await c.query(
          "SELECT count(*)::int AS n FROM pg_stat_replication WHERE sync_state = 'sync'",
        );
        return (r.rows[0] as { n: number }).n === 1;
      });
    } finally {
      await c.end();
    }
    return { primary, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
