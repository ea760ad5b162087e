/**
 * `GET /metrics` figures (replication.md §9) in the Prometheus text format, through prom-client
 * (its own registry, not the process-global one): per replication the figures of its status,
 * read from the monitor at scrape time; per bucket the records and bytes written and read through
 * the HTTP API (counted by the instrumented services of instrument.ts); per route family the
 * request count and latency (observed by the app); and prom-client's process metrics.
 */
import type { ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { REPLICATION_STATES } from '../protocol/replication-status.js';
import type { MonitorService } from './services.js';

/** Counts records written and read per bucket (the instrumented services call it). */
export interface RecordCounters {
  written(bucket: string, records: number, bytes: number): void;
  read(bucket: string, records: number, bytes: number): void;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The registry and the metrics of one server. */
export class FerryMetrics implements RecordCounters {
  readonly registry = new Registry();
  private readonly requests: Counter<'family' | 'method' | 'status'>;
  private readonly latency: Histogram<'family' | 'method'>;
  private readonly bucketRecords: Counter<'bucket' | 'op'>;
  private readonly bucketBytes: Counter<'bucket' | 'op'>;
  private readonly repl: {
    state: Gauge<'replication' | 'state'>;
    active: Gauge<'replication'>;
    pendingRecords: Gauge<'replication'>;
    pendingBytes: Gauge<'replication'>;
    lag: Gauge<'replication'>;
    shippedRecords: Counter<'replication'>;
    shippedBytes: Counter<'replication'>;
    alreadyPresent: Counter<'replication'>;
    filtered: Counter<'replication'>;
    retries: Counter<'replication'>;
    failures: Counter<'replication'>;
    consecutiveFailures: Gauge<'replication'>;
  };

  /** @param monitor the replication monitor once replication has started */
  constructor(private readonly monitor: () => MonitorService | undefined) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'ferry_' });
    this.requests = new Counter({
      name: 'ferry_http_requests_total',
      help: 'HTTP requests answered, by route family (the route pattern), method and status',
      labelNames: ['family', 'method', 'status'],
      registers,
    });
    this.latency = new Histogram({
      name: 'ferry_http_request_duration_seconds',
      help: 'Time from the request to the end of its response, by route family and method',
      labelNames: ['family', 'method'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.bucketRecords = new Counter({
      name: 'ferry_bucket_records_total',
      help: 'Records written (op="written") and read (op="read") through the HTTP API, per bucket',
      labelNames: ['bucket', 'op'],
      registers,
    });
    this.bucketBytes = new Counter({
      name: 'ferry_bucket_bytes_total',
      help: 'Payload bytes written (op="written") and read (op="read") through the HTTP API, per bucket',
      labelNames: ['bucket', 'op'],
      registers,
    });
    const gauge = (name: string, help: string): Gauge<'replication'> =>
      new Gauge({ name, help, labelNames: ['replication'], registers });
    const counter = (name: string, help: string): Counter<'replication'> =>
      new Counter({ name, help, labelNames: ['replication'], registers });
    this.repl = {
      state: new Gauge({
        name: 'ferry_replication_state',
        help: '1 for the state the replication is in, 0 for the others',
        labelNames: ['replication', 'state'],
        registers,
      }),
      active: gauge('ferry_replication_active', 'The compatible is_active: 1 or 0'),
      pendingRecords: gauge('ferry_replication_pending_records', 'Records not delivered yet'),
      pendingBytes: gauge('ferry_replication_pending_bytes', 'Payload bytes not delivered yet'),
      lag: gauge('ferry_replication_lag_seconds', 'Age of the oldest record not delivered yet (0 when none)'),
      shippedRecords: counter(
        'ferry_replication_shipped_records_total',
        'Records written to the destination',
      ),
      shippedBytes: counter(
        'ferry_replication_shipped_bytes_total',
        'Payload bytes written to the destination',
      ),
      alreadyPresent: counter(
        'ferry_replication_already_present_records_total',
        'Records the destination already held (idempotent re-delivery)',
      ),
      filtered: counter(
        'ferry_replication_filtered_records_total',
        'Records left out by the `when` condition',
      ),
      retries: counter(
        'ferry_replication_retries_total',
        'Retries after temporary failures (since the task started)',
      ),
      failures: counter(
        'ferry_replication_failed_records_total',
        'Records the destination refused permanently',
      ),
      consecutiveFailures: gauge(
        'ferry_replication_consecutive_failures',
        'Failed delivery attempts since the last success',
      ),
    };
  }

  /** Counts the request of `res` and its latency once the response is finished (or cut: `aborted`). */
  track(res: ServerResponse, family: string, method: string): void {
    const start = process.hrtime.bigint();
    res.once('close', () => {
      const status = res.writableFinished ? String(res.statusCode) : 'aborted';
      this.requests.inc({ family, method, status });
      this.latency.observe({ family, method }, Number(process.hrtime.bigint() - start) / 1e9);
    });
  }

  written(bucket: string, records: number, bytes: number): void {
    this.bucketRecords.inc({ bucket, op: 'written' }, records);
    this.bucketBytes.inc({ bucket, op: 'written' }, bytes);
  }

  read(bucket: string, records: number, bytes: number): void {
    this.bucketRecords.inc({ bucket, op: 'read' }, records);
    this.bucketBytes.inc({ bucket, op: 'read' }, bytes);
  }

  /** The exposition: replication figures read now, then every metric as text. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.collectReplications();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private collectReplications(): void {
    const r = this.repl;
    for (const m of Object.values(r)) m.reset();
    const monitor = this.monitor();
    if (!monitor) return;
    for (const name of monitor.names()) {
      let s;
      try {
        s = monitor.status(name);
      } catch {
        continue; // removed meanwhile
      }
      const l = { replication: name };
      for (const state of REPLICATION_STATES)
        r.state.set({ replication: name, state }, s.state === state ? 1 : 0);
      r.active.set(l, s.is_active ? 1 : 0);
      r.pendingRecords.set(l, s.pending_records);
      r.pendingBytes.set(l, s.pending_bytes);
      r.lag.set(l, s.lag_ms / 1000);
      r.shippedRecords.inc(l, s.counters.records_written);
      r.shippedBytes.inc(l, s.counters.bytes_written);
      r.alreadyPresent.inc(l, s.counters.records_already_present);
      r.filtered.inc(l, s.counters.records_filtered);
      r.retries.inc(l, s.retries);
      r.failures.inc(l, s.counters.records_failed);
      r.consecutiveFailures.set(l, s.consecutive_failures);
    }
  }
}
