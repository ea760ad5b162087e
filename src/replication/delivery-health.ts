/**
 * How a replication's deliveries are going (replication.md §3 `retry`, §9): the last error, the
 * scheduled retry with its backoff, the outage and its bound (`max_outage_ms`), a suspension
 * (permanent refusal; resumed only by the user) and whether the last contact worked
 * (`is_active`). Plain state and rules on an injected clock: the task and the pipeline report
 * outcomes, the status reads it, and every change of a retry or suspension is reported to the
 * state machine as its event (state-machine.ts).
 */
import { backoffDelay } from './backoff.js';
import type { Clock } from './clock.js';
import type { RetrySettings } from './settings.js';
import type { StateEvent } from './state-machine.js';
import { boundMessage, type TargetFailure } from './target.js';

/** The last error as status shows it. */
export interface LastError {
  status: number;
  message: string;
  at: number;
}

/** Failures, retries and suspension of one replication. */
export class DeliveryHealth {
  /** When the next attempt is due (null = none scheduled). */
  retryAt: number | null = null;
  retries = 0;
  consecutiveFailures = 0;
  lastError: LastError | null = null;
  /** Why the replication is suspended (null = not suspended); persisted. */
  suspendedReason: string | null = null;
  /** The last contact with the destination succeeded. */
  contactOk = true;
  private outageStart: number | null = null;
  private resumedDue = false;

  constructor(
    private readonly clock: Clock,
    /** Receives the state events of each change, those of one change at once. */
    private readonly report: (...events: StateEvent[]) => void = () => undefined,
  ) {}

  /**
   * A temporary failure: schedules the retry with backoff. Returns the suspension reason when the
   * destination has been unavailable for longer than `max_outage_ms` (the caller suspends).
   */
  failed(err: TargetFailure, retry: RetrySettings): string | null {
    const now = this.clock.now();
    this.contactOk = false;
    this.retries++;
    this.consecutiveFailures++;
    this.outageStart ??= now;
    this.lastError = { status: err.status, message: boundMessage(err.message), at: now };
    const maxOutage = retry.max_outage_ms;
    if (maxOutage > 0 && now - this.outageStart >= maxOutage)
      return `Destination unavailable for more than ${maxOutage} ms: ${err.message}`;
    this.resumedDue = false;
    this.retryAt = now + backoffDelay(retry, this.consecutiveFailures, err.retryAfterMs);
    this.report({ kind: 'retry_scheduled', error: this.lastError!.message });
    return null;
  }

  /** Records an error without scheduling anything (e.g. a checkpoint write failed). */
  note(status: number, message: string): void {
    this.lastError = { status, message: boundMessage(message), at: this.clock.now() };
    // a scheduled retry shows the last error
    if (this.retryAt !== null) this.report({ kind: 'retry_scheduled', error: this.lastError.message });
  }

  /** Suspends with `text` as the reason (bounded); returns the reason. */
  suspend(text: string): string {
    const reason = boundMessage(text);
    this.suspendedReason = reason;
    this.lastError = { status: this.lastError?.status ?? -1, message: reason, at: this.clock.now() };
    this.retryAt = null;
    this.report({ kind: 'suspended', reason });
    return reason;
  }

  /** The scheduled retry is made: the destination answered, deliveries go on. */
  retryMade(): void {
    this.retryAt = null;
    this.resumedDue = false;
    this.report({ kind: 'retry_made' });
  }

  /**
   * Clears a suspension (PATCH mode / PUT) and makes a retry due at once; a scheduled retry is made
   * due at once too. A healthy replication has nothing to resume: it stays as it is (a retry
   * scheduled then would show it `retrying` with no error until the next turn).
   */
  resume(): void {
    if (this.suspendedReason === null && this.retryAt === null) return;
    // a retry a failure scheduled stays shown; one a resume made due has not failed (yet)
    const retrying = this.retryAt !== null && !this.resumedDue;
    this.resumedDue = !retrying;
    this.suspendedReason = null;
    this.retryAt = this.clock.now();
    this.outageStart = null;
    this.consecutiveFailures = 0;
    // a resumed suspension has not failed again yet: only a retry that was scheduled stays shown
    this.report(
      { kind: 'resumed' },
      ...(retrying ? [{ kind: 'retry_scheduled' as const, error: this.lastError?.message ?? null }] : []),
    );
  }

  /** Windows were delivered; `clean`: nothing else failed meanwhile (the outage is over). */
  delivered(clean: boolean): void {
    this.contactOk = true;
    if (!clean) return;
    this.consecutiveFailures = 0;
    this.outageStart = null;
  }

  /** Milliseconds until the scheduled retry (0 when due; undefined when none is scheduled). */
  retryIn(): number | undefined {
    return this.retryAt === null ? undefined : Math.max(0, this.retryAt - this.clock.now());
  }
}
