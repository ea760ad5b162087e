/** The part of a FerryConfig the lifecycle manager reads, for tests that run it on bare storage. */
import type { FerryConfig, ProvisionedLifecycle } from '../../src/config/types.js';
import {
  LifecycleManager,
  type LifecycleClock,
  type LifecycleManagerOptions,
} from '../../src/lifecycle/manager.js';
import type { RunResult } from '../../src/lifecycle/store.js';
import type { Storage } from '../../src/storage/types.js';

/** Config for a data directory without fsyncs and without provisioned policies. */
export function ConfigFree(
  dataPath: string,
  lifecycles: ProvisionedLifecycle[] = [],
): Pick<FerryConfig, 'dataPath' | 'storage' | 'lifecycles'> {
  return { dataPath, storage: { durability: 'none' }, lifecycles };
}

/**
 * A lifecycle manager on bare storage whose runs are appended to `events` (the `$system` event of
 * each run) and whose warnings are dropped; `extra` adds or overrides options.
 */
export function openTestLifecycles(
  storage: Storage,
  dataPath: string,
  clock: LifecycleClock,
  events: RunResult[],
  extra: Partial<LifecycleManagerOptions> = {},
): Promise<LifecycleManager> {
  return LifecycleManager.open({
    storage,
    config: ConfigFree(dataPath),
    clock,
    onRun: (_p, _l, r) => events.push(r),
    warn: () => undefined,
    ...extra,
  });
}
