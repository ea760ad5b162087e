/**
 * One file's fdatasyncs, one at a time: Linux reports a writeback error to only one of two syncs
 * of a file under way at once, so the other would call bytes durable that are not. Writes are
 * counted (`wrote`); `syncTo` resolves once a sync that started after the given write ended, and
 * shares a sync under way that covers it. A failed sync fails every later one (the bytes it
 * covered are lost: nothing written to the file may be called durable any more).
 */
export class SyncPoint {
  private written = 0;
  private synced = 0;
  private running: { upTo: number; done: Promise<void> } | undefined;
  private failed: unknown;

  constructor(private readonly run: () => Promise<void>) {}

  /** Counts a write handed to the kernel; returns its number (for `syncTo`). */
  wrote(): number {
    return ++this.written;
  }

  /** The number of the latest write. */
  latest(): number {
    return this.written;
  }

  /** Whether every write counted so far is durable. */
  clean(): boolean {
    return this.synced >= this.written;
  }

  /** Resolves once no sync is under way (whatever its outcome). */
  async idle(): Promise<void> {
    while (this.running) await this.running.done.catch(() => {});
  }

  /** Resolves once write `target` (and every one before it) is durable. */
  async syncTo(target: number = this.written): Promise<void> {
    while (this.synced < target) {
      if (this.failed !== undefined) throw this.failed;
      const under = this.running;
      if (under) {
        await under.done;
        continue;
      }
      const upTo = this.written;
      const done = this.run().then(
        () => {
          if (upTo > this.synced) this.synced = upTo;
        },
        (e: unknown) => {
          this.failed ??= e;
          throw e;
        },
      );
      this.running = { upTo, done };
      try {
        await done;
      } finally {
        if (this.running?.done === done) this.running = undefined;
      }
    }
  }
}
