/**
 * Label updates are never lost to the order in which deliveries land (issue 8 item 9). Every
 * delivery ships the source record as it is when the delivery starts, and requests in flight may
 * land in any order. A gate in front of the real local and remote targets forces the orders that
 * lost acknowledged label updates in A↔B crash tests:
 * - a label update overtakes the write of its record, finds the record missing, is re-sent as a
 *   write, and that write lands after the original one and is answered "already present";
 * - a later label update overtakes an earlier one of the same record, which then lands last;
 * - an update finds its record missing while an earlier connection (of before a crash) is still
 *   finishing the write, so its re-sent write is answered "already present".
 * No sleeps decide the outcome: the gate holds the first call until the engine either sends the
 * second (the bug) or has had a whole second to do so without (the fix).
 */
import assert from 'node:assert/strict';
import type { ItemOutcome, ShipRecord, Target } from '../src/replication/target.js';
import { ForwardingTarget } from './helpers/forwarding-target.js';
import { forEachTarget, statusOf, writeText, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

type Held = 'write' | 'update';

/**
 * Holds the first call of kind `hold` until released; a later call of the other kind passes at
 * once. A later call of the held kind either first lets the held one finish (`held-first`) or
 * finishes first and then lets the held one go (`later-first`). So when the engine sends a second
 * delivery of the record while the first is in flight, they land in the order that hurts.
 */
class GateTarget extends ForwardingTarget {
  held: { release: () => void; done: Promise<unknown> } | null = null;
  heldOnce = false;
  calls: string[] = [];
  /** Answer the next update with 'missing' without asking the destination. */
  missingOnce = false;

  constructor(
    inner: Target,
    private readonly hold: Held,
    private readonly order: 'held-first' | 'later-first',
  ) {
    super(inner);
  }

  private async gate<T>(kind: Held, call: () => Promise<T>): Promise<T> {
    this.calls.push(kind);
    if (kind === this.hold && !this.heldOnce) {
      this.heldOnce = true;
      let release!: () => void;
      const open = new Promise<void>((r) => (release = r));
      const done = open.then(call);
      this.held = { release, done: done.catch(() => undefined) };
      return done;
    }
    if (kind === this.hold && this.held) {
      if (this.order === 'later-first') {
        const result = await call();
        this.release();
        await this.held.done;
        return result;
      }
      this.release();
      await this.held.done;
    }
    return call();
  }

  /** Lets the held call go on. */
  release(): void {
    this.held?.release();
  }

  override write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return this.gate('write', () => this.inner.write(entry, records));
  }

  override update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    if (this.missingOnce) {
      this.missingOnce = false;
      this.calls.push('update');
      return Promise.resolve(records.map((): ItemOutcome => ({ kind: 'missing' })));
    }
    return this.gate('update', () => this.inner.update(entry, records));
  }
}

function gated(hold: Held, order: 'held-first' | 'later-first' = 'held-first') {
  const holder: { gate?: GateTarget } = {};
  return {
    holder,
    opts: { wrapTarget: (t: Target) => (holder.gate = new GateTarget(t, hold, order)) },
  };
}

const PIPELINE = { batch: { max_in_flight: 4, max_delay_ms: 0 } };

async function labelsAt(
  storage: ReplEnv['dst'],
  ts: bigint,
  bucket = 'dst',
): Promise<Record<string, string>> {
  return (await storage.bucket(bucket).read('e', ts)).meta.labels;
}

/**
 * Waits until the gate holds its first call, runs `change` at the source, then waits until the
 * engine sent a second call or had a second to do so, and releases the held call.
 */
async function raceAgainstHeld(gate: () => GateTarget | undefined, change: () => Promise<void>) {
  await waitFor(() => gate()?.held, { message: 'the first delivery held at the gate' });
  const before = gate()!.calls.length;
  await change();
  const t0 = Date.now();
  await waitFor(() => gate()!.calls.length > before || Date.now() - t0 > 1000, {
    intervalMs: 5,
    message: 'a second delivery, or a second without one',
  });
  gate()!.release();
}

async function drained(env: ReplEnv): Promise<void> {
  await waitFor(
    () => {
      const s = statusOf(env.manager, 'r');
      return s.pending_records === 0 && s.state === 'idle' && s.cursor_lsn === s.log_last_lsn;
    },
    { timeoutMs: 15_000, message: 'the replication to drain' },
  );
}

{
  const { holder, opts } = gated('write');
  forEachTarget(
    'a label update made while its record is being written arrives, whatever lands first',
    async (env) => {
      await env.replicate('r', PIPELINE);
      await writeText(env.storage, 'src', 'e', 1n, 'payload', { v: '1' });
      await raceAgainstHeld(
        () => holder.gate,
        async () => {
          await env.storage.bucket('src').updateLabels('e', 1n, { v: '2', extra: 'x' });
        },
      );
      await drained(env);
      assert.deepEqual(await labelsAt(env.dst, 1n), { v: '2', extra: 'x' });
      assert.deepEqual(await labelsAt(env.storage, 1n, 'src'), { v: '2', extra: 'x' });
    },
    opts,
  );
}

{
  const { holder, opts } = gated('update', 'later-first');
  forEachTarget(
    'two label updates of one record in flight at once: the later one is what stays',
    async (env) => {
      await env.replicate('r', PIPELINE);
      await writeText(env.storage, 'src', 'e', 1n, 'payload', { v: '0' });
      await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
      await env.storage.bucket('src').updateLabels('e', 1n, { v: '1', gone: 'soon' });
      await raceAgainstHeld(
        () => holder.gate,
        async () => {
          await env.storage.bucket('src').updateLabels('e', 1n, { v: '2', gone: null });
        },
      );
      await drained(env);
      assert.deepEqual(await labelsAt(env.dst, 1n), { v: '2' });
    },
    opts,
  );
}

{
  const { holder, opts } = gated('update');
  forEachTarget(
    'an update that found its record missing while an earlier write was landing still applies',
    async (env) => {
      await env.replicate('r', PIPELINE);
      await writeText(env.storage, 'src', 'e', 1n, 'payload', { v: '1' });
      await waitFor(() => statusOf(env.manager, 'r').counters.records_written === 1);
      // the destination holds the record with its first labels; the update is answered
      // "missing" (its record was still being written by a connection of before a crash)
      holder.gate!.heldOnce = true;
      holder.gate!.missingOnce = true;
      await env.storage.bucket('src').updateLabels('e', 1n, { v: '2' });
      await drained(env);
      assert.deepEqual(await labelsAt(env.dst, 1n), { v: '2' });
      const st = statusOf(env.manager, 'r');
      assert.equal(st.counters.records_already_present, 1, 'the re-sent write was already present');
      assert.equal(st.counters.label_updates_written, 1);
    },
    opts,
  );
}
