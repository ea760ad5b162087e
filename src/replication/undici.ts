/**
 * undici, loaded on its first use: it takes ~120 ms of CPU to load (its fetch implementation comes
 * with it), which a server without remote destinations, and every CLI command, would otherwise pay
 * at start-up. undici is CommonJS, so a synchronous require serves the synchronous constructors
 * that open pools.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);
let loaded: typeof Undici | undefined;

/** The undici module. */
export function undici(): typeof Undici {
  return (loaded ??= require('undici') as typeof Undici);
}
