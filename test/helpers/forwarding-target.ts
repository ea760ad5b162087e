/**
 * A replication target that forwards every call to another one: the base of test targets that
 * interpose on a few calls (hold, fail, count) and leave the rest to the real local or remote target.
 */
import type { ItemOutcome, ShipRecord, Target } from '../../src/replication/target.js';

/** Forwards everything to `inner`; subclasses override the calls they interpose on. */
export class ForwardingTarget implements Target {
  constructor(protected readonly inner: Target) {}

  get description(): string {
    return this.inner.description;
  }
  get instanceId(): string {
    return this.inner.instanceId;
  }
  get available(): boolean {
    return this.inner.available;
  }
  get joinsWrites(): boolean | undefined {
    return this.inner.joinsWrites;
  }
  prepare(): Promise<void> {
    return this.inner.prepare();
  }
  write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return this.inner.write(entry, records);
  }
  update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return this.inner.update(entry, records);
  }
  reset(): Promise<void> {
    return this.inner.reset();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
