/**
 * Runs a real Ferry server (`node dist/src/cli/main.js serve`) as a child process, for benchmarks and
 * for tests (re-exported by `test/helpers/ferry-process.ts`). Children are killed when this process
 * exits, so a failing test never leaves a server behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

export { freePort };

/** Options of {@link spawnFerry}. */
export interface SpawnFerryOptions {
  /** Data directory; default: a fresh directory under os.tmpdir(), removed by `destroy()` or at process exit. */
  dataPath?: string;
  /** Extra environment variables for the server (RS_* from the parent environment are not inherited). */
  env?: Record<string, string>;
  /** Value for `RS_API_TOKEN`; default a random token; `''` starts the server without one. */
  token?: string;
  /** Port to listen on; default a free port on 127.0.0.1. */
  port?: number;
  /** Script to run instead of the compiled Ferry CLI (its first argument is still `serve`). */
  cliPath?: string;
  /**
   * A shell command line that starts the server instead (such as the README's `npm start`), run by
   * `/bin/sh -c` in `cwd` with the same environment, in a process group of its own that every signal
   * goes to.
   */
  command?: string;
  /** Working directory of `command` (default: this process's). */
  cwd?: string;
  /** How long to wait for the `Ferry listening on` line (default 15 s). */
  startTimeoutMs?: number;
  /** Also copy the server's output to this process's stderr (or set FERRY_ECHO=1). */
  echo?: boolean;
}

/** A running (or stopped) Ferry child process. `url`, `pid` and `port` follow restarts. */
export interface FerryProcess {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** The `RS_API_TOKEN` value ('' when none). */
  readonly token: string;
  readonly dataPath: string;
  /** PID of the current server process. */
  readonly pid: number;
  /** True while the current server process has not exited. */
  readonly running: boolean;
  /** Sends `signal` (default SIGKILL: a crash) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server if it still runs (SIGTERM), then starts it again on the same data path and port. */
  restart(): Promise<void>;
  /** SIGTERM and wait for exit (SIGKILL after `graceMs`, default 10 s). */
  stop(graceMs?: number): Promise<void>;
  /** `stop()`, then remove the data directory if spawnFerry created it. */
  destroy(): Promise<void>;
  /** Captured stdout+stderr of all runs (the last 2 MB), for diagnostics. */
  output(): string;
}

const READY_LINE = 'Ferry listening on';
const MAX_OUTPUT = 2 * 1024 * 1024;
const here = fileURLToPath(new URL('.', import.meta.url));
/** bench/lib and test/helpers both compile two levels below dist/, like src/cli. */
const DEFAULT_CLI = join(here, '..', '..', 'src', 'cli', 'main.js');

const live = new Set<ChildProcess>();
/** Children started from a `command`: leaders of their own process group. */
const groups = new WeakSet<ChildProcess>();

/** Sends `signal` to a child, or to its whole process group when it leads one. */
function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!groups.has(child) || child.pid === undefined) {
    child.kill(signal);
    return;
  }
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

/** Data directories created by spawnFerry that have not been destroyed yet. */
const ownedDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * Resolves once no process of the group led by `pid` is left (a shell exits before the server it
 * started has shut down); SIGKILLs the group after `graceMs`.
 */
async function groupGone(pid: number, graceMs = 10_000): Promise<void> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    try {
      process.kill(-pid, Date.now() < deadline ? 0 : 'SIGKILL');
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function killAll(): void {
  for (const child of live) signalChild(child, 'SIGKILL');
  for (const dir of ownedDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // a just-killed server may still be writing; leave the directory rather than fail the exit
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAll);
  // A signal would bypass 'exit'; only take over when nobody else handles it, and re-raise after.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    if (process.listenerCount(sig) > 0) continue;
    const handler = (): void => {
      killAll();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/**
 * Extra node flags for every server started from the compiled CLI, from `FERRY_NODE_FLAGS`
 * (whitespace-separated), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a bench's servers.
 */
function nodeFlags(): string[] {
  return (process.env.FERRY_NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== '');
}

function inheritedEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('RS_')) out[k] = v;
  }
  return out;
}

class FerryChild implements FerryProcess {
  readonly token: string;
  readonly dataPath: string;
  private portValue: number;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private log = '';

  constructor(
    private readonly opts: SpawnFerryOptions,
    port: number,
    private readonly ownsDataPath: boolean,
    dataPath: string,
    token: string,
  ) {
    this.portValue = port;
    this.dataPath = dataPath;
    this.token = token;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portValue}`;
  }
  get port(): number {
    return this.portValue;
  }
  get pid(): number {
    return this.child?.pid ?? -1;
  }
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.log;
  }

  private append(text: string): void {
    this.log += text;
    if (this.log.length > MAX_OUTPUT) this.log = this.log.slice(this.log.length - MAX_OUTPUT);
    if (this.opts.echo === true || process.env.FERRY_ECHO === '1') process.stderr.write(text);
  }

  setPort(port: number): void {
    this.portValue = port;
  }

  /** Starts the process and resolves once it printed the ready line. */
  async start(): Promise<void> {
    const env: Record<string, string> = {
      // As `npm start` runs the server: fewer glibc malloc arenas keep RSS down (README).
      MALLOC_ARENA_MAX: '2',
      ...inheritedEnv(),
      RS_PORT: String(this.portValue),
      RS_HOST: '127.0.0.1',
      RS_DATA_PATH: this.dataPath,
      ...(this.token !== '' ? { RS_API_TOKEN: this.token } : {}),
      ...this.opts.env,
    };
    const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
    const command = this.opts.command;
    const child =
      command === undefined
        ? spawn(process.execPath, [...nodeFlags(), this.opts.cliPath ?? DEFAULT_CLI, 'serve'], { env, stdio })
        : spawn('/bin/sh', ['-c', command], { env, stdio, cwd: this.opts.cwd, detached: true });
    if (command !== undefined) groups.add(child);
    this.child = child;
    live.add(child);
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.append(`[ferry-process] pid ${child.pid ?? '?'} exited (code ${code}, signal ${signal})\n`);
        const gone = groups.has(child) && child.pid !== undefined ? groupGone(child.pid) : Promise.resolve();
        void gone.then(() => {
          live.delete(child);
          resolve();
        });
      });
    });
    const timeoutMs = this.opts.startTimeoutMs ?? 15_000;
    await new Promise<void>((resolve, reject) => {
      let pending = '';
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        signalChild(child, 'SIGKILL');
        finish(this.failure(`did not print "${READY_LINE}" within ${timeoutMs} ms`));
      }, timeoutMs);
      child.stdout?.setEncoding('utf8');
      child.stderr?.setEncoding('utf8');
      child.stdout?.on('data', (text: string) => {
        this.append(text);
        if (settled) return;
        pending += text;
        if (pending.includes(READY_LINE)) finish();
        else pending = pending.slice(-READY_LINE.length);
      });
      child.stderr?.on('data', (text: string) => this.append(text));
      child.once('error', (err) => finish(this.failure(`could not be spawned: ${err.message}`)));
      child.once('exit', () => finish(this.failure('exited before it was ready')));
    });
  }

  private failure(what: string): Error {
    return new Error(
      `Ferry server (port ${this.portValue}, data ${this.dataPath}) ${what}.\n--- output ---\n${this.log}`,
    );
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running || this.child === undefined) return;
    signalChild(this.child, signal);
    await this.exited;
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running || this.child === undefined) return;
    const child = this.child;
    signalChild(child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.append(`[ferry-process] no exit ${graceMs} ms after SIGTERM, sending SIGKILL\n`);
        signalChild(child, 'SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, forced]);
    clearTimeout(timer);
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    if (this.ownsDataPath) {
      rmSync(this.dataPath, { recursive: true, force: true });
      ownedDirs.delete(this.dataPath);
    }
  }
}

/**
 * Starts a Ferry server on 127.0.0.1 and resolves when it prints `Ferry listening on`. Rejects with
 * the captured output if it exits or does not become ready in time.
 */
export async function spawnFerry(opts: SpawnFerryOptions = {}): Promise<FerryProcess> {
  installExitHook();
  const ownsDataPath = opts.dataPath === undefined;
  const dataPath = opts.dataPath ?? mkdtempSync(join(tmpdir(), 'ferry-data-'));
  if (ownsDataPath) ownedDirs.add(dataPath);
  const token = opts.token ?? randomBytes(16).toString('hex');
  const proc = new FerryChild(opts, opts.port ?? (await freePort()), ownsDataPath, dataPath, token);
  // A port picked by us can be taken by someone else before the server binds it: retry with another.
  for (let attempt = 1; ; attempt++) {
    try {
      await proc.start();
      return proc;
    } catch (err) {
      const retry = opts.port === undefined && attempt < 3 && /EADDRINUSE/.test(proc.output());
      if (!retry) {
        if (ownsDataPath) {
          rmSync(dataPath, { recursive: true, force: true });
          ownedDirs.delete(dataPath);
        }
        throw err;
      }
      proc.setPort(await freePort());
    }
  }
}
