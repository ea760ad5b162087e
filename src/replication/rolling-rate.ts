/**
 * Average rates over fixed windows (the last 10 s, the last minute) from samples of cumulative
 * counters. Sampling is the caller's: the replication monitor adds one sample per second, and a
 * query adds the present value without storing it, so a rate is fresh however old the last
 * sample is. A counter that goes down (a replication recreated, counters reset) starts over.
 */
import type { Rate } from '../protocol/replication-status.js';

/** One sample: time (ms) and cumulative records and bytes. */
export interface CounterSample {
  at: number;
  records: number;
  bytes: number;
}

/** Samples of one pair of counters over the longest window asked for. */
export class RollingRate {
  private readonly samples: CounterSample[] = [];

  /** @param horizonMs how far back samples are kept (the longest window). */
  constructor(private readonly horizonMs: number) {}

  /** Adds a sample (samples must come in time order). */
  add(sample: CounterSample): void {
    const last = this.samples[this.samples.length - 1];
    if (last && (sample.records < last.records || sample.bytes < last.bytes)) this.samples.length = 0;
    if (last && sample.at <= last.at) this.samples.pop();
    this.samples.push(sample);
    // keep one sample at or before the horizon, so a full window always has a left edge
    const cut = sample.at - this.horizonMs;
    while (this.samples.length > 2 && this.samples[1]!.at <= cut) this.samples.shift();
  }

  /**
   * Average rate over the last `windowMs` up to `now` (the present counter values). With less
   * history than the window the average covers what there is; with none it is 0.
   */
  rate(windowMs: number, now: CounterSample): Rate {
    const from = now.at - windowMs;
    let edge: CounterSample | undefined;
    // the latest sample at or before the window's start, else the oldest one inside it
    for (const s of this.samples) {
      if (s.at >= now.at) break;
      if (s.records > now.records || s.bytes > now.bytes) {
        edge = undefined; // the counters were reset after this sample
        continue;
      }
      if (edge === undefined || s.at <= from) edge = s;
      else break;
    }
    if (!edge || now.at <= edge.at) return { records_per_sec: 0, bytes_per_sec: 0 };
    const dt = (now.at - edge.at) / 1000;
    return {
      records_per_sec: round((now.records - edge.records) / dt),
      bytes_per_sec: round((now.bytes - edge.bytes) / dt),
    };
  }
}

/** Two decimals are plenty for a rate and keep the JSON short. */
const round = (v: number): number => Math.round(v * 100) / 100;
