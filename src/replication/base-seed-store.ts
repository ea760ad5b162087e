/**
 * Where each replication's `base` claim stands (base-seed.ts), persisted in
 * `.ferry/verify/<name>.base.json` so that a restart knows whether the replication may ship: a
 * state that is not final (the process died while verifying) is checked again from the start.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson, stringifyJson } from '../protocol/json.js';
import type { BaseStatus } from '../protocol/replication-status.js';
import type { BaseSettings } from '../protocol/replications.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import { onMismatchOf, sameBase } from './base-settings.js';

/** States after which the replication ships (or stays suspended by the user's choice). */
export const FINAL_BASE_STATES: ReadonlySet<BaseStatus['state']> = new Set([
  'clean',
  'repaired',
  'trusted',
  'mismatch',
]);

/** A fresh status for `base`: nothing checked yet (a trusted base is final at once). */
export function newBaseStatus(base: BaseSettings): BaseStatus {
  const trusted = base.verify === 'trust';
  const now = new Date().toISOString();
  return {
    up_to: BigInt(base.up_to),
    verify: base.verify,
    on_mismatch: onMismatchOf(base),
    state: trusted ? 'trusted' : 'pending',
    verified: false,
    payloads_compared: null,
    attempts: 0,
    started_at: trusted ? null : now,
    finished_at: trusted ? now : null,
    totals: null,
    before_repair: null,
    repair: null,
    last_error: null,
  };
}

/** The persisted base states of one data directory. */
export class BaseSeedStore {
  private readonly dir: string;

  constructor(
    dataPath: string,
    private readonly sync: boolean,
  ) {
    this.dir = join(dataPath, '.ferry', 'verify');
  }

  private file(name: string): string {
    return join(this.dir, `${name}.base.json`);
  }

  /**
   * The stored status of `name` if it is about `base`; otherwise (none stored, or stored for an
   * other base) a fresh one. A stored state that is not final restarts as `pending`.
   */
  async load(name: string, base: BaseSettings): Promise<BaseStatus> {
    let stored: BaseStatus | undefined;
    try {
      stored = parseJson(await readFile(this.file(name), 'utf8')) as BaseStatus;
    } catch {
      stored = undefined;
    }
    const claim: BaseSettings = stored
      ? {
          up_to: stored.up_to,
          verify: stored.verify,
          ...(stored.on_mismatch ? { on_mismatch: stored.on_mismatch } : {}),
        }
      : base;
    if (!stored || !sameBase(claim, base)) return newBaseStatus(base);
    if (!FINAL_BASE_STATES.has(stored.state)) stored.state = 'pending';
    return stored;
  }

  async save(name: string, status: BaseStatus): Promise<void> {
    // writeFileAtomic creates the directory
    await writeFileAtomic(this.file(name), stringifyJson(status), { noSync: !this.sync });
  }

  async remove(name: string): Promise<void> {
    await rm(this.file(name), { force: true });
  }
}
