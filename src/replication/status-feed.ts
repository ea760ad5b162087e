/**
 * The live feed of one replication for one subscriber (replication.md §9, the events stream):
 * a `status` snapshot on connect, then a snapshot whenever something changed (at most every
 * `intervalMs`), a `state` event at every transition, a heartbeat comment every 15 s, and the end
 * of the stream once the run reaches a final state (`completed`).
 *
 * The feed learns about changes from a {@link ReplicationEvents} source: in the server
 * `ReplicationManager.subscribe` (the engine's own transitions and changes); {@link PollingEvents},
 * which polls a status (one poller per replication, however many subscribers), has the same
 * listener contract.
 *
 * A slow subscriber never slows replication: events only mark the feed dirty (snapshots coalesce),
 * writes never wait, and a subscriber whose unsent output exceeds `maxBufferedBytes` is dropped
 * (its connection closed; an EventSource reconnects and gets a fresh snapshot).
 */
import { stringifyJson } from '../protocol/json.js';
import {
  FINAL_STATES,
  type ReplicationState,
  type ReplicationStatus,
  type StateEvent,
} from '../protocol/replication-status.js';

/** What a replication tells its listeners. */
export type ReplicationEvent = ({ type: 'state' } & StateEvent) | { type: 'changed' };

/** A listener of {@link ReplicationEvents}. Called synchronously; must not throw or block. */
export type ReplicationListener = (event: ReplicationEvent) => void;

/** Source of change notifications for one replication; returns the unsubscribe function. */
export interface ReplicationEvents {
  subscribe(name: string, listener: ReplicationListener): () => void;
}

/** Timers, injectable for tests. */
export interface FeedTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** Node's timers, unref'd so that a feed never keeps a process alive. */
export const realTimers: FeedTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

/** Where a feed writes: an HTTP response in production, a buffer in tests. */
export interface FeedSink {
  /** Queues text; never waits. */
  write(text: string): void;
  /** Bytes queued but not yet handed to the network. */
  buffered(): number;
  /** Ends the stream (`dropped`: cut the connection instead of a clean end). */
  close(dropped: boolean): void;
}

/** Options of {@link StatusFeed}. */
export interface StatusFeedOptions {
  name: string;
  events: ReplicationEvents;
  /** The current full status (throws when the replication no longer exists). */
  snapshot(): ReplicationStatus;
  /**
   * The status and its JSON text together, when several feeds share them ({@link SharedSnapshots});
   * used instead of `snapshot` when given.
   */
  snapshotText?(): SnapshotText;
  sink: FeedSink;
  /** Minimum spacing of `status` snapshots after the first one. */
  intervalMs: number;
  /** Heartbeat comment period (default 15 s). */
  heartbeatMs?: number;
  /** Unsent output beyond which the subscriber is dropped (default 1 MiB). */
  maxBufferedBytes?: number;
  /** States that end the stream (default: `completed`). */
  endStates?: ReadonlySet<string>;
  timers?: FeedTimers;
  /** Called once when the feed ends; `dropped` when it ended because the subscriber was too slow. */
  onEnd?(reason: 'final' | 'dropped' | 'gone' | 'closed'): void;
}

/** Heartbeat period of the events stream. */
export const HEARTBEAT_MS = 15_000;
/** Unsent output allowed per subscriber before it is dropped. */
export const MAX_FEED_BUFFER = 1024 * 1024;

/** One subscriber's feed. */
export class StatusFeed {
  private readonly timers: FeedTimers;
  private readonly endStates: ReadonlySet<string>;
  private readonly maxBuffered: number;
  private unsubscribe: (() => void) | undefined;
  private heartbeat: unknown;
  private pending: unknown;
  private lastSentAt = -Infinity;
  private nextId = 1;
  private ended = false;

  constructor(private readonly opts: StatusFeedOptions) {
    this.timers = opts.timers ?? realTimers;
    this.endStates = opts.endStates ?? FINAL_STATES;
    this.maxBuffered = opts.maxBufferedBytes ?? MAX_FEED_BUFFER;
  }

  /** Sends the first snapshot and starts listening. */
  start(): void {
    this.unsubscribe = this.opts.events.subscribe(this.opts.name, (e) => this.onEvent(e));
    this.heartbeat = this.timers.setInterval(
      () => this.send(': heartbeat\n\n'),
      this.opts.heartbeatMs ?? HEARTBEAT_MS,
    );
    const st = this.sendStatus();
    if (st && this.endStates.has(st.state)) this.end('final');
  }

  /** Stops the feed (the subscriber went away). */
  close(): void {
    this.end('closed');
  }

  private onEvent(e: ReplicationEvent): void {
    if (this.ended) return;
    if (e.type === 'state') {
      const { type: _type, ...data } = e;
      this.sendEvent('state', stringifyJson(data));
      if (this.endStates.has(e.to)) {
        this.sendStatus();
        this.end('final');
        return;
      }
    }
    this.schedule();
  }

  /** A snapshot now if the last one is old enough, else one at the end of the interval. */
  private schedule(): void {
    if (this.pending !== undefined) return;
    const wait = this.lastSentAt + this.opts.intervalMs - this.timers.now();
    if (wait <= 0) {
      this.sendStatus();
      return;
    }
    this.pending = this.timers.setTimeout(() => {
      this.pending = undefined;
      this.sendStatus();
    }, wait);
  }

  private sendStatus(): ReplicationStatus | undefined {
    if (this.ended) return undefined;
    let snap: SnapshotText;
    try {
      snap = this.opts.snapshotText ? this.opts.snapshotText() : textOf(this.opts.snapshot());
    } catch {
      this.end('gone'); // the replication was removed
      return undefined;
    }
    this.lastSentAt = this.timers.now();
    this.sendEvent('status', snap.json);
    return snap.status;
  }

  private sendEvent(event: string, data: string): void {
    this.send(`id: ${this.nextId++}\nevent: ${event}\ndata: ${data}\n\n`);
  }

  private send(text: string): void {
    if (this.ended) return;
    if (this.opts.sink.buffered() > this.maxBuffered) {
      this.end('dropped');
      return;
    }
    this.opts.sink.write(text);
  }

  private end(reason: 'final' | 'dropped' | 'gone' | 'closed'): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe?.();
    this.timers.clearInterval(this.heartbeat);
    if (this.pending !== undefined) this.timers.clearTimeout(this.pending);
    this.opts.sink.close(reason === 'dropped');
    this.opts.onEnd?.(reason);
  }
}

/** A status snapshot and its JSON text. */
export interface SnapshotText {
  status: ReplicationStatus;
  json: string;
}

const textOf = (status: ReplicationStatus): SnapshotText => ({ status, json: stringifyJson(status) });

/**
 * One status snapshot (and its JSON) per replication for all of its feeds: ten subscribers cost
 * one status and one serialisation per interval instead of ten. A snapshot is reused only until
 * the replication's next event (a transition or a change: the cache's own listener, subscribed
 * before any feed of the replication, drops it first) and at most until the end of the current
 * turn of the event loop, so a feed never sends a snapshot older than the event it answers.
 */
export class SharedSnapshots {
  private readonly entries = new Map<
    string,
    { users: number; off: () => void; snap: SnapshotText | undefined }
  >();
  private clearing = false;

  constructor(
    private readonly events: ReplicationEvents,
    private readonly statusOf: (name: string) => ReplicationStatus,
  ) {}

  /** Registers a feed of `name` (before the feed subscribes); returns its release function. */
  acquire(name: string): () => void {
    let e = this.entries.get(name);
    if (!e) {
      const created: { users: number; off: () => void; snap: SnapshotText | undefined } = {
        users: 0,
        off: () => undefined,
        snap: undefined,
      };
      created.off = this.events.subscribe(name, () => void (created.snap = undefined));
      this.entries.set(name, created);
      e = created;
    }
    e.users++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const cur = this.entries.get(name);
      if (!cur || --cur.users > 0) return;
      cur.off();
      this.entries.delete(name);
    };
  }

  /** The snapshot of `name` (throws as `statusOf` does; a failure is not kept). */
  get(name: string): SnapshotText {
    const e = this.entries.get(name);
    if (!e) return textOf(this.statusOf(name));
    if (e.snap) return e.snap;
    e.snap = textOf(this.statusOf(name));
    if (!this.clearing) {
      this.clearing = true;
      setImmediate(() => {
        this.clearing = false;
        for (const x of this.entries.values()) x.snap = undefined;
      });
    }
    return e.snap;
  }
}

/** What {@link PollingEvents} compares between polls. */
interface Seen {
  state: ReplicationState;
  reason: string | null;
  fingerprint: string;
}

/**
 * Change notifications by polling each watched replication's status (the fallback until the
 * manager notifies by itself). One timer per replication with listeners, none otherwise.
 */
export class PollingEvents implements ReplicationEvents {
  private readonly watched = new Map<
    string,
    { listeners: Set<ReplicationListener>; timer: unknown; seen: Seen | null }
  >();
  private readonly timers: FeedTimers;

  /**
   * @param statusOf the current status (throws when the replication does not exist)
   * @param intervalMs polling period (default 200 ms)
   */
  constructor(
    private readonly statusOf: (name: string) => ReplicationStatus,
    private readonly intervalMs = 200,
    timers?: FeedTimers,
  ) {
    this.timers = timers ?? realTimers;
  }

  subscribe(name: string, listener: ReplicationListener): () => void {
    let w = this.watched.get(name);
    if (!w) {
      const created = {
        listeners: new Set<ReplicationListener>(),
        timer: undefined as unknown,
        seen: this.probe(name),
      };
      created.timer = this.timers.setInterval(() => this.poll(name), this.intervalMs);
      this.watched.set(name, created);
      w = created;
    }
    w.listeners.add(listener);
    return () => {
      const cur = this.watched.get(name);
      if (!cur) return;
      cur.listeners.delete(listener);
      if (cur.listeners.size === 0) {
        this.timers.clearInterval(cur.timer);
        this.watched.delete(name);
      }
    };
  }

  /** Replications polled now (for tests and metrics). */
  watchedCount(): number {
    return this.watched.size;
  }

  private probe(name: string): Seen | null {
    try {
      const st = this.statusOf(name);
      return {
        state: st.state,
        reason: st.state_reason,
        // what a user sees change; not lag or rates, which move with the clock alone
        fingerprint: stringifyJson([
          st.state_reason,
          st.counters,
          st.pending_records,
          st.pending_bytes,
          st.last_error,
          st.mode,
          st.needs_verify,
        ]),
      };
    } catch {
      return null;
    }
  }

  private poll(name: string): void {
    const w = this.watched.get(name);
    if (!w) return;
    const prev = w.seen;
    const now = this.probe(name);
    w.seen = now;
    const events: ReplicationEvent[] = [];
    if (now === null) {
      if (prev !== null) events.push({ type: 'changed' }); // removed: the feeds' snapshots fail and end
    } else if (prev === null || prev.state !== now.state) {
      if (prev !== null) {
        const at = new Date(this.timers.now()).toISOString();
        events.push({ type: 'state', from: prev.state, to: now.state, reason: now.reason, at });
      }
      events.push({ type: 'changed' });
    } else if (prev.fingerprint !== now.fingerprint) events.push({ type: 'changed' });
    for (const e of events) for (const l of [...w.listeners]) l(e);
  }
}
