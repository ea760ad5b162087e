/**
 * Composition root: wires storage, tokens, system events, queries and replication into the HTTP
 * server and owns the process lifecycle (start-up order, readiness, clean shutdown).
 */
import type { AddressInfo } from 'node:net';
import type { FerryConfig } from './config/types.js';
import { openStorage } from './storage/engine.js';
import type { Storage, StorageFaults } from './storage/types.js';
import { openTokenStore } from './auth/token-store.js';
import { resolveClientIp } from './auth/client-ip.js';
import { createHttpServer, type FerryHttpServer } from './http/app.js';
import type { HttpServices } from './http/services.js';
import { setErrorLogger } from './http/respond.js';
import { QueryManager } from './query/query-manager.js';
import { SystemEvents } from './system/system-events.js';
import { ReplicationManager } from './replication/manager.js';
import { ReplicationMonitor } from './replication/monitor.js';
import { SyncGates } from './replication/sync-gates.js';
import { syncWrites } from './http/sync-writes.js';
import { LinkKeys } from './http/links/link-keys.js';
import { FiltersStore } from './replication/filters-store.js';
import { FilterService } from './replication/filter-service.js';
import { RemoteRegistry } from './replication/remotes.js';
import { LifecycleManager } from './lifecycle/manager.js';
import { GroupService } from './replication/group-service.js';

/** A running Ferry instance. */
export interface RunningFerry {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:8383` (without the API base path). */
  readonly url: string;
  /** The storage it serves (for in-process callers such as tests; not for use after close). */
  readonly storage: Storage;
  /** Stops listening, finishes requests in flight and closes every service. Idempotent. */
  close(): Promise<void>;
}

/** Options of `startFerry` that are not part of the environment configuration. */
export interface StartOptions {
  /** Install SIGTERM/SIGINT handlers that close the server (default false; the CLI sets it). */
  handleSignals?: boolean;
  /** Where the start line and warnings go (default console.log). */
  log?: (line: string) => void;
  /** Storage fault injection (tests only). */
  storageFaults?: StorageFaults;
}

function describeAuth(config: FerryConfig): string {
  switch (config.auth.mode) {
    case 'disabled':
      return 'authentication disabled';
    case 'provisioned':
      return 'authentication by RS_API_TOKEN';
    case 'init':
      return 'authentication by RS_INIT_API_TOKEN';
    default:
      return 'authentication by provisioned/stored tokens';
  }
}

async function applyProvisionedBuckets(storage: Storage, config: FerryConfig): Promise<void> {
  // Re-applied at every start: creates the bucket, or re-applies the settings of an existing one
  // (also turning a bucket created over HTTP into a provisioned one).
  for (const b of config.buckets) await storage.createBucket(b.name, b.settings, { provisioned: true });
}

/**
 * Starts Ferry with a resolved configuration and resolves once it listens. Port 0 picks a free
 * port. Logs one line: `Ferry listening on <url> (<auth decision>, ...)` — never a token.
 */
export async function startFerry(config: FerryConfig, opts: StartOptions = {}): Promise<RunningFerry> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const startedAt = Date.now();
  let ready = false;

  const storage = await openStorage({
    dataPath: config.dataPath,
    defaults: config.defaults,
    durability: config.storage.durability,
    log,
    faults: opts.storageFaults,
  });
  const closers: Array<() => Promise<void>> = [() => storage.close()];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (e) {
        console.error(`Error while closing: ${(e as Error).message}`);
      }
    }
  };

  let http: FerryHttpServer | undefined;
  let port: number;
  try {
    await applyProvisionedBuckets(storage, config);
    const tokens = await openTokenStore(config);
    closers.push(() => tokens.close());
    const system = await SystemEvents.open({ storage, config });
    closers.push(() => system.close());
    const queries = new QueryManager({
      storage,
      limits: {
        maxRecords: config.io.batchMaxRecords,
        maxSize: config.io.batchMaxSize,
        maxMetadataSize: config.io.batchMaxMetadataSize,
        batchTimeoutMs: config.io.batchTimeoutMs,
        recordTimeoutMs: config.io.batchRecordsTimeoutMs,
      },
      bounds: config.queries,
    });
    closers.push(async () => queries.close());
    const linkKeys = await LinkKeys.open(config.dataPath, { sync: config.storage.durability !== 'none' });
    const lifecycles = await LifecycleManager.open({
      storage,
      config,
      onRun: (policy, labels, result) => system.lifecycleRun(policy, labels, result),
      warn: (msg) => {
        log(`Warning: ${msg}`);
        system.log('WARN', msg);
      },
    });
    closers.push(() => lifecycles.close());
    const groups = await GroupService.open({
      storage,
      dataPath: config.dataPath,
      sync: config.storage.durability !== 'none',
      provisioned: config.groups,
      warn: (msg) => {
        log(`Warning: ${msg}`);
        system.log('WARN', msg);
      },
    });

    // client writes pass the gates of sync replications (replication.md §7)
    const syncGates = new SyncGates();
    const services: HttpServices = {
      config,
      storage: syncWrites(storage, syncGates),
      tokens,
      queries,
      system,
      linkKeys,
      lifecycles,
      groups,
      clientIp: (peer, headers) => resolveClientIp(peer, headers),
      startedAt,
      isReady: () => ready,
    };
    setErrorLogger((msg) => {
      console.error(msg);
      system.log('ERROR', msg);
    });
    const h = createHttpServer(services);
    http = h;
    await new Promise<void>((resolve, reject) => {
      h.server.once('error', reject);
      h.server.listen(config.port, config.host, () => {
        h.server.off('error', reject);
        resolve();
      });
    });
    port = (h.server.address() as AddressInfo).port;
    // Replication needs the bound port (self-loop check); /ready stays 503 until it is up.
    const filterStore = await FiltersStore.open(config.dataPath, config.storage.durability !== 'none');
    const remotes = await RemoteRegistry.open({
      dataPath: config.dataPath,
      sync: config.storage.durability !== 'none',
      defaults: { timeoutMs: config.replication.timeoutMs, verifyTls: config.replication.verifySsl },
      warn: (msg) => log(`Warning: ${msg}`),
    });
    closers.push(() => remotes.close());
    const replications = await ReplicationManager.open({
      storage,
      config,
      port,
      filters: filterStore,
      syncGates,
      remotes,
      groups,
    });
    remotes.setUsers((remote) => replications.remoteUsers(remote));
    const filters = new FilterService(filterStore, replications);
    closers.push(() => replications.close());
    const verify = replications.verifications; // base seeding runs its verifications too
    const monitor = new ReplicationMonitor(replications, {
      filterOf: (name) => filters.refOf(name),
      verifications: verify,
    });
    closers.push(async () => monitor.close());
    services.replications = replications;
    services.monitor = monitor;
    services.filters = filters;
    services.remotes = remotes;
    services.verify = verify;
    // the events stream hears the engine's own transitions and changes, and verifications
    services.events = {
      subscribe: (name, listener) => {
        const offTask = replications.subscribe(name, listener);
        const offVerify = verify.subscribe(name, listener);
        return () => {
          offTask();
          offVerify();
        };
      },
    };
  } catch (e) {
    if (http?.server.listening) await http.close();
    await closeAll();
    throw e;
  }
  const server = http;

  const hostPart = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${server.protocol}://${hostPart}:${port}`;
  for (const w of config.warnings) log(`Warning: ${w}`);
  ready = true;
  log(
    `Ferry listening on ${url} (${describeAuth(config)}, data ${config.dataPath}, ` +
      `API ${config.apiBasePath}api/v1/, instance ${storage.instanceId})`,
  );

  let closing: Promise<void> | undefined;
  const onSignal = (): void => {
    void close().then(() => process.exit(0));
  };
  const close = (): Promise<void> => {
    closing ??= (async () => {
      ready = false;
      if (opts.handleSignals) {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
      await server.close();
      await closeAll();
    })();
    return closing;
  };
  if (opts.handleSignals) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  return { port, url, storage, close };
}
