/**
 * One client batch committed as one commit (issue 12: a multi-record batch is all or nothing, at
 * the source after a crash and at every destination). Payloads still stream to their block files
 * as the body arrives; what waits is the commit: each write call of the batch holds a ticket and,
 * once its records are staged (payload written, reservation made), hands them to the batch instead
 * of committing them. The batch commits them in ONE group-commit entry — contiguous frames, one
 * commit for the change log and hence for the replication log — when it is sealed (the body is
 * read) and no ticket is still staging. A part reaching `maxBytes` is committed at once and the
 * records after it form the next part: a batch of any size is cut into atomic parts of bounded
 * size (a destination of a consistency group applies a commit in one shipment, which is bounded).
 *
 * A record that fails before it is staged (409, quota, digest) leaves its ticket and is not part
 * of the commit; if a part's commit fails, every write in it fails (and releases its reservation).
 */
import { MAX_ATOMIC_BATCH_BYTES } from '../protocol/limits.js';
import type { GroupCommit, StagedWrite } from './group-commit.js';

interface Part {
  commits: GroupCommit | undefined;
  writes: StagedWrite[];
  paths: Set<string>;
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function newPart(): Part {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // a part nobody waits for any more (every writer failed otherwise) must not be unhandled
  done.catch(() => undefined);
  return { commits: undefined, writes: [], paths: new Set(), bytes: 0, done, resolve, reject };
}

/**
 * The place of one write call (`Bucket.write`, or one `Bucket.writeMany` whose items all carry it)
 * in an {@link AtomicBatch}. The storage joins it once, when the call's records are staged; the
 * caller leaves it when the call settled without joining (nothing written, or an error).
 */
export class BatchTicket {
  private done = false;
  private markSettled!: () => void;
  /** Resolves once the ticket joined or left: its write no longer holds the batch back. */
  readonly settled = new Promise<void>((resolve) => (this.markSettled = resolve));

  constructor(private readonly batch: AtomicBatch) {}

  /** Called by the storage: commits `writes` with the batch; resolves once they are durable. */
  join(commits: GroupCommit, writes: readonly StagedWrite[], paths: readonly string[]): Promise<void> {
    if (this.done) return commits.commitWrites(writes, paths); // a second call: on its own
    this.done = true;
    this.markSettled();
    return this.batch.add(commits, writes, paths);
  }

  /**
   * Commits what the batch staged so far now, as a part of its own: called when this ticket's
   * write must wait for something that waits for those records (a bucket rename waits for the
   * writes in flight), which would otherwise never end.
   */
  cut(): void {
    this.batch.cut();
  }

  /** The write call settled: if it never joined, the batch no longer waits for it. Idempotent. */
  leave(): void {
    if (this.done) return;
    this.done = true;
    this.markSettled();
    this.batch.release();
  }
}

/** The records of one client batch, committed together (in parts of at most `maxBytes`). */
export class AtomicBatch {
  private part = newPart();
  private holding = 0;
  private sealed = false;

  constructor(private readonly maxBytes = MAX_ATOMIC_BATCH_BYTES) {}

  /** A ticket for the next write call; the batch commits only once every ticket joined or left. */
  ticket(): BatchTicket {
    this.holding++;
    return new BatchTicket(this);
  }

  /** No further tickets: the last part commits once the tickets in hand joined or left. */
  seal(): void {
    this.sealed = true;
    this.flushIfReady();
  }

  /** @internal (BatchTicket.join) */
  add(commits: GroupCommit, writes: readonly StagedWrite[], paths: readonly string[]): Promise<void> {
    this.holding--;
    if (this.part.commits !== undefined && this.part.commits !== commits) this.flush();
    const part = this.part;
    part.commits = commits;
    for (const w of writes) {
      part.writes.push(w);
      part.bytes += w.desc.size;
    }
    for (const p of paths) part.paths.add(p);
    if (part.bytes >= this.maxBytes) this.flush();
    else this.flushIfReady();
    return part.done;
  }

  /** @internal (BatchTicket.leave) */
  release(): void {
    this.holding--;
    this.flushIfReady();
  }

  /** @internal (BatchTicket.cut) */
  cut(): void {
    this.flush();
  }

  private flushIfReady(): void {
    if (this.sealed && this.holding === 0) this.flush();
  }

  private flush(): void {
    const part = this.part;
    this.part = newPart();
    if (part.commits === undefined || part.writes.length === 0) {
      part.resolve();
      return;
    }
    part.commits.commitWrites(part.writes, [...part.paths]).then(part.resolve, part.reject);
  }
}
