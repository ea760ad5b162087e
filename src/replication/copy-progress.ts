/**
 * Progress figures of a copy (replication.md §6): done and total, percent, rate and time left.
 * A pure function of the copy's state, where this run started and the clock, so that it can be
 * tested with any clock and read without side effects.
 */
import type { CopyProgress } from '../protocol/replication-status.js';
import type { CopyAmount, CopyState } from './scan-source.js';

/** Where this run of a copy started: time (ms) and what was done then. */
export interface CopyRunStart extends CopyAmount {
  at: number;
}

/** The progress object of the status route. */
export function copyProgress(state: CopyState, run: CopyRunStart, now: number): CopyProgress {
  const done = state.done;
  // writes that arrived in the copied range after counting may push done past the count
  const total = state.total
    ? { records: Math.max(state.total.records, done.records), bytes: Math.max(state.total.bytes, done.bytes) }
    : null;
  const finished = state.completed_at !== null;
  const seconds = (now - run.at) / 1000;
  const recordsPerSec = seconds > 0 ? Math.max(0, (done.records - run.records) / seconds) : 0;
  const bytesPerSec = seconds > 0 ? Math.max(0, (done.bytes - run.bytes) / seconds) : 0;
  let percent: number | null = null;
  if (finished) percent = 100;
  else if (total) percent = total.records === 0 ? 100 : Math.min(100, (100 * done.records) / total.records);
  let eta: number | null = null;
  if (finished) eta = 0;
  else if (total && recordsPerSec > 0) eta = Math.ceil((total.records - done.records) / recordsPerSec);
  return {
    records_done: done.records,
    bytes_done: done.bytes,
    records_total: total ? total.records : null,
    bytes_total: total ? total.bytes : null,
    percent: percent === null ? null : Math.round(percent * 100) / 100,
    records_per_sec: Math.round(recordsPerSec),
    bytes_per_sec: Math.round(bytesPerSec),
    eta_seconds: eta,
    entries_total: state.entries.length,
    entries_done: state.entries.reduce((n, e) => n + (e.done ? 1 : 0), 0),
  };
}
