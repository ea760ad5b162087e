// Preloaded (NODE_OPTIONS=--import) into every test process of the unit lane: a unit test that
// starts a child process fails at once, naming the lane file, instead of silently making the fast
// lane slow. Worker threads and in-process servers stay allowed.
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';

for (const name of ['spawn', 'spawnSync', 'fork', 'exec', 'execSync', 'execFile', 'execFileSync']) {
  childProcess[name] = () => {
    throw new Error(
      `child_process.${name}() in the unit lane: a test file that starts processes belongs in "system" in test/lanes.json`,
    );
  };
}
syncBuiltinESMExports();
