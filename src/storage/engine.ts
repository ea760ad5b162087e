/**
 * The storage engine: wires the parts of storage together and implements the `Storage` contract.
 *
 * Layers, top down: bucket catalogue → bucket (record writer, quota) → descriptor cache and block
 * files → group commit → WAL. Checkpoints, replication slots and the change log sit beside the
 * group commit and hear of each durable group. Recovery runs once, at open.
 *
 * Durability model: a record's payload is written to its block file, then the group commit
 * fdatasyncs every block file touched by the group, appends the group's WAL frames and fdatasyncs
 * the WAL once, and only then answers the writers. After a crash the WAL is replayed from the last
 * checkpoint; a torn WAL tail belongs to writes that were never acknowledged and is cut.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DATA_DIR_MODE, writeFileAtomic } from './atomic-file.js';
import { BlockCompression } from './block-compression.js';
import { PayloadJournal } from './payload-journal.js';
import { BlockFiles } from './block-files.js';
import { BucketCatalogue } from './bucket-catalogue.js';
import type { BucketServices } from './bucket-services.js';
import { WalChangeLog } from './change-log.js';
import { Checkpointer } from './checkpointer.js';
import { DataLock } from './data-lock.js';
import { DescriptorCache } from './descriptor-cache.js';
import { RangeDigester } from './range-digest.js';
import { DigestPool, offloadWhenWorthIt } from './digest-pool.js';
import { GroupCommit } from './group-commit.js';
import { Recovery } from './recovery.js';
import { ReplicationSlots } from './replication-slots.js';
import { ShipmentApplier, ShipmentPositions } from './shipment-apply.js';
import { Wal, type WalOp } from './wal.js';
import { groupToCut } from './last-group.js';
import type { Entry } from './entry.js';
import type {
  Bucket,
  BucketInfo,
  BucketSettings,
  BucketSettingsPatch,
  ChangeLog,
  CreateBucketOptions,
  Shipment,
  ShipmentOutcome,
  Storage,
  StorageHealth,
  StorageOptions,
} from './types.js';

const BUILTIN_DEFAULTS: BucketSettings = {
  quota_type: 'NONE',
  quota_size: 0n,
  max_block_size: 64_000_000n,
  max_block_records: 1024n,
};

/** Opens (or creates) a data directory. */
export async function openStorage(opts: StorageOptions): Promise<Storage> {
  const root = opts.dataPath;
  const metaDir = join(root, '.ferry');
  await mkdir(metaDir, { recursive: true, mode: DATA_DIR_MODE });
  // Before anything is read or written: the WAL is cut and truncated only by its one owner.
  const lock = await DataLock.acquire(root, metaDir);
  try {
    return await openLocked(opts, lock);
  } catch (e) {
    await lock.release();
    throw e;
  }
}

async function openLocked(opts: StorageOptions, lock: DataLock): Promise<Storage> {
  const sync = (opts.durability ?? 'fsync') === 'fsync';
  const root = opts.dataPath;
  const bucketsDir = join(root, 'buckets');
  const metaDir = join(root, '.ferry');
  await mkdir(bucketsDir, { recursive: true, mode: DATA_DIR_MODE });
  await mkdir(join(root, 'wal'), { recursive: true, mode: DATA_DIR_MODE });
  // Directories made by earlier versions (0755): closing them closes every file inside.
  for (const d of [metaDir, bucketsDir, join(root, 'wal')]) await chmod(d, DATA_DIR_MODE);
  const instanceId = await loadInstanceId(metaDir, sync);
  const slots = new ReplicationSlots(metaDir, sync);
  await slots.load();
  // before the WAL's last groups are checked: their payloads may be in the journal only
  const journal = sync ? await PayloadJournal.open(join(root, 'journal'), root) : undefined;
  const ops: WalOp[] = [];
  const wal = await Wal.open(
    join(root, 'wal'),
    sync,
    await readCheckpointLsn(root),
    (op) => ops.push(op),
    opts.walSegmentBytes,
    opts.faults,
  );
  const log = opts.log ?? ((line: string): void => console.error(line));
  // the last groups in log order: the first incomplete one is cut with everything after it
  const groups = wal.lastGroups();
  const starts: number[] = [];
  for (const g of groups) {
    const from = ops.findIndex((op) => op.lsn >= g.lsn);
    if (from < 0) break;
    starts.push(from);
  }
  const cut = await groupToCut(ops, starts, bucketsDir);
  if (cut) {
    const last = groups[cut.group]!;
    await wal.cut(last);
    ops.length = starts[cut.group]!;
    log(
      `storage: the last WAL group (LSN ${last.lsn} on) was cut short by a crash, none of it had been acknowledged; dropped (${cut.problem})`,
    );
  }
  wal.keepTail(slots.size > 0);
  const files = new BlockFiles(opts.faults, journal);
  const cache = new DescriptorCache(opts.descriptorBudget);
  const commits = new GroupCommit(wal, files, sync, opts.faults);
  // Slots count a group's writes before the change log tells replication about them.
  commits.onDurable((group) => slots.onDurable(group));
  const changes = new WalChangeLog(wal, commits, slots);
  const positions = new ShipmentPositions(metaDir, sync);
  await positions.load();
  positions.replayed(ops);
  const checkpoints = new Checkpointer({
    root,
    sync,
    wal,
    commits,
    slots,
    cache,
    entries: (): Iterable<Entry> => catalogue.entries(),
    log,
    persistAlso: () => positions.persist(),
    faults: opts.faults,
  });
  const ranges = new RangeDigester(cache);
  const compression = new BlockCompression(files, sync);
  const services = {
    files,
    digests: new DigestPool(offloadWhenWorthIt()),
    cache,
    commits,
    slots,
    checkpoints,
    ranges,
    compression,
  };
  const catalogue = new BucketCatalogue(
    bucketsDir,
    { ...BUILTIN_DEFAULTS, ...(opts.defaults ?? {}) },
    sync,
    services,
  );
  await catalogue.load();
  await new Recovery(catalogue, cache, files).run(ops);
  await compression.reconcile(catalogue.entries());
  await slots.rebuildAll(wal);
  if (ops.length > 0) await checkpoints.checkpoint();
  checkpoints.start(opts.checkpointIntervalMs ?? 30_000);
  const shipments = new ShipmentApplier(catalogue, cache, commits, positions);
  return new Engine(instanceId, catalogue, changes, services, wal, sync, lock, shipments, positions);
}

async function loadInstanceId(metaDir: string, sync: boolean): Promise<string> {
  const p = join(metaDir, 'instance-id');
  try {
    const id = (await readFile(p, 'utf8')).trim();
    if (id) return id;
  } catch {
    /* first start */
  }
  const id = randomUUID();
  await writeFileAtomic(p, id + '\n', { noSync: !sync });
  return id;
}

async function readCheckpointLsn(root: string): Promise<bigint> {
  try {
    return BigInt((await readFile(join(root, 'wal', 'checkpoint'), 'utf8')).trim());
  } catch {
    return 0n;
  }
}

class Engine implements Storage {
  private closed = false;

  constructor(
    readonly instanceId: string,
    private readonly catalogue: BucketCatalogue,
    readonly changes: ChangeLog,
    private readonly services: BucketServices & { slots: ReplicationSlots },
    private readonly wal: Wal,
    private readonly sync: boolean,
    private readonly lock: DataLock,
    private readonly shipments: ShipmentApplier,
    private readonly positions: ShipmentPositions,
  ) {}

  applyShipment(shipment: Shipment): Promise<ShipmentOutcome> {
    return this.shipments.apply(shipment);
  }

  shipmentPosition(key: string): bigint {
    return this.positions.get(key);
  }

  listBuckets(): BucketInfo[] {
    return this.catalogue.list();
  }

  bucket(name: string): Bucket {
    return this.catalogue.get(name);
  }

  hasBucket(name: string): boolean {
    return this.catalogue.has(name);
  }

  defaultSettings(): BucketSettings {
    return this.catalogue.defaultSettings();
  }

  createBucket(name: string, patch?: BucketSettingsPatch, opts?: CreateBucketOptions): Promise<Bucket> {
    return this.catalogue.create(name, patch, opts);
  }

  updateBucketSettings(name: string, patch: BucketSettingsPatch): Promise<void> {
    return this.catalogue.updateSettings(name, patch);
  }

  removeBucket(name: string): Promise<void> {
    return this.catalogue.remove(name);
  }

  renameBucket(name: string, newName: string): Promise<void> {
    return this.catalogue.rename(name, newName);
  }

  usage(): { usage: bigint; oldest_record: bigint; latest_record: bigint } {
    return this.catalogue.usage();
  }

  /** Runs a checkpoint now (tests; the engine checkpoints by itself). */
  checkpoint(): Promise<void> {
    return this.services.checkpoints.checkpoint();
  }

  health(): StorageHealth {
    return this.services.checkpoints.health();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { commits, checkpoints, slots, files, digests, compression } = this.services;
    await commits.close();
    checkpoints.stop();
    slots.stop();
    const checkpointed = await checkpoints.checkpoint().then(
      () => true,
      () => false,
    );
    await slots.persist().catch(() => {});
    // A server whose lock was taken from it (its lock file removed by hand and another server
    // started) must not delete segments the other one needs.
    if (checkpointed && (await this.lock.held())) {
      // Nothing left to replay: the next start scans no WAL. After a failed checkpoint the WAL
      // keeps everything since the last good one.
      await this.wal.rotateIfUsed().catch(() => {});
      await this.wal.truncateUpTo(slots.retainFrom(commits.lastLsn())).catch(() => {});
    }
    await compression.close();
    await files.closeAll(this.sync);
    await this.wal.close();
    await digests.close();
    await this.lock.release();
  }
}
