/** Timers the SDK waits on; an abort ends the wait with code -5. */
import { Errors } from '../protocol/errors.js';

/** Resolves after `ms`, or rejects with the abort error as soon as `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(Errors.clientAborted());
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(Errors.clientAborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
