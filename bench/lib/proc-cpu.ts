/** CPU time of processes from /proc/<pid>/stat (Linux); undefined elsewhere or when the process is gone. */
import { readProcFile } from './proc-file.js';

/** Clock ticks per second used by /proc (USER_HZ, 100 on every common Linux build). */
const USER_HZ = 100;

/** User + system CPU seconds consumed so far by `pid` (default: this process). */
export function readCpuSeconds(pid: number | 'self' = 'self'): number | undefined {
  const stat = readProcFile(pid, 'stat');
  if (stat === undefined) return undefined;
  // The command name (field 2) may contain spaces; fields after it are space separated.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
}
