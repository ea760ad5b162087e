/**
 * TCP ports for servers that tests and benchmarks start and restart on the same port.
 *
 * A port from `listen(0)` lies in the kernel's ephemeral range, which every outgoing connection on
 * the machine draws its source port from as well: while a server is down between a crash and its
 * restart, any client anywhere (another test file, another run) may take the port as its source
 * port, and the restart fails with EADDRINUSE. So ports come from below the ephemeral range, where
 * the kernel never picks one by itself, and each is claimed with a lock file in the temp directory
 * that names the claiming process, so that concurrent test processes (of this run or of another)
 * never hand out the same port. A process keeps its ports until it exits.
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, closeSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Ports handed out come from here (below Linux's default ephemeral range 32768–60999, macOS's 49152–). */
export const RESERVED_RANGE = { low: 20_000, high: 32_767 } as const;

const LOCK_DIR = join(tmpdir(), 'ferry-test-ports');
const ATTEMPTS = 200;
const claimed = new Set<number>();
let exitHook = false;

/** The kernel's ephemeral port range (Linux), or undefined when it cannot be read. */
export function ephemeralRange(): { low: number; high: number } | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    return { low: Number(low), high: Number(high) };
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function releaseAll(): void {
  for (const port of claimed) {
    try {
      unlinkSync(join(LOCK_DIR, String(port)));
    } catch {
      // already gone
    }
  }
  claimed.clear();
}

/** Creates the lock file of `port`; false when a live process holds it. A dead holder's lock is taken over. */
export function claimPort(port: number): boolean {
  if (claimed.has(port)) return false;
  mkdirSync(LOCK_DIR, { recursive: true });
  const path = join(LOCK_DIR, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      claimed.add(port);
      if (!exitHook) {
        exitHook = true;
        process.on('exit', releaseAll);
      }
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = NaN;
      try {
        holder = Number(readFileSync(path, 'utf8'));
      } catch {
        // removed meanwhile: try again
      }
      // a lock being written has no pid yet: treat it as held
      if (!Number.isInteger(holder) || holder <= 0 || alive(holder)) return false;
      try {
        unlinkSync(path);
      } catch {
        // someone else took it over first
      }
    }
  }
  return false;
}

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

function listenZero(host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

/**
 * A free TCP port on `host`, outside the ephemeral range and claimed for this process (see the file
 * comment). Falls back to a port from `listen(0)` when the range overlaps the ephemeral one or no
 * port of it can be claimed.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const eph = ephemeralRange();
  const overlaps = eph !== undefined && eph.low <= RESERVED_RANGE.high && eph.high >= RESERVED_RANGE.low;
  if (!overlaps) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const port = randomInt(RESERVED_RANGE.low, RESERVED_RANGE.high + 1);
      let mine: boolean;
      try {
        mine = claimPort(port);
      } catch {
        break; // no usable lock directory
      }
      if (mine && (await canListen(port, host))) return port;
    }
  }
  return await listenZero(host);
}
