/**
 * The bucket catalogue: which buckets exist, their settings (`buckets/<name>/settings.json`), and
 * creation, settings changes, removal and renaming of whole buckets.
 */
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DATA_DIR_MODE, writeFileAtomic } from './atomic-file.js';
import { loadEntryIndex } from './block.js';
import { BucketImpl } from './bucket.js';
import type { BucketServices } from './bucket-services.js';
import type { Entry } from './entry.js';
import { OpType } from './wal.js';
import { parseBucketSettings } from '../protocol/bucket-settings.js';
import { Errors } from '../protocol/errors.js';
import { validateBucketName } from '../protocol/names.js';
import type {
  Bucket,
  BucketInfo,
  BucketSettings,
  BucketSettingsPatch,
  CreateBucketOptions,
  QuotaType,
} from './types.js';

export class BucketCatalogue {
  private buckets = new Map<string, BucketImpl>();

  constructor(
    private readonly bucketsDir: string,
    private readonly defaults: BucketSettings,
    private readonly sync: boolean,
    private readonly services: BucketServices,
  ) {}

  /** Reads every bucket's settings and block summaries (never descriptors) from disk. */
  async load(): Promise<void> {
    for (const name of await readdir(this.bucketsDir)) {
      const dir = join(this.bucketsDir, name);
      if (name.startsWith('.')) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      let conf: { settings: Record<string, string>; provisioned: boolean; deleting?: boolean };
      try {
        conf = JSON.parse(await readFile(join(dir, 'settings.json'), 'utf8'));
      } catch {
        continue;
      }
      if (conf.deleting) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const settings: BucketSettings = {
        quota_type: conf.settings.quota_type as QuotaType,
        quota_size: BigInt(conf.settings.quota_size!),
        max_block_size: BigInt(conf.settings.max_block_size!),
        max_block_records: BigInt(conf.settings.max_block_records!),
      };
      const bucket = new BucketImpl(name, dir, settings, conf.provisioned, this.services);
      await this.loadEntries(bucket, dir, '');
      this.buckets.set(name, bucket);
    }
  }

  private async loadEntries(bucket: BucketImpl, dir: string, prefix: string): Promise<void> {
    for (const it of await readdir(dir, { withFileTypes: true })) {
      if (!it.isDirectory()) continue;
      const name = prefix ? `${prefix}/${it.name}` : it.name;
      const entryDir = join(dir, it.name);
      bucket.data.newEntry(name).blocks = (await loadEntryIndex(join(entryDir, 'index.bin'))) ?? [];
      await this.loadEntries(bucket, entryDir, name);
    }
  }

  /** A bucket whatever its status (recovery), or undefined. */
  find(name: string): BucketImpl | undefined {
    return this.buckets.get(name);
  }

  /** Forgets a bucket (its removal was replayed). */
  forget(name: string): void {
    this.buckets.delete(name);
  }

  all(): IterableIterator<BucketImpl> {
    return this.buckets.values();
  }

  /** Every entry of every bucket (checkpoints). */
  /** Entries of the buckets that are not being deleted (a checkpoint writes nothing of those). */
  *entries(): Iterable<Entry> {
    for (const b of this.buckets.values()) if (b.data.status !== 'DELETING') yield* b.data.entries.values();
  }

  list(): BucketInfo[] {
    return [...this.buckets.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((b) => b.info());
  }

  get(name: string): BucketImpl {
    const b = this.buckets.get(name);
    if (!b) throw Errors.bucketNotFound(name);
    b.checkReady();
    return b;
  }

  has(name: string): boolean {
    return this.buckets.has(name);
  }

  defaultSettings(): BucketSettings {
    return { ...this.defaults };
  }

  async create(name: string, patch?: BucketSettingsPatch, opts: CreateBucketOptions = {}): Promise<Bucket> {
    if (name !== '$system') validateBucketName(name);
    const existing = this.buckets.get(name);
    if (existing) {
      if (existing.status === 'DELETING') throw Errors.bucketDeleting(name);
      if (!opts.provisioned) throw Errors.bucketExists(name);
      // Provisioning is re-applied at every start.
      existing.data.settings = resolveSettings(this.defaults, patch);
      existing.data.provisioned = true;
      await this.saveSettings(existing);
      return existing;
    }
    const settings = resolveSettings(this.defaults, patch);
    const dir = join(this.bucketsDir, name);
    await mkdir(dir, { recursive: true, mode: DATA_DIR_MODE });
    const b = new BucketImpl(name, dir, settings, !!opts.provisioned, this.services);
    await this.saveSettings(b);
    this.buckets.set(name, b);
    return b;
  }

  async updateSettings(name: string, patch: BucketSettingsPatch): Promise<void> {
    const b = this.get(name);
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    b.data.settings = resolveSettings(b.data.settings, patch);
    await this.saveSettings(b);
  }

  async remove(name: string): Promise<void> {
    const b = this.get(name);
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    b.data.status = 'DELETING';
    try {
      await this.services.commits.commit({
        type: OpType.RemoveBucket,
        lsn: 0n,
        time: Date.now(),
        bucket: name,
      });
    } catch (e) {
      b.data.status = 'READY';
      throw e;
    }
    await this.saveSettings(b, { deleting: true });
    void (async () => {
      try {
        await this.services.files.forget(b.data.dir);
        const trash = join(this.bucketsDir, `.trash-${name}-${Date.now()}`);
        await rename(b.data.dir, trash);
        await rm(trash, { recursive: true, force: true });
      } catch {
        // what is left is removed again when the removal is replayed or the trash swept
      }
      // The name is free again only once a checkpoint is past the removal: a crash before it
      // replays the removal, which would delete the files of a bucket made anew under the name.
      await this.services.checkpoints.request().catch(() => {});
      this.buckets.delete(name);
    })();
  }

  async rename(name: string, newName: string): Promise<void> {
    const b = this.get(name);
    if (b.provisioned) throw Errors.bucketProvisioned(name);
    validateBucketName(newName);
    if (this.buckets.has(newName)) throw Errors.bucketExists(newName);
    await b.exclusiveOp(async () => {
      if (this.buckets.has(newName)) throw Errors.bucketExists(newName);
      const checkpoints = this.services.checkpoints;
      await checkpoints.checkpoint();
      await this.services.files.forget(b.data.dir);
      const newDir = join(this.bucketsDir, newName);
      await rename(b.data.dir, newDir);
      this.buckets.delete(name);
      b.data.name = newName;
      b.data.dir = newDir;
      for (const e of b.data.entries.values()) e.dir = `${newDir}/${e.name}`;
      this.buckets.set(newName, b);
      await checkpoints.checkpoint();
    });
  }

  usage(): { usage: bigint; oldest_record: bigint; latest_record: bigint } {
    let usage = 0n;
    let oldest = 0n;
    let latest = 0n;
    let first = true;
    for (const b of this.buckets.values()) {
      const i = b.info();
      usage += i.size;
      if (first || i.oldest_record < oldest) oldest = i.oldest_record;
      if (i.latest_record > latest) latest = i.latest_record;
      first = false;
    }
    return { usage, oldest_record: oldest, latest_record: latest };
  }

  private async saveSettings(b: BucketImpl, extra: { deleting?: boolean } = {}): Promise<void> {
    const s = b.data.settings;
    const conf = {
      settings: {
        quota_type: s.quota_type,
        quota_size: s.quota_size.toString(),
        max_block_size: s.max_block_size.toString(),
        max_block_records: s.max_block_records.toString(),
      },
      provisioned: b.provisioned,
      ...extra,
    };
    await writeFileAtomic(join(b.data.dir, 'settings.json'), JSON.stringify(conf), { noSync: !this.sync });
  }
}

/** Applies a settings patch, checked by the one bucket-settings parser (422 for invalid values). */
export function resolveSettings(
  base: BucketSettings,
  patch: BucketSettingsPatch | undefined,
): BucketSettings {
  // the parser leaves out every field that is missing or null, so what it returns overrides `base`
  return { ...base, ...parseBucketSettings(patch) } as BucketSettings;
}
