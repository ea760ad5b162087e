/** JSON calls to a running Ferry process's API, for tests (throws with the x-reduct-error on failure). */
import type { FerryProcess } from './ferry-process.js';

export async function api(
  node: Pick<FerryProcess, 'url' | 'token'>,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(`${node.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${node.token}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${res.headers.get('x-reduct-error') ?? ''}`);
  return text ? (JSON.parse(text) as unknown) : undefined;
}
