/** Per-process files of Linux's /proc, for the CPU and memory readers. */
import { readFileSync } from 'node:fs';

/** Text of `/proc/<pid>/<file>`, or undefined when it cannot be read (not Linux, process gone). */
export function readProcFile(pid: number | 'self', file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}
