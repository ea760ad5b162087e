/**
 * An in-process Ferry for API tests: fresh temp data directory, a known full-access token,
 * loopback listener on a free port, no `$system` events unless asked for.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load-config.js';
import { startFerry, type RunningFerry } from '../../src/server.js';

export interface TestServer {
  ferry: RunningFerry;
  dir: string;
}

/** Starts a server; `env` adds or overrides variables (RS_DATA_PATH is always the temp dir). */
export async function startTestServer(
  name: string,
  token: string,
  env: Record<string, string> = {},
): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), `ferry-${name}-`));
  return { ferry: await startFerryIn(dir, token, env), dir };
}

/**
 * Starts a server on an existing data directory (a restart keeps its data); `log` receives the
 * server's log lines (default: dropped).
 */
export function startFerryIn(
  dir: string,
  token: string,
  env: Record<string, string> = {},
  log: (line: string) => void = () => undefined,
): Promise<RunningFerry> {
  const config = loadConfig({
    RS_API_TOKEN: token,
    RS_HOST: '127.0.0.1',
    RS_PORT: '0',
    RS_SYSTEM_EVENTS_ENABLED: 'false',
    ...env,
    RS_DATA_PATH: dir,
  });
  return startFerry(config, { log });
}

/** Stops the server and removes its data directory. */
export async function stopTestServer(server: TestServer | undefined): Promise<void> {
  if (!server) return;
  await server.ferry.close();
  await rm(server.dir, { recursive: true, force: true });
}
