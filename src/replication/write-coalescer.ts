/**
 * Joins the writes of several destination entries that start in the same event-loop turn into
 * few multi-entry requests. A window of many small entries (writers spread over entries, typical
 * of sync replication) is delivered as one request per entry; each costs the source and the
 * destination a whole HTTP exchange for a few records. A target that can write several entries
 * in one request (a Ferry destination, batch protocol v2) hands its small writes to a coalescer,
 * which gathers them until the event loop has run what is ready (`setImmediate`) and sends them
 * in packs bounded by records and bytes, never two calls of one entry in a pack (their records
 * are distinct, but a pack then stays a plain union of calls).
 *
 * It may touch nothing but its queue: the `send` function it is given does the I/O and answers
 * each call's outcomes, in call order; a failed send fails every call of its pack.
 */

/** One write of a destination entry, as submitted. */
export interface CoalescedCall<R> {
  entry: string;
  records: readonly R[];
}

/** Sends one pack (all calls share `key`); resolves with the outcomes of each call, in order. */
export type SendPack<R, O> = (key: string, calls: readonly CoalescedCall<R>[]) => Promise<O[][]>;

/** Bounds of one pack. */
export interface PackLimits {
  records: number;
  bytes: number;
}

interface Queued<R, O> extends CoalescedCall<R> {
  bytes: number;
  resolve: (outcomes: O[]) => void;
  reject: (e: unknown) => void;
}

/** Gathers calls per key (e.g. the records' origin) during one event-loop turn. */
export class WriteCoalescer<R, O> {
  private queued = new Map<string, Array<Queued<R, O>>>();
  private scheduled = false;

  constructor(
    private readonly send: SendPack<R, O>,
    private readonly limits: PackLimits,
    /** What a call adds to a pack's bytes. */
    private readonly bytesOf: (entry: string, records: readonly R[]) => number,
  ) {}

  /** Queues a write of `records` to `entry`; resolves with their outcomes, in order. */
  submit(key: string, entry: string, records: readonly R[]): Promise<O[]> {
    const bytes = this.bytesOf(entry, records);
    return new Promise<O[]>((resolve, reject) => {
      let list = this.queued.get(key);
      if (!list) this.queued.set(key, (list = []));
      list.push({ entry, records, bytes, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.queued;
    this.queued = new Map();
    for (const [key, list] of all) for (const pack of this.packs(list)) this.sendPack(key, pack);
  }

  /** Splits calls into packs within the limits, in submission order; one call of an entry per pack. */
  private packs(list: Array<Queued<R, O>>): Array<Array<Queued<R, O>>> {
    const out: Array<Array<Queued<R, O>>> = [];
    let pending = list;
    while (pending.length > 0) {
      const pack: Array<Queued<R, O>> = [];
      const entries = new Set<string>();
      const later: Array<Queued<R, O>> = [];
      let records = 0;
      let bytes = 0;
      for (const call of pending) {
        const fits =
          pack.length === 0 ||
          (records + call.records.length <= this.limits.records && bytes + call.bytes <= this.limits.bytes);
        if (!fits || entries.has(call.entry)) {
          later.push(call);
          continue;
        }
        pack.push(call);
        entries.add(call.entry);
        records += call.records.length;
        bytes += call.bytes;
      }
      out.push(pack);
      pending = later;
    }
    return out;
  }

  private sendPack(key: string, pack: Array<Queued<R, O>>): void {
    Promise.resolve()
      .then(() => this.send(key, pack))
      .then(
        (outcomes) => {
          pack.forEach((call, i) => {
            const o = outcomes[i];
            if (o === undefined || o.length !== call.records.length)
              call.reject(
                new Error(`coalesced write answered ${o?.length ?? 0} of ${call.records.length} outcomes`),
              );
            else call.resolve(o);
          });
        },
        (e: unknown) => pack.forEach((call) => call.reject(e)),
      );
  }
}
