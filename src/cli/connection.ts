/**
 * Which server a command talks to: `--url`/`--token`, else `FERRY_URL`/`FERRY_TOKEN`, else the
 * context named by `--context` or `FERRY_CONTEXT`, else the current context, else
 * `http://127.0.0.1:8383` without a token. A token given alone applies to whichever URL wins.
 */
import type { Command } from 'commander';
import { FerryClient } from '../client/index.js';
import { contextsPath, readContexts, type Context } from './contexts.js';
import { CliError, EXIT, type Output } from './output.js';

/** The options every command inherits from `ferry`. */
export interface GlobalOptions {
  url?: string;
  token?: string;
  context?: string;
  json?: boolean;
  timeout?: number;
}

export const DEFAULT_URL = 'http://127.0.0.1:8383';

/** The global options of a command (its own merged with `ferry`'s). */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** Output settings of a command. */
export function outputOf(cmd: Command): Output {
  return { json: globals(cmd).json === true };
}

/** Looks up a named context; a clear error when it does not exist. */
export async function namedContext(name: string, env: NodeJS.ProcessEnv = process.env): Promise<Context> {
  const file = await readContexts(contextsPath(env));
  const ctx = file.contexts[name];
  if (!ctx) {
    throw new CliError(
      `No context '${name}' in ${contextsPath(env)}; list them with 'ferry context ls'.`,
      EXIT.usage,
    );
  }
  return ctx;
}

/** URL and token for the global options and environment. */
export async function resolveConnection(
  opts: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Context> {
  const token = opts.token ?? env.FERRY_TOKEN;
  const url = opts.url ?? env.FERRY_URL;
  if (url !== undefined) return { url, token };
  const name = opts.context ?? env.FERRY_CONTEXT;
  let ctx: Context | undefined;
  if (name !== undefined) ctx = await namedContext(name, env);
  else {
    const file = await readContexts(contextsPath(env));
    if (file.current !== undefined) ctx = file.contexts[file.current];
  }
  if (ctx) return { url: ctx.url, token: token ?? ctx.token };
  return { url: DEFAULT_URL, token };
}

/** The SDK client of a command. */
export async function clientOf(cmd: Command): Promise<FerryClient> {
  const opts = globals(cmd);
  const { url, token } = await resolveConnection(opts);
  return new FerryClient(url, { token, timeoutMs: opts.timeout });
}
