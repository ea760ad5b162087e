/**
 * Hourly diagnostics window (api.md §17.4, §20.4): 60 one-minute frames of ok / errored counts and
 * per-status error counts with the latest message. Kept in memory only, as in the reference.
 */
import { boundMessage } from './target.js';

interface Frame {
  minute: number;
  ok: number;
  errored: number;
  errors: Map<number, { count: number; last_message: string }>;
}

const FRAMES = 60;
const MINUTE = 60_000;

/** Wire shape of `diagnostics.hourly` (declared in protocol/, shared with the SDK). */
export type { HourlyDiagnostics } from '../protocol/replications.js';
import type { HourlyDiagnostics } from '../protocol/replications.js';

/** Rolling one-hour window of delivery outcomes. */
export class Diagnostics {
  private frames: Frame[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  private frame(): Frame {
    const minute = Math.floor(this.now() / MINUTE);
    const last = this.frames[this.frames.length - 1];
    if (last && last.minute === minute) return last;
    const f: Frame = { minute, ok: 0, errored: 0, errors: new Map() };
    this.frames.push(f);
    this.prune(minute);
    return f;
  }

  private prune(minute: number): void {
    while (this.frames.length > 0 && this.frames[0]!.minute <= minute - FRAMES) this.frames.shift();
  }

  /** Counts records accepted by the destination (written or already present). */
  addOk(n: number): void {
    if (n > 0) this.frame().ok += n;
  }

  /** Counts errored records under a status code (negative = client-side failure, api.md §3.5). */
  addError(status: number, text: string, n = 1): void {
    if (n <= 0) return;
    const message = boundMessage(text);
    const f = this.frame();
    f.errored += n;
    const e = f.errors.get(status);
    if (e) {
      e.count += n;
      e.last_message = message;
    } else f.errors.set(status, { count: n, last_message: message });
  }

  /**
   * Sums over the window. `ok` and `errored` are extrapolated to a full hour by
   * `60 / frames_filled` during the first hour, like the reference implementation.
   */
  hourly(): HourlyDiagnostics {
    this.prune(Math.floor(this.now() / MINUTE));
    let ok = 0;
    let errored = 0;
    const errors: Record<string, { count: number; last_message: string }> = {};
    for (const f of this.frames) {
      ok += f.ok;
      errored += f.errored;
      for (const [status, e] of f.errors) {
        const key = String(status);
        const prev = errors[key];
        errors[key] = { count: (prev?.count ?? 0) + e.count, last_message: e.last_message };
      }
    }
    const filled = this.frames.length;
    const scale = filled === 0 ? 0 : FRAMES / filled;
    return { ok: Math.round(ok * scale), errored: Math.round(errored * scale), errors };
  }
}
