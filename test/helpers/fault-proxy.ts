/**
 * A fault-injecting TCP proxy for tests: forwards 127.0.0.1:<port> to a target and can reset, stall,
 * swallow or delay traffic, or cut connections in the middle of a request.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { realClock, type Clock } from './manual-clock.js';

/**
 * - `pass`: forward both ways.
 * - `reset`: reset (TCP RST) every open connection and every new one.
 * - `stall`: keep connections open but stop forwarding (senders hit back-pressure); `pass` resumes.
 * - `blackhole`: accept, read and discard everything, never answer; new connections do not reach the target.
 */
export type FaultMode = 'pass' | 'reset' | 'stall' | 'blackhole';

/** Traffic counters since the proxy started. */
export interface FaultProxyStats {
  /** Accepted client connections. */
  connections: number;
  /** Bytes delivered to the target. */
  bytesUp: number;
  /** Bytes delivered to clients. */
  bytesDown: number;
  /** Connections torn down with a reset by the proxy. */
  resets: number;
  /** Bytes read and thrown away in `blackhole` mode. */
  bytesDiscarded: number;
}

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Time source of the latency queue (default: the real clock). */
  clock?: Clock;
}

/** Handle of a running proxy from {@link startFaultProxy}. */
export interface FaultProxy {
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Switches the fault mode for open and new connections. */
  setMode(m: FaultMode): void;
  /** Delays every forwarded chunk, both directions, by `ms`. */
  setLatency(ms: number): void;
  /** Reset every connection once N bytes of it have been forwarded upstream (mid-request); null disables. */
  resetAfterBytes(n: number | null): void;
  /** Resets every open connection now; the mode is unchanged. */
  resetAll(): void;
  stats(): FaultProxyStats;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

type Item = { chunk: Buffer; due: number } | { end: true; due: number } | { reset: true; due: number };

/** One direction of a proxied connection, with its ordered delay queue. */
class Pipe {
  readonly queue: Item[] = [];
  private timer: unknown;
  private waitingDrain = false;
  forwarded = 0;
  /** Bytes accepted into the queue (forwarded or still waiting). */
  accepted = 0;

  constructor(
    private readonly link: Link,
    readonly src: Socket,
    readonly dst: () => Socket | undefined,
    readonly upstream: boolean,
  ) {}

  pump(): void {
    const proxy = this.link.proxy;
    if (this.timer !== undefined || this.waitingDrain || this.link.closed) return;
    while (this.queue.length > 0) {
      if (proxy.mode === 'stall') return;
      const head = this.queue[0]!;
      const wait = head.due - proxy.clock.now();
      if (wait > 0) {
        this.timer = proxy.clock.setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      const dst = this.dst();
      if (dst === undefined) return; // upstream still connecting; resumed on connect
      this.queue.shift();
      if ('reset' in head) {
        // Let the bytes already written reach the peer: an RST discards unsent data.
        if (dst.writableLength > 0) dst.once('drain', () => setImmediate(() => this.link.reset()));
        else setImmediate(() => this.link.reset());
        return;
      }
      if ('end' in head) {
        dst.end();
        continue;
      }
      this.forwarded += head.chunk.length;
      if (this.upstream) proxy.counters.bytesUp += head.chunk.length;
      else proxy.counters.bytesDown += head.chunk.length;
      if (!dst.write(head.chunk)) {
        this.waitingDrain = true;
        this.src.pause();
        dst.once('drain', () => {
          this.waitingDrain = false;
          if (proxy.mode !== 'stall') this.src.resume();
          this.pump();
        });
        return;
      }
    }
  }

  cancel(): void {
    if (this.timer !== undefined) this.link.proxy.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A client connection and its upstream connection. */
class Link {
  readonly upstreamSocket: Socket | undefined;
  closed = false;
  readonly up: Pipe;
  readonly down: Pipe;
  private upstreamReady = false;

  constructor(
    readonly proxy: ProxyState,
    readonly client: Socket,
    private readonly blackholed: boolean,
  ) {
    this.upstreamSocket = blackholed ? undefined : connect(proxy.target.port, proxy.target.host);
    const upstream = this.upstreamSocket;
    this.up = new Pipe(this, client, () => (this.upstreamReady ? upstream : undefined), true);
    this.down = new Pipe(this, upstream ?? client, () => client, false);
    this.wire(client, this.up);
    if (upstream === undefined) return;
    upstream.setNoDelay(true);
    upstream.on('connect', () => {
      this.upstreamReady = true;
      this.up.pump();
    });
    this.wire(upstream, this.down);
    if (proxy.mode === 'stall') this.applyStall(true);
  }

  private wire(sock: Socket, from: Pipe): void {
    sock.on('data', (chunk: Buffer) => this.onData(from, chunk));
    sock.on('end', () => this.onEnd(from));
    sock.on('error', () => this.destroy());
    sock.on('close', (hadError: boolean) => this.onClose(sock, from, hadError));
  }

  private onData(pipe: Pipe, chunk: Buffer): void {
    const proxy = this.proxy;
    if (this.blackholed || proxy.mode === 'blackhole') {
      proxy.counters.bytesDiscarded += chunk.length; // read and discard
      return;
    }
    const due = proxy.clock.now() + proxy.latencyMs;
    const limit = pipe.upstream ? proxy.resetAfter : null;
    if (limit !== null && pipe.accepted + chunk.length >= limit) {
      const keep = Math.max(0, limit - pipe.accepted);
      if (keep > 0) pipe.queue.push({ chunk: chunk.subarray(0, keep), due });
      pipe.accepted += keep;
      pipe.queue.push({ reset: true, due });
      pipe.src.pause();
    } else {
      pipe.accepted += chunk.length;
      pipe.queue.push({ chunk, due });
    }
    pipe.pump();
  }

  private onEnd(pipe: Pipe): void {
    if (this.blackholed || this.proxy.mode === 'blackhole') return;
    pipe.queue.push({ end: true, due: this.proxy.clock.now() + this.proxy.latencyMs });
    pipe.pump();
  }

  /** A cleanly closed side still lets delayed data of the other direction reach its peer. */
  private onClose(sock: Socket, from: Pipe, hadError: boolean): void {
    if (hadError || this.blackholed) return this.destroy();
    const to = from === this.up ? this.down : this.up;
    to.queue.length = 0;
    const other = sock === this.client ? this.upstreamSocket : this.client;
    if (other === undefined || other.destroyed || from.queue.length === 0) {
      if (from.queue.length === 0 && other !== undefined && !other.destroyed && !other.writableEnded)
        other.end();
      if (other === undefined || other.destroyed) this.destroy();
    }
  }

  applyStall(stalled: boolean): void {
    for (const pipe of [this.up, this.down]) {
      if (stalled) pipe.src.pause();
      else {
        pipe.src.resume();
        pipe.pump();
      }
    }
  }

  /** Tears both sides down with TCP RST. */
  reset(): void {
    if (this.closed) return;
    this.proxy.counters.resets++;
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (this.upstreamSocket !== undefined && !this.upstreamSocket.destroyed)
      this.upstreamSocket.resetAndDestroy();
    this.destroy();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.up.cancel();
    this.down.cancel();
    this.client.destroy();
    this.upstreamSocket?.destroy();
    this.proxy.links.delete(this);
  }
}

interface ProxyState {
  target: { host: string; port: number };
  mode: FaultMode;
  latencyMs: number;
  resetAfter: number | null;
  links: Set<Link>;
  counters: FaultProxyStats;
  clock: Clock;
}

/** Starts a proxy on 127.0.0.1 (random port) in `pass` mode that forwards to `target`. */
export async function startFaultProxy(
  target: { host: string; port: number },
  options: FaultProxyOptions = {},
): Promise<FaultProxy> {
  const state: ProxyState = {
    clock: options.clock ?? realClock,
    target,
    mode: 'pass',
    latencyMs: 0,
    resetAfter: null,
    links: new Set(),
    counters: { connections: 0, bytesUp: 0, bytesDown: 0, resets: 0, bytesDiscarded: 0 },
  };
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    state.counters.connections++;
    client.setNoDelay(true);
    if (state.mode === 'reset') {
      state.counters.resets++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    state.links.add(new Link(state, client, state.mode === 'blackhole'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('fault proxy: no listening address');

  return {
    port: addr.port,
    setMode(m: FaultMode): void {
      const before = state.mode;
      state.mode = m;
      if (m === 'reset') {
        for (const link of [...state.links]) link.reset();
      } else if (m === 'stall' && before !== 'stall') {
        for (const link of state.links) link.applyStall(true);
      } else if (m !== 'stall' && before === 'stall') {
        for (const link of state.links) link.applyStall(false);
      }
      if (m === 'blackhole') {
        // Swallowed connections must keep reading so that senders are not throttled.
        for (const link of state.links) {
          link.up.queue.length = 0;
          link.down.queue.length = 0;
          link.client.resume();
          link.upstreamSocket?.resume();
        }
      }
    },
    setLatency(ms: number): void {
      state.latencyMs = Math.max(0, ms);
    },
    resetAfterBytes(n: number | null): void {
      state.resetAfter = n;
    },
    resetAll(): void {
      for (const link of [...state.links]) link.reset();
    },
    stats(): FaultProxyStats {
      return { ...state.counters };
    },
    async close(): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const link of [...state.links]) link.destroy();
      await closed;
    },
  };
}
