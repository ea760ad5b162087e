/**
 * Failure log of one replication (replication.md §9): records the destination refused permanently
 * and that were skipped under `on_write_failure: "skip"`. JSON lines under
 * `<dataPath>/.ferry/failures/<name>.jsonl`, appended and fsynced before the cursor moves past the
 * record, so that nothing is ever dropped without a trace.
 */
import { open, readFile, rm, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { stringifyJson, parseJson } from '../protocol/json.js';
import type { ReplicationFailure } from '../protocol/replications.js';

/** One skipped record (wire shape declared in protocol/, shared with the SDK). */
export type FailureEntry = ReplicationFailure;

/** Most entries returned by `list()` (the newest ones). */
const LIST_LIMIT = 1000;

/** Append-only failure log file of one replication. */
export class FailureLog {
  private readonly path: string;

  constructor(
    dir: string,
    name: string,
    private readonly sync: boolean,
  ) {
    this.path = join(dir, `${name}.jsonl`);
  }

  /** Appends entries durably. */
  async append(entries: readonly FailureEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await mkdir(join(this.path, '..'), { recursive: true });
    const fh = await open(this.path, 'a', 0o600);
    try {
      await fh.writeFile(entries.map((e) => stringifyJson(e) + '\n').join(''));
      if (this.sync) await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Reads the log: total count and the newest entries (a torn last line is ignored). */
  async list(limit = LIST_LIMIT): Promise<{ total: number; failures: FailureEntry[] }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { total: 0, failures: [] };
      throw e;
    }
    const out: FailureEntry[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const e = parseJson(line) as FailureEntry;
        // u64 values come back as numbers when small: keep the wire type stable
        out.push({ ...e, ts: BigInt(e.ts), lsn: BigInt(e.lsn) });
      } catch {
        // torn tail after a crash: skip
      }
    }
    return { total: out.length, failures: out.slice(-limit) };
  }

  /** Deletes the log (replication removed). */
  async remove(): Promise<void> {
    await rm(this.path, { force: true });
  }
}
