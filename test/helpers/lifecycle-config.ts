/** The part of a FerryConfig the lifecycle manager reads, for tests that run it on bare storage. */
import type { FerryConfig, ProvisionedLifecycle } from '../../src/config/types.js';

/** Config for a data directory without fsyncs and without provisioned policies. */
export function ConfigFree(
  dataPath: string,
  lifecycles: ProvisionedLifecycle[] = [],
): Pick<FerryConfig, 'dataPath' | 'storage' | 'lifecycles'> {
  return { dataPath, storage: { durability: 'none' }, lifecycles };
}
