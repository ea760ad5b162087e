/** Polling for benchmarks. */

/**
 * Calls `check` every `intervalMs` until it resolves true. Throws when `timeoutMs` has passed, and
 * passes on anything `check` throws (a benchmark stops at the first error instead of retrying).
 */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
