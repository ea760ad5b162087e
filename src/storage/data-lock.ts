/**
 * The data directory lock (`.ferry/lock`): one server per data directory. Two servers on one
 * directory would share an instance id and delete each other's live WAL segments.
 *
 * The lock file is created exclusively and names its holder (pid, host, process start time). A lock
 * whose holder is gone — same host, and no process with that pid, or a process with that pid that
 * started at another time (the pid was reused) — is stale and taken over; a lock held by a live
 * process or by another host is never taken.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors } from '../protocol/errors.js';

interface Holder {
  pid: number;
  host: string;
  /** Start time of the process (clock ticks since boot, Linux `/proc/<pid>/stat`), or null. */
  proc_start: string | null;
  since: string;
  token: string;
}

/** Start time of a process from `/proc`, or null where there is none (not Linux, or no process). */
async function processStart(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

async function isAlive(holder: Holder): Promise<boolean> {
  if (holder.pid === process.pid) return false; // not us: we hold no lock yet (a container restart)
  try {
    process.kill(holder.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (holder.proc_start === null) return true;
  const start = await processStart(holder.pid);
  return start === null || start === holder.proc_start;
}

async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    const h = JSON.parse(await readFile(path, 'utf8')) as Partial<Holder>;
    if (typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.token === 'string') {
      return {
        pid: h.pid,
        host: h.host,
        proc_start: h.proc_start ?? null,
        since: h.since ?? '?',
        token: h.token,
      };
    }
  } catch {
    /* missing or unreadable */
  }
  return undefined;
}

/** The held lock of a data directory. */
export class DataLock {
  private constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  /**
   * Takes the lock of `metaDir` (the data directory's `.ferry`), or throws a FerryError naming the
   * holder. A lock file that cannot be read (torn by a crash while it was written) counts as stale.
   */
  static async acquire(dataPath: string, metaDir: string): Promise<DataLock> {
    const path = join(metaDir, 'lock');
    const me: Holder = {
      pid: process.pid,
      host: hostname(),
      proc_start: await processStart(process.pid),
      since: new Date().toISOString(),
      token: randomUUID(),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const fh = await open(path, 'wx', 0o600);
        try {
          await fh.writeFile(JSON.stringify(me));
          await fh.sync();
        } finally {
          await fh.close();
        }
        return new DataLock(path, me.token);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = await readHolder(path);
      if (!holder && attempt === 0) {
        // Maybe a server that is writing its lock right now: look again before calling it stale.
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (holder && (holder.host !== me.host || (await isAlive(holder)))) {
        throw Errors.dataDirLocked(dataPath, holder.pid, holder.host, holder.since, path);
      }
      await DataLock.takeOver(path, holder);
    }
    throw Errors.dataDirLocked(dataPath, 0, '?', '?', path);
  }

  /**
   * Moves a stale lock aside. Another server starting at the same moment may have replaced it
   * already: then the moved file is that server's live lock, and it is put back (never over a file).
   */
  private static async takeOver(path: string, stale: Holder | undefined): Promise<void> {
    const aside = `${path}.stale-${process.pid}-${randomUUID()}`;
    try {
      await rename(path, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const moved = await readHolder(aside);
    if (stale && moved && moved.token !== stale.token) {
      await link(aside, path).catch(() => {});
    }
    await unlink(aside).catch(() => {});
  }

  /** True while the lock file is still this server's. */
  async held(): Promise<boolean> {
    return (await readHolder(this.path))?.token === this.token;
  }

  /** Removes the lock file if it is still this server's. */
  async release(): Promise<void> {
    if (await this.held()) await unlink(this.path).catch(() => {});
  }
}
