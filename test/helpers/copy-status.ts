/**
 * Watching initial copies on a real server (replication.md §6, §9): the status route with its
 * `progress`, waiting for a state, and a poller that records every progress figure it sees so that
 * a test can assert that progress only grows, across restarts of either side.
 */
import { EventSource } from 'eventsource';
import { parseJson } from '../../src/protocol/json.js';
import type { ReplicationStatus } from '../../src/protocol/replication-status.js';
import { api, type ApiNode } from './ferry-api.js';
import { waitFor } from './wait.js';

/** `progress` of a copy in the status route (issue 9 item 2); totals and percent are null while counting. */
export interface CopyProgress {
  records_done: number;
  records_total: number | null;
  bytes_done: number;
  bytes_total: number | null;
  percent: number | null;
  records_per_sec: number;
  eta_seconds: number | null;
}

/** The status route's answer with the copy's progress (absent when the replication copies nothing). */
export type CopyStatus = ReplicationStatus & { progress?: CopyProgress | null };

/** `GET /replications/{name}/status`; throws unless 200. */
export async function copyStatus(node: ApiNode, name: string): Promise<CopyStatus> {
  return (await api(node, 'GET', `/replications/${encodeURIComponent(name)}/status`)) as CopyStatus;
}

/**
 * Waits until replication `name` is in `state` (or `accept` says yes) and returns that status; a
 * suspended replication fails at once with its reason.
 */
export async function waitCopyState(
  node: ApiNode,
  name: string,
  accept: string | ((s: CopyStatus) => boolean),
  timeoutMs = 90_000,
): Promise<CopyStatus> {
  const ok = typeof accept === 'string' ? (s: CopyStatus) => s.state === accept : accept;
  return await waitFor(
    async () => {
      const s = await copyStatus(node, name);
      if (s.state === 'suspended') throw new Error(`replication '${name}' suspended: ${s.state_reason}`);
      return ok(s) ? s : false;
    },
    { timeoutMs, intervalMs: 50, message: `replication '${name}' to be ${String(accept)}` },
  ).catch(async (err: Error) => {
    // a suspension is final: report it instead of the timeout
    const s = await copyStatus(node, name).catch(() => undefined);
    throw new Error(
      `${err.message}; last status: ${JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
    );
  });
}

/** One progress figure as polled. */
export interface ProgressSample {
  at: number;
  state: string;
  progress: CopyProgress;
}

/**
 * Polls the progress of one replication every `intervalMs` while the server may come and go (failed
 * polls are skipped) and keeps every figure; `regressions()` lists the samples where a figure fell.
 */
export class ProgressWatch {
  readonly samples: ProgressSample[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly node: () => ApiNode,
    private readonly name: string,
    private readonly intervalMs = 50,
  ) {}

  start(): this {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const s = await copyStatus(this.node(), this.name);
          if (s.progress) this.samples.push({ at: Date.now(), state: s.state, progress: s.progress });
        } catch {
          // the server is down for a moment
        }
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
    })();
    return this;
  }

  /** The latest sample, if any. */
  last(): ProgressSample | undefined {
    return this.samples.at(-1);
  }

  /**
   * Stops polling, then takes one more sample (retried while the server is briefly unreachable), so
   * that the last sample is the state at the end: a poll that failed just before the stop (a
   * keep-alive socket closed under load) would otherwise leave an older sample last.
   */
  async stop(): Promise<void> {
    if (this.stopped) return this.loop;
    this.stopped = true;
    await this.loop;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const s = await copyStatus(this.node(), this.name);
        if (s.progress) this.samples.push({ at: Date.now(), state: s.state, progress: s.progress });
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Descriptions of every figure that went down from one sample to the next. */
  regressions(): string[] {
    const out: string[] = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1]!.progress;
      const b = this.samples[i]!.progress;
      for (const k of ['records_done', 'bytes_done', 'percent', 'records_total', 'bytes_total'] as const) {
        const x = a[k];
        const y = b[k];
        // a total or percent appears once counted and never goes back to unknown
        if (x !== null && (y === null || y < x)) out.push(`${this.name}: ${k} ${x} → ${y} (sample ${i})`);
      }
      if (a.records_total !== null && b.records_total !== null && b.records_total !== a.records_total)
        out.push(`${this.name}: records_total ${a.records_total} → ${b.records_total} (sample ${i})`);
    }
    return out;
  }
}

/** One event received by {@link subscribeEvents}. */
export interface ReceivedEvent {
  event: 'status' | 'state';
  data: unknown;
  at: number;
}

/** An EventSource on `/api/v1{path}` with the node's token, collecting every status and state event. */
export function subscribeEvents(node: ApiNode, path: string): { es: EventSource; got: ReceivedEvent[] } {
  const got: ReceivedEvent[] = [];
  const es = new EventSource(`${node.url}/api/v1${path}`, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${node.token}` } }),
  });
  for (const event of ['status', 'state'] as const) {
    es.addEventListener(event, (e) => got.push({ event, data: parseJson(e.data), at: Date.now() }));
  }
  return { es, got };
}
