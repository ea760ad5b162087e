/** Wraps a command's action: positional arguments in, failures reported with their exit code. */
import type { Command } from 'commander';
import { outputOf } from '../connection.js';
import { reportFailure, type Hints } from '../output.js';

/** Positional arguments of a commander action (options and the command follow them). */
type Action = (cmd: Command, args: string[]) => Promise<void>;

/** An action for `.action()`; failures become a message on stderr and `process.exitCode`. */
export function act(hints: Hints, fn: Action): (...args: unknown[]) => Promise<void> {
  return async (...raw: unknown[]) => {
    const cmd = raw[raw.length - 1] as Command;
    const args = raw.slice(0, cmd.registeredArguments.length) as string[];
    try {
      await fn(cmd, args);
    } catch (e) {
      process.exitCode = reportFailure(e, outputOf(cmd), hints);
    }
  };
}
