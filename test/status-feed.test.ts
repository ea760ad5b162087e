/**
 * The events-stream feed (src/replication/status-feed.ts) with an injected clock: snapshot on
 * connect, coalesced snapshots at most every interval, state events, heartbeat, the end on a final
 * state, the slow-subscriber bound (also through a real HTTP response whose client does not read),
 * and the polling fallback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ReplicationStatus } from '../src/protocol/replication-status.js';
import {
  PollingEvents,
  SharedSnapshots,
  StatusFeed,
  type FeedSink,
  type FeedTimers,
  type ReplicationEvent,
  type ReplicationEvents,
  type ReplicationListener,
} from '../src/replication/status-feed.js';
import { ManualClock } from './helpers/manual-clock.js';
import { waitFor } from './helpers/wait.js';

/** Feed timers on a manual clock (intervals as self-renewing timeouts) and the clock. */
class FakeTimers implements FeedTimers {
  private readonly clock = new ManualClock(1_700_000_000_000);
  now(): number {
    return this.clock.now();
  }
  setTimeout(fn: () => void, ms: number): unknown {
    return this.clock.setTimeout(fn, ms);
  }
  clearTimeout(h: unknown): void {
    this.clock.clearTimeout(h);
  }
  setInterval(fn: () => void, ms: number): unknown {
    const handle = { current: undefined as unknown };
    const tick = (): void => {
      handle.current = this.clock.setTimeout(tick, ms);
      fn();
    };
    handle.current = this.clock.setTimeout(tick, ms);
    return handle;
  }
  clearInterval(h: unknown): void {
    this.clock.clearTimeout((h as { current: unknown }).current);
  }
  /** Timers still scheduled. */
  get count(): number {
    return this.clock.pending;
  }
  advance(ms: number): void {
    this.clock.advance(ms);
  }
}

/** A hand-driven event source. */
class ManualEvents implements ReplicationEvents {
  readonly listeners = new Set<ReplicationListener>();
  subscribe(_name: string, l: ReplicationListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(e: ReplicationEvent): void {
    for (const l of [...this.listeners]) l(e);
  }
}

class BufferSink implements FeedSink {
  text = '';
  pretendBuffered = 0;
  closed: boolean | undefined;
  write(t: string): void {
    this.text += t;
  }
  buffered(): number {
    return this.pretendBuffered;
  }
  close(dropped: boolean): void {
    this.closed = dropped;
  }
  /** Parsed events (comments as `{event: 'comment'}`). */
  events(): Array<{ event: string; data?: unknown }> {
    return this.text
      .split('\n\n')
      .filter((b) => b !== '')
      .map((b) => {
        if (b.startsWith(':')) return { event: 'comment', data: b };
        const event = /^event: (.*)$/m.exec(b)![1]!;
        return { event, data: JSON.parse(/^data: (.*)$/m.exec(b)![1]!) };
      });
  }
}

function fakeStatus(state: string, written: number): ReplicationStatus {
  return {
    name: 'r',
    state,
    state_reason: null,
    counters: { records_written: written },
  } as unknown as ReplicationStatus;
}

function setup(opts: { intervalMs?: number; maxBufferedBytes?: number; state?: string } = {}) {
  const timers = new FakeTimers();
  const events = new ManualEvents();
  const sink = new BufferSink();
  let written = 0;
  let state = opts.state ?? 'idle';
  const ends: string[] = [];
  const feed = new StatusFeed({
    name: 'r',
    events,
    snapshot: () => fakeStatus(state, written),
    sink,
    intervalMs: opts.intervalMs ?? 1000,
    timers,
    onEnd: (reason) => ends.push(reason),
    ...(opts.maxBufferedBytes !== undefined ? { maxBufferedBytes: opts.maxBufferedBytes } : {}),
  });
  return {
    timers,
    events,
    sink,
    ends,
    feed,
    write(n: number) {
      written += n;
      events.emit({ type: 'changed' });
    },
    transition(to: string) {
      const from = state;
      state = to;
      events.emit({
        type: 'state',
        from,
        to,
        reason: null,
        at: new Date(timers.now()).toISOString(),
      } as ReplicationEvent);
    },
  };
}

test('a snapshot on connect, then changes coalesced to at most one snapshot per interval', () => {
  const f = setup({ intervalMs: 1000 });
  f.feed.start();
  assert.deepEqual(f.sink.events(), [{ event: 'status', data: fakeStatus('idle', 0) }]);
  f.timers.advance(100);
  for (let i = 0; i < 50; i++) {
    f.write(1);
    f.timers.advance(10);
  }
  // 600 ms after the first snapshot: nothing yet; at 1000 ms one snapshot with all 50 writes
  assert.equal(f.sink.events().length, 1);
  f.timers.advance(400);
  assert.deepEqual(f.sink.events().slice(1), [{ event: 'status', data: fakeStatus('idle', 50) }]);
  // a change long after the last snapshot goes out at once
  f.timers.advance(5000);
  f.write(1);
  assert.deepEqual(f.sink.events().slice(2), [{ event: 'status', data: fakeStatus('idle', 51) }]);
  f.feed.close();
  assert.equal(f.sink.closed, false);
  assert.deepEqual(f.ends, ['closed']);
  assert.equal(f.events.listeners.size, 0, 'unsubscribed');
  assert.equal(f.timers.count, 0, 'no timer left');
});

test('state events go out at once; ids increase', () => {
  const f = setup({ intervalMs: 1000 });
  f.feed.start();
  f.transition('replicating');
  f.transition('retrying');
  const ev = f.sink.events();
  assert.deepEqual(
    ev.map((e) => e.event),
    ['status', 'state', 'state'],
  );
  assert.deepEqual((ev[1]!.data as { from: string; to: string }).to, 'replicating');
  assert.deepEqual((ev[2]!.data as { from: string; to: string }).from, 'replicating');
  f.timers.advance(1000);
  assert.equal(f.sink.events().at(-1)!.event, 'status');
  const ids = [...f.sink.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  assert.deepEqual(ids, [1, 2, 3, 4]);
  f.feed.close();
});

test('a heartbeat comment every 15 s, also when nothing changes', () => {
  const f = setup();
  f.feed.start();
  f.timers.advance(14_999);
  assert.equal(f.sink.events().filter((e) => e.event === 'comment').length, 0);
  f.timers.advance(1);
  f.timers.advance(30_000);
  assert.deepEqual(
    f.sink.events().map((e) => e.event),
    ['status', 'comment', 'comment', 'comment'],
  );
  f.feed.close();
});

test('the stream ends after a final state: state event, last snapshot, clean close', () => {
  const f = setup({ intervalMs: 60_000 });
  f.feed.start();
  f.transition('completed');
  assert.deepEqual(
    f.sink.events().map((e) => e.event),
    ['status', 'state', 'status'],
  );
  assert.equal((f.sink.events()[2]!.data as { state: string }).state, 'completed');
  assert.equal(f.sink.closed, false);
  assert.deepEqual(f.ends, ['final']);
  assert.equal(f.events.listeners.size, 0);
  assert.equal(f.timers.count, 0);
  // connecting to a completed run: one snapshot, then the end
  const g = setup({ state: 'completed' });
  g.feed.start();
  assert.deepEqual(
    g.sink.events().map((e) => e.event),
    ['status'],
  );
  assert.deepEqual(g.ends, ['final']);
});

test('a subscriber whose unsent output passes the bound is dropped; the source never waits', () => {
  const f = setup({ intervalMs: 100, maxBufferedBytes: 4096 });
  f.feed.start();
  f.timers.advance(200);
  f.write(1);
  assert.equal(f.sink.closed, undefined);
  f.sink.pretendBuffered = 5000; // the client stopped reading
  f.timers.advance(200);
  f.write(1);
  assert.equal(f.sink.closed, true, 'dropped: the connection is cut');
  assert.deepEqual(f.ends, ['dropped']);
  assert.equal(f.events.listeners.size, 0);
  const before = f.sink.text.length;
  for (let i = 0; i < 1000; i++) f.write(1); // later events cost nothing
  assert.equal(f.sink.text.length, before);
});

test('a removed replication ends the stream', () => {
  const timers = new FakeTimers();
  const events = new ManualEvents();
  const sink = new BufferSink();
  let gone = false;
  const ends: string[] = [];
  const feed = new StatusFeed({
    name: 'r',
    events,
    snapshot: () => {
      if (gone) throw new Error('gone');
      return fakeStatus('idle', 0);
    },
    sink,
    intervalMs: 100,
    timers,
    onEnd: (r) => ends.push(r),
  });
  feed.start();
  gone = true;
  timers.advance(500);
  events.emit({ type: 'changed' });
  assert.deepEqual(ends, ['gone']);
  assert.equal(sink.closed, false);
});

test('polling: one poller per replication, state transitions and changes detected', () => {
  const timers = new FakeTimers();
  const statuses = new Map<string, ReplicationStatus>([['a', fakeStatus('idle', 0)]]);
  const polls: string[] = [];
  const p = new PollingEvents(
    (name) => {
      polls.push(name);
      const s = statuses.get(name);
      if (!s) throw new Error('404');
      return s;
    },
    200,
    timers,
  );
  const got: ReplicationEvent[][] = [[], []];
  const un1 = p.subscribe('a', (e) => got[0]!.push(e));
  const un2 = p.subscribe('a', (e) => got[1]!.push(e));
  assert.equal(p.watchedCount(), 1);
  timers.advance(1000);
  assert.equal(polls.length, 1 + 5, 'one probe at subscription, then one per period for both subscribers');
  assert.deepEqual(got[0], []);
  statuses.set('a', fakeStatus('idle', 3));
  timers.advance(200);
  assert.deepEqual(got[0], [{ type: 'changed' }]);
  statuses.set('a', fakeStatus('retrying', 3));
  timers.advance(200);
  assert.equal(got[0]!.length, 3);
  assert.deepEqual(
    { ...(got[0]![1] as object), at: undefined },
    {
      type: 'state',
      from: 'idle',
      to: 'retrying',
      reason: null,
      at: undefined,
    },
  );
  assert.deepEqual(got[1], got[0]);
  statuses.delete('a');
  timers.advance(200);
  assert.deepEqual(got[0]!.at(-1), { type: 'changed' }, 'removal is a change (the snapshot then fails)');
  un1();
  un2();
  assert.equal(p.watchedCount(), 0);
  assert.equal(timers.count, 0);
});

test('through a real HTTP response: a client that stops reading is dropped, the producer never blocks', async () => {
  const events = new ManualEvents();
  const big = 'x'.repeat(64 * 1024);
  let ended: string | undefined;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const feed = new StatusFeed({
      name: 'r',
      events,
      snapshot: () => ({ big }) as unknown as ReplicationStatus,
      sink: {
        write: (t) => void res.write(t),
        buffered: () => res.writableLength,
        close: (dropped) => (dropped ? res.destroy() : res.end()),
      },
      intervalMs: 1,
      maxBufferedBytes: 1024 * 1024,
      onEnd: (r) => (ended = r),
    });
    res.on('close', () => feed.close());
    feed.start();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  await new Promise((r) => socket.once('data', r));
  socket.pause(); // the subscriber stops reading
  let emitted = 0;
  try {
    await waitFor(
      async () => {
        // the replication side: each event returns at once however full the subscriber is
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          events.emit({ type: 'changed' });
          assert.ok(performance.now() - t0 < 50, 'an event took long');
          emitted++;
        }
        await new Promise((r) => setTimeout(r, 2));
        return ended;
      },
      { timeoutMs: 60_000, message: 'the slow subscriber to be dropped' },
    );
    assert.equal(ended, 'dropped');
    assert.equal(events.listeners.size, 0);
    assert.ok(emitted > 0);
  } finally {
    socket.destroy();
    await new Promise((r) => server.close(r));
  }
});

test('feeds of one replication share one snapshot per event, never one older than the event', () => {
  const timers = new FakeTimers();
  const events = new ManualEvents();
  let computed = 0;
  let written = 0;
  let state = 'replicating';
  const shared = new SharedSnapshots(events, () => {
    computed++;
    return fakeStatus(state, written);
  });
  const sinks = Array.from({ length: 3 }, () => new BufferSink());
  const feeds = sinks.map((sink) => {
    const release = shared.acquire('r');
    const feed = new StatusFeed({
      name: 'r',
      events,
      snapshot: () => fakeStatus(state, written),
      snapshotText: () => shared.get('r'),
      sink,
      intervalMs: 1000,
      timers,
      onEnd: release,
    });
    feed.start();
    return feed;
  });
  // the three first snapshots (one turn of the event loop): one status computed
  assert.equal(computed, 1);
  timers.advance(1000);
  written = 5;
  events.emit({ type: 'changed' });
  assert.equal(computed, 2, 'one status for the three feeds after a change');
  // a transition in the same turn: the cached snapshot is dropped, the state event's one is fresh
  state = 'completed';
  events.emit({
    type: 'state',
    from: 'replicating',
    to: 'completed',
    reason: null,
    at: 'x',
  } as ReplicationEvent);
  assert.equal(computed, 3);
  for (const sink of sinks) {
    const statuses = sink.events().filter((e) => e.event === 'status');
    assert.deepEqual(
      statuses.map((e) => [
        (e.data as { state: string }).state,
        (e.data as { counters: { records_written: number } }).counters.records_written,
      ]),
      [
        ['replicating', 0],
        ['replicating', 5],
        ['completed', 5],
      ],
    );
    assert.equal(sink.closed, false, 'ended cleanly on the final state');
  }
  for (const f of feeds) f.close();
  assert.equal(events.listeners.size, 0, 'the cache unsubscribes with its last feed');
});
