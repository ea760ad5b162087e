/**
 * What the CLI prints: readable tables by default, JSON with `--json`, errors on stderr with a hint
 * of what to do next, and exit codes scripts can rely on (README, "Command line").
 */
import Table from 'cli-table3';
import pc from 'picocolors';
import { isFerryError } from '../protocol/errors.js';
import { stringifyJson } from '../protocol/json.js';
import { EXIT } from './exit-codes.js';

export { EXIT } from './exit-codes.js';

/** A failure the CLI reports itself, with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
  }
}

/** Output settings of one invocation. */
export interface Output {
  json: boolean;
}

/** Prints a value as JSON (bigint-safe, indented) on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(stringifyJson(value, 2) + '\n');
}

/** Prints rows as a table (or `empty` when there are none). */
export function printTable(head: string[], rows: unknown[][], empty = '(none)'): void {
  if (rows.length === 0) {
    process.stdout.write(pc.dim(empty) + '\n');
    return;
  }
  const table = new Table({ head: head.map((h) => pc.bold(h)), style: { head: [], border: [] } });
  for (const r of rows) table.push(r.map(cell));
  process.stdout.write(table.toString() + '\n');
}

/** Prints `key: value` lines. */
export function printFields(fields: Array<[string, unknown]>): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) process.stdout.write(`${pc.bold(k.padEnd(width))}  ${cell(v)}\n`);
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return stringifyJson(v);
}

/** 1234567 → `1.2 MB`. */
export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** µs timestamp → ISO time (`-` for 0). */
export function formatTime(us: number | bigint): string {
  const n = BigInt(us);
  if (n === 0n) return '-';
  const ms = Number(n / 1000n);
  return Number.isFinite(ms) && ms < 8.64e15 ? new Date(ms).toISOString() : String(n);
}

/** Hints per situation; `notFound` names the command that lists what exists. */
export interface Hints {
  notFound?: string;
}

/** Exit code and message (with what to do next) for a failure. */
export function describeFailure(
  e: unknown,
  hints: Hints = {},
): { code: number; message: string; status?: number } {
  if (e instanceof CliError) return { code: e.exitCode, message: e.message };
  if (!isFerryError(e)) return { code: EXIT.error, message: e instanceof Error ? e.message : String(e) };
  const s = e.status;
  if (s === -3 || s === -2)
    return {
      code: EXIT.unreachable,
      status: s,
      message: `${e.message}\nSet the server with --url, FERRY_URL or a context ('ferry context add --help').`,
    };
  if (s === -4) return { code: EXIT.usage, status: s, message: e.message };
  if (s === 401)
    return {
      code: EXIT.auth,
      status: s,
      message: `${e.message}\nCheck the token: --token, FERRY_TOKEN or the context's token.`,
    };
  if (s === 403)
    return {
      code: EXIT.auth,
      status: s,
      message: `${e.message}\nThis token may not do that; use a token with the needed permission (full access for replications).`,
    };
  if (s === 404)
    return {
      code: EXIT.notFound,
      status: s,
      message: hints.notFound ? `${e.message}\nSee what exists with '${hints.notFound}'.` : e.message,
    };
  if (s === 409) return { code: EXIT.conflict, status: s, message: e.message };
  return { code: EXIT.error, status: s, message: e.message };
}

/** Prints a failure on stderr (JSON with `--json`) and sets the exit code. */
export function reportFailure(e: unknown, out: Output, hints: Hints = {}): number {
  const f = describeFailure(e, hints);
  if (out.json) {
    process.stderr.write(stringifyJson({ error: { status: f.status ?? null, message: f.message } }) + '\n');
  } else {
    process.stderr.write(`${pc.red('ferry:')} ${f.message}\n`);
  }
  return f.code;
}
