/** Resident memory of processes from /proc (Linux); other platforms report undefined. */
import { writeFileSync } from 'node:fs';
import { readProcFile } from './proc-file.js';

/** Current and peak resident set size in bytes. */
export interface RssReading {
  rss: number;
  /** Peak since start or since the last {@link resetPeakRss} (VmHWM). */
  peak: number;
}

/** Reads VmRSS and VmHWM of `pid` (default: this process); undefined if the process is gone. */
export function readRss(pid: number | 'self' = 'self'): RssReading | undefined {
  const status = readProcFile(pid, 'status');
  if (status === undefined) return undefined;
  const kb = (field: string): number | undefined => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const rss = kb('VmRSS');
  const peak = kb('VmHWM');
  if (rss === undefined || peak === undefined) return undefined;
  return { rss, peak };
}

/**
 * Resets the kernel's peak-RSS mark of `pid` (writes 5 to clear_refs) so that the next reading
 * measures one phase. Returns false when not permitted; the peak then covers the whole run.
 */
export function resetPeakRss(pid: number | 'self' = 'self'): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Polls a process's RSS every `intervalMs` and remembers the largest value seen, combined with the
 * kernel's VmHWM; polling also catches the peak when the mark cannot be reset.
 */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private maxSeen = 0;

  constructor(
    private readonly pid: number | 'self',
    private readonly intervalMs = 50,
  ) {}

  /** Starts a new phase: resets the kernel's peak mark if possible and begins polling. */
  start(): this {
    this.stop();
    resetPeakRss(this.pid);
    this.maxSeen = readRss(this.pid)?.rss ?? 0;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  private sample(): RssReading | undefined {
    const r = readRss(this.pid);
    if (r !== undefined) this.maxSeen = Math.max(this.maxSeen, r.rss, r.peak);
    return r;
  }

  /** Peak bytes since `start()` (so far); call before the process exits. */
  peak(): number {
    this.sample();
    return this.maxSeen;
  }

  /** Stops polling and returns the peak bytes. */
  stop(): number {
    const peak = this.peak();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    return peak;
  }
}
