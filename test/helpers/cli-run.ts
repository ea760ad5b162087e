/**
 * Runs the compiled `ferry` command as a subprocess (optionally under a real pseudo-terminal with
 * util-linux `script`), with a clean environment so that no user contexts or tokens leak in.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Path of the compiled CLI. */
export const CLI_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

/** Result of one run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link runCli}. */
export interface RunCliOptions {
  env?: Record<string, string | undefined>;
  /** Run under a pseudo-terminal (`script -qec`): stdout and stderr then arrive merged in `stdout`. */
  tty?: boolean;
  timeoutMs?: number;
  /** Terminal width under `tty`. */
  columns?: number;
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** Runs `ferry <args>` and collects its output and exit code. */
export function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
  const cmd = [process.execPath, CLI_PATH, ...args];
  const child = opts.tty
    ? spawn(
        'script',
        ['-qec', `stty cols ${opts.columns ?? 120} rows 40; ${cmd.map(shellQuote).join(' ')}`, '/dev/null'],
        { env: { ...env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] },
      )
    : spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ferry ${args.join(' ')} did not exit in time:\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
