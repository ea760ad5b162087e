/**
 * The undici pool to another instance that remote targets, group targets and verify peers open
 * when they are not given a remote's shared pool: one place for its timeouts and TLS settings.
 */
import type { Pool } from 'undici';
import { undici } from './undici.js';

/** Settings of {@link destinationPool}. */
export interface DestinationPoolOptions {
  connections: number;
  /** Headers and body timeout of a request. */
  timeoutMs: number;
  /** Connect timeout (default `timeoutMs`). */
  connectTimeoutMs?: number;
  verifyTls: boolean;
  ca?: string | Buffer | undefined;
  /** Extra pool options (pipelining, keep-alive, header size). */
  extra?: Omit<Pool.Options, 'connect' | 'connections' | 'headersTimeout' | 'bodyTimeout'>;
}

/** A keep-alive pool to `url`'s origin. */
export function destinationPool(url: URL, o: DestinationPoolOptions): Pool {
  return new (undici().Pool)(url.origin, {
    ...o.extra,
    connections: o.connections,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    connect: {
      timeout: o.connectTimeoutMs ?? o.timeoutMs,
      rejectUnauthorized: o.verifyTls,
      ...(o.ca ? { ca: o.ca } : {}),
    },
  });
}
