/**
 * Health of a remote from its probes (replication.md §5): `unknown` until the first probe ends,
 * `down` while the last probe failed, `degraded` when the last one succeeded but slowly (round trip
 * at least half the request timeout) or one of the four before it failed (a flapping link), `up`
 * otherwise.
 */
import type { RemoteState } from '../protocol/remotes.js';

/** Outcome of one probe. */
export type ProbeOutcome =
  | { ok: true; rttMs: number; instanceId: string | null; version: string | null }
  | { ok: false; message: string };

/** Probes kept to tell a flapping link from a healthy one. */
const HISTORY = 5;

/** The probe history of one remote. */
export class RemoteHealth {
  state: RemoteState = 'unknown';
  rttMs: number | null = null;
  instanceId: string | null = null;
  version: string | null = null;
  lastProbeAt: number | null = null;
  lastOkAt: number | null = null;
  lastError: { message: string; at: number } | null = null;
  private readonly history: boolean[] = [];

  constructor(private readonly slowMs: number) {}

  /** Takes the outcome of a probe that ended at `at`. */
  record(outcome: ProbeOutcome, at: number): void {
    this.lastProbeAt = at;
    this.history.push(outcome.ok);
    if (this.history.length > HISTORY) this.history.shift();
    if (!outcome.ok) {
      this.state = 'down';
      this.lastError = { message: outcome.message, at };
      return;
    }
    this.lastOkAt = at;
    this.rttMs = outcome.rttMs;
    this.instanceId = outcome.instanceId;
    this.version = outcome.version;
    const flapping = this.history.slice(0, -1).some((ok) => !ok);
    this.state = flapping || outcome.rttMs >= this.slowMs ? 'degraded' : 'up';
  }

  /** A failure seen outside a probe (a replication's connection refused by the identity check). */
  noteError(message: string, at: number): void {
    this.lastError = { message, at };
  }
}
