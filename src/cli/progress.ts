/**
 * Live progress of long work (`cp`, `replication follow`) on stderr: a bar with rate and time left
 * on a terminal (cli-progress), one plain line per interval otherwise (logs, CI, pipes), so stdout
 * stays for results.
 */
import cliProgress from 'cli-progress';

/** A progress reporter. */
export interface Progress {
  /** Sets done and (when known) total, with the unit shown in lines. */
  update(done: number, total: number | undefined, detail?: string): void;
  /** Ends the bar (or prints a last line). */
  stop(): void;
}

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** Name in front of plain lines, e.g. `cp`. */
  label: string;
  /** Unit of `done`, e.g. `records`. */
  unit: string;
  /** Spacing of plain lines in ms (default 1000). */
  intervalMs?: number;
  /** Use the bar (default: stderr is a terminal). */
  tty?: boolean;
  /** No output at all. */
  quiet?: boolean;
}

/** A bar on a terminal, plain lines elsewhere. */
export function createProgress(opts: ProgressOptions): Progress {
  if (opts.quiet) return { update: () => undefined, stop: () => undefined };
  const tty = opts.tty ?? process.stderr.isTTY === true;
  return tty ? barProgress(opts) : lineProgress(opts);
}

function barProgress(opts: ProgressOptions): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${opts.label} [{bar}] {percentage}% | {value}/{total} ${opts.unit} | {rate}/s | ETA {eta_formatted} {detail}`,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  let started = false;
  return {
    update(done, total, detail = '') {
      const rate = Math.round(done / Math.max(0.001, (Date.now() - t0) / 1000));
      const t = Math.max(total ?? done, done, 1);
      if (!started) {
        bar.start(t, done, { rate, detail });
        started = true;
      } else {
        bar.setTotal(t);
        bar.update(done, { rate, detail });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function lineProgress(opts: ProgressOptions): Progress {
  const every = opts.intervalMs ?? 1000;
  const t0 = Date.now();
  let last = 0;
  let state: { done: number; total: number | undefined; detail: string } | undefined;
  const line = (): void => {
    if (!state) return;
    const secs = Math.max(0.001, (Date.now() - t0) / 1000);
    const rate = Math.round(state.done / secs);
    const of = state.total !== undefined ? `/${state.total}` : '';
    const eta =
      state.total !== undefined && rate > 0 && state.total > state.done
        ? `, ${Math.ceil((state.total - state.done) / rate)} s left`
        : '';
    process.stderr.write(
      `${opts.label}: ${state.done}${of} ${opts.unit}, ${rate}/s${eta}${state.detail ? `, ${state.detail}` : ''}\n`,
    );
  };
  return {
    update(done, total, detail = '') {
      state = { done, total, detail };
      const now = Date.now();
      if (now - last >= every) {
        last = now;
        line();
      }
    },
    stop() {
      line();
    },
  };
}
