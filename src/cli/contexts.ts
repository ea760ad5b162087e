/**
 * Named contexts (`ferry context add edge --url … --token …`), kept like reduct-cli's aliases in one
 * JSON file readable by its owner only (0600): `$FERRY_CONFIG`, else
 * `$XDG_CONFIG_HOME/ferry/contexts.json`, else `~/.config/ferry/contexts.json`.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** One named server. */
export interface Context {
  url: string;
  token?: string;
}

/** The file's content. */
export interface ContextFile {
  /** Context used when none is named. */
  current?: string;
  contexts: Record<string, Context>;
}

/** Path of the contexts file for an environment. */
export function contextsPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_CONFIG) return env.FERRY_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'ferry', 'contexts.json');
}

/** Reads the contexts file (empty when it does not exist). */
export async function readContexts(path: string): Promise<ContextFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { contexts: {} };
    throw e;
  }
  const parsed = JSON.parse(text) as Partial<ContextFile>;
  return { current: parsed.current, contexts: parsed.contexts ?? {} };
}

/** Writes the contexts file atomically with mode 0600 (it holds tokens). */
export async function writeContexts(path: string, file: ContextFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
