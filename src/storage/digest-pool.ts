/**
 * Content digests of many small payloads at once, computed on a worker thread.
 *
 * SHA-256 of a 1 KiB record costs ~1.7 µs on the event loop (mostly per-call set-up), over 10% of
 * a batch write's CPU. A batch's payloads are copied into one shared buffer (~0.1 ms per MB) and
 * hashed on a second thread, so the event loop goes on parsing and writing other requests. Small
 * batches, and any failure of the worker, fall back to hashing inline: the result is the same.
 *
 * The hand-over costs CPU of its own (copy, message, wake-up: ~2.5 µs per 1 KiB payload here, on
 * top of ~4 µs of hashing), so it pays only while the event loop is the bottleneck and a core is
 * free to run the worker: the engine's pool offloads only then (`eventLoopBusy` and `spareCore`),
 * and hashes inline otherwise. Issue 9: with a replication destination sharing two cores with
 * its source, the worker only took CPU from the source; this rule copied 4–15 % faster than
 * offloading whenever the loop was busy (three interleaved pairs of 100,000 × 1 KiB copies).
 */
import { availableParallelism, cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { digestOf } from './digest.js';

/** Below this many payloads the round trip to the worker costs more than it saves. */
const MIN_OFFLOAD = 32;
/** Payloads larger than this are hashed inline (copying them would cost as much as hashing). */
const MAX_PAYLOAD = 64 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { hash } = require('node:crypto');
parentPort.on('message', ({ id, data, ends, out }) => {
  const src = Buffer.from(data);
  const dst = Buffer.from(out);
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    const d = hash('sha256', src.subarray(start, ends[i]), 'buffer');
    d.copy(dst, i * 16, 0, 16);
    start = ends[i];
  }
  parentPort.postMessage(id);
});
`;

interface Pending {
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Event-loop utilisation from which the engine's pool offloads (below it, hashing inline costs less). */
const BUSY_UTILIZATION = 0.75;
/** The utilisation is measured over windows of about this length. */
const BUSY_WINDOW_MS = 100;

/**
 * A predicate judged over windows of `windowMs`, at most once per window and only when asked:
 * `judge(last, cur, ms)` compares two readings `ms` apart. `initial` until a first window passed.
 */
function windowed<T>(
  read: () => T,
  judge: (last: T, cur: T, ms: number) => boolean,
  initial: boolean,
  windowMs: number,
): () => boolean {
  let last = read();
  let at = performance.now();
  let value = initial;
  return () => {
    const now = performance.now();
    if (now - at >= windowMs) {
      const cur = read();
      value = judge(last, cur, now - at);
      last = cur;
      at = now;
    }
    return value;
  };
}

/**
 * A predicate: was the event loop busy at least `threshold` of the time in the last window of
 * `windowMs` (measured when asked, at most once per window)? False until a first window passed.
 */
export function eventLoopBusy(threshold = BUSY_UTILIZATION, windowMs = BUSY_WINDOW_MS): () => boolean {
  return windowed(
    () => performance.eventLoopUtilization(),
    (last, cur) => performance.eventLoopUtilization(cur, last).utilization >= threshold,
    false,
    windowMs,
  );
}

/** Idle time of all CPUs (ms, summed), as the kernel counts it. */
function idleMs(): number {
  let idle = 0;
  for (const c of cpus()) idle += c.times.idle;
  return idle;
}

/**
 * A predicate: was at least `cores` of a CPU idle over the last window of `windowMs` (measured
 * when asked, at most once per window)? True until a first window passed, and on a machine with a
 * single CPU false (the worker would only take turns with the event loop).
 */
export function spareCore(cores = 0.5, windowMs = BUSY_WINDOW_MS): () => boolean {
  if (availableParallelism() < 2) return () => false;
  return windowed(idleMs, (last, cur, ms) => (cur - last) / ms >= cores, true, windowMs);
}

/** Hashes batches of payloads on one worker thread (created on first use, never keeps the process alive). */
export class DigestPool {
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 0;
  private pending = new Map<number, Pending>();
  private offloaded = 0;

  /** `offloadNow`: whether a batch large enough goes to the worker now (default: always). */
  constructor(private readonly offloadNow: () => boolean = () => true) {}

  /** Batches whose digests were computed by the worker (not inline); read-only, for tests. */
  get offloadedBatches(): number {
    return this.offloaded;
  }

  /**
   * 16-byte digests of `payloads`, as views into one buffer, in order. Equal to `digestOf` of each.
   */
  async digestMany(payloads: readonly Buffer[]): Promise<Buffer[]> {
    let total = 0;
    let offload = payloads.length >= MIN_OFFLOAD && !this.broken;
    for (const p of payloads) {
      total += p.length;
      if (p.length > MAX_PAYLOAD) offload = false;
    }
    if (!offload || !this.offloadNow()) return payloads.map(digestOf);
    const data = new SharedArrayBuffer(total);
    const out = new SharedArrayBuffer(payloads.length * 16);
    // Shared too: a plain typed array would be copied by postMessage.
    const ends = new Int32Array(new SharedArrayBuffer(payloads.length * 4));
    const view = Buffer.from(data);
    let at = 0;
    for (let i = 0; i < payloads.length; i++) {
      view.set(payloads[i]!, at);
      at += payloads[i]!.length;
      ends[i] = at;
    }
    try {
      await this.run(data, ends, out);
    } catch {
      return payloads.map(digestOf);
    }
    this.offloaded++;
    const digests = Buffer.from(out);
    const result = new Array<Buffer>(payloads.length);
    for (let i = 0; i < payloads.length; i++) result[i] = digests.subarray(i * 16, i * 16 + 16);
    return result;
  }

  private run(data: SharedArrayBuffer, ends: Int32Array, out: SharedArrayBuffer): Promise<void> {
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Keep the process alive while a batch is being hashed (the idle worker is unref'd).
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, data, ends, out });
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (id: number) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      // Nothing queued: an idle worker must not keep the process alive.
      if (this.pending.size === 0) worker.unref();
      p.resolve();
    });
    const fail = (e: unknown): void => {
      this.broken = true;
      this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`digest worker exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  /** Stops the worker (pending batches fall back to inline hashing). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    if (w) await w.terminate();
  }
}

/** The engine's offload rule: the event loop is busy and a core is free for the worker. */
export function offloadWhenWorthIt(): () => boolean {
  const busy = eventLoopBusy();
  const spare = spareCore();
  return () => {
    // both asked every time, so that each window is measured over its own length
    const b = busy();
    const s = spare();
    return b && s;
  };
}
