/**
 * The state of one bucket that its parts share: name, directory, settings, size account and the
 * entry tree (entries and their implicit parents).
 */
import { mkdir } from 'node:fs/promises';
import { DATA_DIR_MODE } from './atomic-file.js';
import { Entry, SizeAccount } from './entry.js';
import { Errors } from '../protocol/errors.js';
import { validateEntryName } from '../protocol/names.js';
import type { BucketSettings, Status } from './types.js';

/** Entry names are path components: only names valid per api.md §3.7 ever reach the file system. */
export const checkEntryName = (name: string): void => validateEntryName(name, { allowMeta: true });

export class BucketData {
  readonly entries = new Map<string, Entry>();
  /** Σ payload + descriptor sizes of finished records, and payload bytes of writes in flight. */
  readonly account = new SizeAccount();
  status: Status = 'READY';

  constructor(
    public name: string,
    public dir: string,
    public settings: BucketSettings,
    public provisioned: boolean,
  ) {}

  checkReady(): void {
    if (this.status === 'DELETING') throw Errors.bucketDeleting(this.name);
  }

  /** An entry that exists and is not being deleted (404 / 409 otherwise). */
  getEntry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw Errors.entryNotFound(name, this.name);
    if (e.status === 'DELETING') throw Errors.entryDeleting(name, this.name);
    return e;
  }

  /** Finds or creates an entry and its implicit parents. */
  ensureEntry(name: string): Entry | Promise<Entry> {
    const existing = this.entries.get(name);
    if (existing) {
      if (existing.status === 'DELETING') throw Errors.entryDeleting(name, this.name);
      return existing;
    }
    return this.createEntry(name);
  }

  /** Registers an entry found on disk at start-up. */
  newEntry(name: string): Entry {
    const entry = new Entry(name, `${this.dir}/${name}`, this.account);
    this.entries.set(name, entry);
    return entry;
  }

  /** The entry `name` and every entry below it. */
  subtree(name: string): Entry[] {
    const below = name + '/';
    return [...this.entries.values()].filter((e) => e.name === name || e.name.startsWith(below));
  }

  /** Registers the parents of `name` that are missing (and `name` itself when `inclusive`). */
  addPath(name: string, inclusive: boolean): void {
    const parts = name.split('/');
    for (let i = 1; i <= (inclusive ? parts.length : parts.length - 1); i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.entries.has(p)) this.newEntry(p);
    }
  }

  /** Recounts the bucket's size from its block summaries (after recovery). */
  recount(): void {
    let s = 0;
    for (const e of this.entries.values()) s += e.size;
    this.account.bytes = s;
  }

  private async createEntry(name: string): Promise<Entry> {
    checkEntryName(name);
    await mkdir(`${this.dir}/${name}`, { recursive: true, mode: DATA_DIR_MODE });
    this.addPath(name, true);
    return this.entries.get(name)!;
  }
}
