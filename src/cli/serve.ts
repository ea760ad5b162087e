/**
 * `ferry serve` reads the RS_* environment (api.md §18); `--port`, `--host` and `--data` override
 * RS_PORT, RS_HOST and RS_DATA_PATH. The server is loaded only when this command runs, so the
 * client commands start fast.
 */
import { setFlagsFromString } from 'node:v8';
import { Command, InvalidArgumentError } from 'commander';
import { heapGrowingFlag } from './heap.js';

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}

/** Applies `FERRY_HEAP_GROWING_PERCENT` (src/cli/heap.ts); exits with 1 on an invalid value. */
function tuneHeap(value: string | undefined): void {
  let flag: string | undefined;
  try {
    flag = heapGrowingFlag(value);
  } catch (e) {
    console.error(`ferry: ${(e as Error).message}`);
    process.exit(1);
  }
  if (flag !== undefined) setFlagsFromString(flag);
}

/** The `serve` command. */
export function serveCommand(): Command {
  return new Command('serve')
    .description('run the server (configured by RS_* environment variables)')
    .option('-p, --port <port>', 'listen port (overrides RS_PORT)', parsePort)
    .option('-H, --host <host>', 'listen address (overrides RS_HOST)')
    .option('-d, --data <path>', 'data directory (overrides RS_DATA_PATH)')
    .action(async (opts: { port?: number; host?: string; data?: string }) => {
      const env = { ...process.env };
      tuneHeap(env.FERRY_HEAP_GROWING_PERCENT);
      if (opts.port !== undefined) env.RS_PORT = String(opts.port);
      if (opts.host !== undefined) env.RS_HOST = opts.host;
      if (opts.data !== undefined) env.RS_DATA_PATH = opts.data;
      const { loadConfig } = await import('../config/load-config.js');
      const { startFerry } = await import('../server.js');
      try {
        await startFerry(loadConfig(env), { handleSignals: true });
      } catch (e) {
        console.error(`ferry: ${(e as Error).message}`);
        process.exit(1);
      }
    });
}
