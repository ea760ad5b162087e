/**
 * Base seeding (replication.md §3 `base`, §10; issue 11 item 5): a replication whose source and
 * destination claim to hold the same records before `base.up_to` copies nothing before it. With
 * `verify: "digest"` the claim is checked first, with the verify machinery over `[.., up_to)`
 * (verify-service.ts, against a plain ReductStore through its query API: payloads not compared),
 * while the task is held: it ships nothing, and writes arriving meanwhile wait in its log slot.
 *
 * - equal: the task is released (`clean`);
 * - different, `on_mismatch: "repair"`: what is missing or different is shipped through the
 *   replication's own target and verified again (`repaired`); extra records are never removed
 *   implicitly, they stay listed in the result; if the repair leaves differences, `mismatch`;
 * - different, `on_mismatch: "stop"`: the replication is suspended with the totals (`mismatch`);
 *   `GET …/verify` has the full result. Resuming it (`PATCH` mode) accepts the base as it is.
 *
 * A verification that cannot finish (destination down, a user's verify running) is retried with
 * backoff. The state is persisted (base-seed-store.ts): a restart in the middle checks again from
 * the start, which is safe because verifying reads only and repairs are idempotent.
 */
import type { BaseStatus } from '../protocol/replication-status.js';
import type { BaseSettings } from '../protocol/replications.js';
import type { VerifyResult } from '../protocol/verify.js';
import { backoffDelay } from './backoff.js';
import { BaseSeedStore, FINAL_BASE_STATES, newBaseStatus } from './base-seed-store.js';
import type { VerifyRequest } from './verify-service.js';

/** What the seeder needs of the replication manager. */
export interface BaseSeedHost {
  /** Holds (reason) or releases (null) the running task of `name`, if there is one. */
  hold(name: string, reason: string | null): void;
  /**
   * Suspends replication `name` with `reason`, durably, unless `current()` says the check is no
   * longer about its base (serialised with the manager's changes of definitions).
   */
  suspend(name: string, reason: string, current: () => boolean): Promise<void>;
  /** The status of `name` changed (events stream). */
  changed(name: string): void;
}

/** Runs verifications (VerifyService). */
export interface BaseVerifier {
  run(name: string, req: VerifyRequest, purpose?: 'base'): Promise<VerifyResult>;
}

/** Retry of a verification that could not finish. */
const RETRY = { initial_ms: 1000, max_ms: 30_000, max_outage_ms: 0 };

const totalsOf = (r: VerifyResult): NonNullable<BaseStatus['totals']> => ({
  missing: r.totals.missing,
  extra: r.totals.extra,
  different: r.totals.different,
  source_records: r.totals.source_records,
});

/** Checks the `base` claims of every replication that has one. */
export class BaseSeeder {
  private readonly states = new Map<string, BaseStatus>();
  /** Bumped whenever a replication's base changes or it is removed: older checks stop. */
  private readonly generations = new Map<string, number>();
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private closed = false;

  constructor(
    private readonly store: BaseSeedStore,
    private readonly verifier: BaseVerifier,
    private readonly host: BaseSeedHost,
  ) {}

  /** Loads the persisted state of `name` (before its task starts: see `holdReason`). */
  async load(name: string, base: BaseSettings | undefined): Promise<void> {
    if (!base) {
      this.states.delete(name);
      return;
    }
    this.states.set(name, await this.store.load(name, base));
  }

  /**
   * A created replication, or a PUT: a new or changed base is checked again from the start; an
   * unchanged one keeps its state; none forgets it.
   */
  async reset(name: string, base: BaseSettings | undefined): Promise<void> {
    this.bump(name);
    if (!base) {
      this.states.delete(name);
      await this.store.remove(name);
      return;
    }
    const st = newBaseStatus(base);
    this.states.set(name, st);
    await this.store.save(name, st);
  }

  /** The replication was removed. */
  async forget(name: string): Promise<void> {
    this.bump(name);
    this.states.delete(name);
    await this.store.remove(name);
  }

  /** Why the task of `name` may not ship yet, or null. */
  holdReason(name: string): string | null {
    const st = this.states.get(name);
    if (!st || FINAL_BASE_STATES.has(st.state)) return null;
    const what = `base up to ${st.up_to}`;
    if (st.state === 'repairing') return `repairing the destination's ${what} before streaming`;
    if (st.last_error !== null)
      return `verifying the ${what} (attempt ${st.attempts} failed, retrying: ${st.last_error})`;
    return `verifying the ${what} before streaming`;
  }

  /** The `base` object of the status of `name` (undefined without a base). */
  status(name: string): BaseStatus | undefined {
    const st = this.states.get(name);
    return st ? { ...st } : undefined;
  }

  /** Starts checking the base of `name` unless it is settled. */
  start(name: string): void {
    const st = this.states.get(name);
    if (!st || FINAL_BASE_STATES.has(st.state) || this.closed) return;
    const gen = this.bump(name);
    void this.check(name, gen).catch((e: unknown) => {
      // the state stays unsettled and the task held; the next start (a restart) tries again
      const cur = this.states.get(name);
      if (cur && this.generations.get(name) === gen) cur.last_error = (e as Error)?.message ?? String(e);
    });
  }

  /** Stops retrying (the manager closes). */
  close(): void {
    this.closed = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.resolve();
    }
    this.timers.clear();
  }

  private bump(name: string): number {
    const gen = (this.generations.get(name) ?? 0) + 1;
    this.generations.set(name, gen);
    return gen;
  }

  private async check(name: string, gen: number): Promise<void> {
    const live = (): boolean => !this.closed && this.generations.get(name) === gen;
    for (let failures = 0; live(); failures++) {
      const st = this.states.get(name)!;
      const upTo = st.up_to;
      st.state = 'verifying';
      st.attempts++;
      // what an earlier attempt (cut off by a crash, or failed) found no longer describes this one
      st.before_repair = null;
      st.repair = null;
      await this.publish(name, st);
      let result = await this.verify(name, upTo, false);
      if (!live()) return;
      if (result.outcome === 'differences' && st.on_mismatch === 'repair') {
        st.state = 'repairing';
        st.before_repair = {
          missing: result.totals.missing,
          extra: result.totals.extra,
          different: result.totals.different,
        };
        await this.publish(name, st);
        result = await this.verify(name, upTo, true);
        if (!live()) return;
      }
      if (result.outcome === 'failed') {
        st.last_error = result.error ?? 'verification failed';
        st.state = 'pending';
        await this.publish(name, st);
        await this.sleep(backoffDelay(RETRY, failures + 1));
        continue;
      }
      await this.settle(name, st, result, live);
      return;
    }
  }

  /** One verification of `[.., upTo)`; one that could not start (a user's verify runs) failed. */
  private async verify(
    name: string,
    upTo: bigint,
    repair: boolean,
  ): Promise<VerifyResult | { outcome: 'failed'; error: string }> {
    try {
      return await this.verifier.run(name, { stop: upTo, repair, remove_extra: false }, 'base');
    } catch (e) {
      return { outcome: 'failed', error: (e as Error)?.message ?? String(e) };
    }
  }

  /** Records the outcome of a finished verification and releases (or suspends) the task. */
  private async settle(
    name: string,
    st: BaseStatus,
    result: VerifyResult,
    live: () => boolean,
  ): Promise<void> {
    st.totals = totalsOf(result);
    st.payloads_compared = result.payloads_compared;
    st.last_error = null;
    if (result.repair) {
      st.repair = {
        written: result.repair.written,
        relabelled: result.repair.relabelled,
        failed: result.repair.failed,
      };
    }
    const t = st.totals;
    const fixed =
      result.repair !== null && t.missing === 0 && t.different === 0 && result.repair.failed === 0;
    if (result.outcome === 'clean' || fixed) {
      st.state = result.repair ? 'repaired' : 'clean';
      st.verified = true;
    } else {
      st.state = 'mismatch';
      const what = `${t.missing} missing, ${t.extra} extra, ${t.different} different`;
      st.last_error =
        result.repair === null
          ? `the destination does not hold the same records before base.up_to ${st.up_to}: ${what} (see GET …/verify); resume the replication to accept the base as it is, or repair it with POST …/verify?repair=true first`
          : `a repair of the base up to ${st.up_to} left differences: ${what}, ${result.repair.failed} records failed (see GET …/verify)`;
      // suspended durably before the state says so: a crash in between checks again
      await this.host.suspend(name, `Base claim refused: ${st.last_error}`, live);
      if (!live()) return;
    }
    st.finished_at = new Date().toISOString();
    await this.publish(name, st);
  }

  /**
   * Tells the task (held while unsettled), persists the state, tells the listeners. The task first,
   * so that its state reason never lags what `status` shows; a release persisted late is safe (a
   * crash before the write checks the base again).
   */
  private async publish(name: string, st: BaseStatus): Promise<void> {
    this.host.hold(name, this.holdReason(name));
    await this.store.save(name, st);
    this.host.changed(name);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = {
        timer: setTimeout(() => {
          this.timers.delete(t);
          resolve();
        }, ms),
        resolve,
      };
      t.timer.unref();
      this.timers.add(t);
    });
  }
}
