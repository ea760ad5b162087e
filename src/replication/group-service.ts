/**
 * Consistency groups (replication.md §8): named sets of buckets that replicate as one unit. A
 * bucket belongs to at most one group. Definitions live in `<dataPath>/.ferry/groups.json`
 * (replaced atomically, mode 0600) and `FERRY_GROUP_<ID>_*` provisions groups at every start.
 * Takes and returns wire-shaped JSON values and throws FerryError; `src/http` maps routes onto it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProvisionedGroup } from '../config/types.js';
import { Errors } from '../protocol/errors.js';
import type { GroupInfo, GroupList, GroupSettings } from '../protocol/groups.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { MAX_GROUP_MEMBERS } from '../protocol/limits.js';
import { isValidBucketName } from '../protocol/names.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { Storage } from '../storage/types.js';

interface StoredGroup {
  buckets: string[];
  provisioned: boolean;
}

/** Options of `GroupService.open`. */
export interface GroupServiceOptions {
  storage: Pick<Storage, 'hasBucket'>;
  dataPath: string;
  /** fsync the definitions file (false with `durability: none`). */
  sync: boolean;
  provisioned: readonly ProvisionedGroup[];
  /** Warnings (provisioned groups that cannot be applied). */
  warn?: (message: string) => void;
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Every consistency group of this instance. */
export class GroupService {
  private readonly groups = new Map<string, StoredGroup>();
  private readonly file: string;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(group: string) => void>();

  private constructor(private readonly opts: GroupServiceOptions) {
    this.file = join(opts.dataPath, '.ferry', 'groups.json');
  }

  /** Loads the stored groups and applies the provisioned ones. */
  static async open(opts: GroupServiceOptions): Promise<GroupService> {
    const s = new GroupService(opts);
    let text: string | undefined;
    try {
      text = await readFile(s.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text !== undefined) {
      const parsed = parseJson(text) as { groups?: Record<string, StoredGroup> };
      for (const [name, g] of Object.entries(parsed.groups ?? {}))
        s.groups.set(name, { buckets: [...g.buckets], provisioned: g.provisioned === true });
    }
    if (s.applyProvisioned()) await s.save();
    return s;
  }

  private applyProvisioned(): boolean {
    let changed = false;
    const names = new Set<string>();
    for (const prov of this.opts.provisioned) {
      try {
        if (!isValidBucketName(prov.name)) throw Errors.groupInvalidName(prov.name);
        const buckets = this.parse(prov.name, { buckets: prov.buckets }, true).buckets;
        // The environment is authoritative: a member taken from a group made over HTTP leaves it.
        for (const b of buckets) {
          const other = this.groupOf(b);
          if (other !== undefined && other !== prov.name && !this.groups.get(other)!.provisioned) {
            const g = this.groups.get(other)!;
            g.buckets = g.buckets.filter((x) => x !== b);
            this.warn(`Bucket '${b}' left group '${other}' for provisioned group '${prov.name}'`);
          }
        }
        this.groups.set(prov.name, { buckets, provisioned: true });
        names.add(prov.name);
        changed = true;
      } catch (e) {
        this.warn(`Provisioned group '${prov.name}' ignored: ${(e as Error).message}`);
      }
    }
    for (const [name, g] of this.groups) {
      if (g.provisioned && !names.has(name)) {
        g.provisioned = false;
        changed = true;
      }
    }
    return changed;
  }

  private warn(message: string): void {
    this.opts.warn?.(message);
  }

  // ---- API ---------------------------------------------------------------------------------

  /** `GET /groups`: every group, sorted by name. */
  list(): GroupList {
    return { groups: [...this.groups.keys()].sort(byName).map((n) => this.info(n)) };
  }

  /** `GET /groups/{name}` (404 when unknown). */
  get(name: string): GroupInfo {
    return this.info(name);
  }

  /** `POST /groups/{name}`: 409 when it exists, 404 for an unknown bucket, 409 for a taken one. */
  create(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      if (!isValidBucketName(name)) throw Errors.groupInvalidName(name);
      if (this.groups.has(name)) throw Errors.groupExists(name);
      const { buckets } = this.parse(name, body);
      this.groups.set(name, { buckets, provisioned: false });
      await this.saveOrUndo(() => this.groups.delete(name));
      this.changed(name);
    });
  }

  /** `PUT /groups/{name}`: replaces the member list. */
  update(name: string, body: unknown): Promise<void> {
    return this.exclusive(async () => {
      const g = this.group(name);
      if (g.provisioned) throw Errors.groupProvisioned(name, 'update');
      const { buckets } = this.parse(name, body);
      const before = g.buckets;
      g.buckets = buckets;
      await this.saveOrUndo(() => (g.buckets = before));
      this.changed(name);
    });
  }

  /** `DELETE /groups/{name}`. */
  remove(name: string): Promise<void> {
    return this.exclusive(async () => {
      const g = this.group(name);
      if (g.provisioned) throw Errors.groupProvisioned(name, 'remove');
      this.groups.delete(name);
      await this.saveOrUndo(() => this.groups.set(name, g));
      this.changed(name);
    });
  }

  /**
   * Calls `listener` with a group's name after it was created, changed or removed (the group
   * replications follow their members). Returns the unsubscribe function.
   */
  subscribe(listener: (group: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether group `name` exists. */
  has(name: string): boolean {
    return this.groups.has(name);
  }

  private changed(name: string): void {
    for (const l of this.listeners) {
      try {
        l(name);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** The group `bucket` belongs to, if any. */
  groupOf(bucket: string): string | undefined {
    for (const [name, g] of this.groups) if (g.buckets.includes(bucket)) return name;
    return undefined;
  }

  /** Member buckets of a group (404 when unknown). */
  members(name: string): readonly string[] {
    return [...this.group(name).buckets];
  }

  // ---- internals ---------------------------------------------------------------------------

  private group(name: string): StoredGroup {
    const g = this.groups.get(name);
    if (!g) throw Errors.groupNotFound(name);
    return g;
  }

  private info(name: string): GroupInfo {
    const g = this.group(name);
    return { name, buckets: [...g.buckets], is_provisioned: g.provisioned };
  }

  /**
   * Validates a body for group `name`: exactly `{"buckets": [...]}`, at most MAX_GROUP_MEMBERS
   * distinct existing buckets, none a member of another group (`provisioning`: provisioned
   * groups take members from groups made over HTTP, see applyProvisioned).
   */
  private parse(name: string, body: unknown, provisioning = false): GroupSettings {
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw Errors.groupInvalidBody('expected a JSON object {"buckets": [...]}');
    const extra = Object.keys(body).filter((k) => k !== 'buckets');
    if (extra.length > 0) throw Errors.groupInvalidBody(`unknown field '${extra[0]!.slice(0, 64)}'`);
    const list = (body as Record<string, unknown>)['buckets'];
    if (!Array.isArray(list)) throw Errors.groupInvalidBody("'buckets' must be an array of bucket names");
    if (list.length > MAX_GROUP_MEMBERS)
      throw Errors.groupInvalidBody(`a group has at most ${MAX_GROUP_MEMBERS} buckets (got ${list.length})`);
    const seen = new Set<string>();
    for (const [i, b] of list.entries()) {
      if (typeof b !== 'string' || !isValidBucketName(b))
        throw Errors.groupInvalidBody(`'buckets[${i}]' is not a bucket name`);
      if (seen.has(b)) throw Errors.groupInvalidBody(`bucket '${b}' is listed twice`);
      seen.add(b);
    }
    for (const b of seen) {
      if (!this.opts.storage.hasBucket(b)) throw Errors.groupBucketNotFound(b, name);
      const other = this.groupOf(b);
      if (other === undefined || other === name) continue;
      if (!provisioning || this.groups.get(other)!.provisioned) throw Errors.groupBucketTaken(b, other);
    }
    return { buckets: [...seen] };
  }

  private async saveOrUndo(undo: () => void): Promise<void> {
    try {
      await this.save();
    } catch (e) {
      undo();
      throw e;
    }
  }

  private save(): Promise<void> {
    const groups = Object.fromEntries([...this.groups].sort(([a], [b]) => byName(a, b)));
    const text = stringifyJson({ version: 1, groups }, 2);
    return writeFileAtomic(this.file, text, { mode: 0o600, noSync: !this.opts.sync });
  }

  /** Mutations one at a time, so that membership checks and saves never interleave. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
