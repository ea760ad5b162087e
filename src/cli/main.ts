#!/usr/bin/env node
/**
 * The `ferry` command: `serve` runs the server; the other commands drive a server through the SDK
 * (src/client). Exit codes and output conventions are in output.ts and the README.
 */
import { CommanderError } from 'commander';
import { EXIT } from './exit-codes.js';
import { buildProgram } from './program.js';

const program = await buildProgram(process.argv[2] === 'serve');
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else throw e;
}
