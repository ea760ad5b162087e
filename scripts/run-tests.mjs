// Runs the compiled tests in two lanes, unit first, then system (test/lanes.json says which file is
// in which lane; a test file in no lane, or in both, stops the run). One seed per run, from
// FERRY_TEST_SEED or drawn here, goes to every test process and is printed at the start and on
// failure. Both lanes report through one spec reporter and end with one combined summary.
//
// The unit lane's files share CONCURRENCY.unit processes (each imports its share of the files), so
// that a run does not pay a Node start and an import of the whole source tree per file; with
// --isolate (or FERRY_TEST_ISOLATE=1) every file runs in a process of its own, as the system lane's do.
//
// Usage: node scripts/run-tests.mjs [--lane=unit|system] [--isolate] [name-filter ...]
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const LANES = ['unit', 'system'];
/**
 * Processes at once per lane, sized for a 2-core machine: unit files wait on timers and the disk
 * as much as they compute (4 at once: 79 s instead of 111 s with 2), system files keep both cores
 * busy with their servers (3 at once was no faster than 2). Sharing four processes among the unit
 * files cut the lane's CPU from 211 to ~130 s (each file had paid ~0.5 s to start and import).
 */
const CONCURRENCY = { unit: 4, system: 2 };
const SUMMARY = /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)$/;

function fail(message) {
  console.error(message);
  process.exit(1);
}

/** Source test files relative to test/ (the compiled tree may hold stale files of deleted tests). */
function sourceTests(dir, base = dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'helpers') out.push(...sourceTests(p, base));
    } else if (name.endsWith('.test.ts')) out.push(relative(base, p).split(sep).join('/'));
  }
  return out;
}

/** Checks test/lanes.json against the test files; returns lane → compiled file paths, in list order. */
function laneFiles() {
  const lanes = JSON.parse(readFileSync(join(root, 'test', 'lanes.json'), 'utf8'));
  const sources = sourceTests(join(root, 'test'));
  const problems = [];
  const laneOf = new Map();
  for (const lane of LANES) {
    for (const file of lanes[lane] ?? []) {
      if (!sources.includes(file))
        problems.push(`test/lanes.json lists ${file} (${lane}), which does not exist`);
      if (laneOf.has(file)) problems.push(`test/${file} is in both lanes`);
      laneOf.set(file, lane);
    }
  }
  for (const file of sources) {
    if (!laneOf.has(file)) {
      problems.push(
        `test/${file} is in no lane: add it to "unit" (in-process only) or "system" (starts processes) in test/lanes.json`,
      );
    }
  }
  // a root-level beforeEach/afterEach would wrap the tests of every file sharing its process
  for (const file of lanes.unit ?? []) {
    if (!sources.includes(file)) continue;
    const text = readFileSync(join(root, 'test', file), 'utf8');
    if (/^(beforeEach|afterEach)\(/m.test(text)) {
      problems.push(
        `test/${file}: a top-level beforeEach/afterEach would also run around the tests of the other unit files that share its process; put the tests and hooks in a describe()`,
      );
    }
  }
  if (problems.length > 0) fail(problems.join('\n'));
  // in the listed order: the lists put long files first, so that no long file starts last
  const out = {};
  for (const lane of LANES) {
    out[lane] = lanes[lane].map((file) => {
      const compiled = join(root, 'dist', 'test', file.replace(/\.ts$/, '.js'));
      if (!existsSync(compiled)) fail(`${compiled} is missing: run npm run build`);
      return compiled;
    });
  }
  return out;
}

function parseArgs(argv) {
  let lanes = LANES;
  let isolate = process.env.FERRY_TEST_ISOLATE === '1';
  const filters = [];
  for (const arg of argv) {
    const m = /^--lane=(.*)$/.exec(arg);
    if (arg === '--isolate') isolate = true;
    else if (!m) filters.push(arg);
    else if (LANES.includes(m[1])) lanes = [m[1]];
    else fail(`unknown lane '${m[1]}' (lanes: ${LANES.join(', ')})`);
  }
  return { lanes, filters, isolate };
}

/**
 * Entry modules that each import a share of `files` (dealt in snake order over the longest-first
 * list, so that the long files spread over the shares), written under dist/test/.shared/ with this
 * run's pid (two runs in one checkout never share them) and removed after the lane. Tests still
 * report their own file.
 */
function sharedEntries(lane, files, shares) {
  const n = Math.min(shares, files.length);
  const groups = Array.from({ length: n }, () => []);
  files.forEach((f, i) => {
    const round = Math.floor(i / n);
    const k = i % n;
    groups[round % 2 === 0 ? k : n - 1 - k].push(f);
  });
  const dir = join(root, 'dist', 'test', '.shared');
  mkdirSync(dir, { recursive: true });
  return groups.map((group, i) => {
    const entry = join(dir, `${lane}-${process.pid}-${i + 1}-of-${n}.js`);
    writeFileSync(entry, group.map((f) => `import ${JSON.stringify(pathToFileURL(f).href)};\n`).join(''));
    return entry;
  });
}

/** The run's seed, resolved by the compiled test helper that every test process uses as well. */
async function runSeed() {
  const { resolveSeed } = await import(
    pathToFileURL(join(root, 'dist', 'test', 'helpers', 'seed-source.js')).href
  );
  try {
    return resolveSeed(process.env);
  } catch (e) {
    fail(e.message);
  }
}

const note = (message) => ({ type: 'test:diagnostic', data: { nesting: 0, message } });

const { lanes, filters, isolate } = parseArgs(process.argv.slice(2));
const files = laneFiles();
const selected = lanes
  .map((lane) => ({
    lane,
    files: files[lane].filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))),
  }))
  .filter((l) => l.files.length > 0);
if (selected.length === 0) fail(`no test file matches ${filters.join(' ')} in lane ${lanes.join(', ')}`);
const { seed, from } = await runSeed();
const replay = `FERRY_TEST_SEED=${seed}`;
const totals = new Map();
const durations = [];
/** Test time per file (its top-level tests run one after the other), for the slowest-files line. */
const fileMs = new Map();
let failedEvents = 0;

/** Events of every selected lane in turn; the lanes' own summaries are summed for {@link summary}. */
async function* events() {
  yield note(`test seed ${seed} (${from}; ${replay} replays this run)`);
  const guard = pathToFileURL(join(root, 'scripts', 'unit-lane-guard.mjs')).href;
  const nodeOptions = process.env.NODE_OPTIONS ?? '';
  for (const { lane, files: laneFilesToRun } of selected) {
    const shared = lane === 'unit' && !isolate && laneFilesToRun.length > 1;
    yield note(
      `${lane} lane: ${laneFilesToRun.length} files${shared ? ` in ${Math.min(CONCURRENCY[lane], laneFilesToRun.length)} shared processes (--isolate: one each)` : ''}`,
    );
    process.env.FERRY_TEST = '1';
    process.env.FERRY_TEST_SEED = String(seed);
    process.env.FERRY_TEST_LANE = lane;
    process.env.NODE_OPTIONS = lane === 'unit' ? `${nodeOptions} --import=${guard}`.trim() : nodeOptions;
    const started = Date.now();
    // forceExit: a file whose tests are done ends even if a failed test left a socket or a
    // server open (a fault proxy not closed after an assertion kept a file alive for good).
    const entries = shared ? sharedEntries(lane, laneFilesToRun, CONCURRENCY[lane]) : laneFilesToRun;
    const files = { files: entries, concurrency: CONCURRENCY[lane], forceExit: true };
    for await (const event of run(files)) {
      const m =
        event.type === 'test:diagnostic' && event.data.nesting === 0 && !event.data.file
          ? SUMMARY.exec(event.data.message)
          : null;
      if (m) {
        totals.set(m[1], (totals.get(m[1]) ?? 0) + Number(m[2]));
        continue;
      }
      if (event.type === 'test:fail' && !event.data.todo) failedEvents++;
      if (
        (event.type === 'test:pass' || event.type === 'test:fail') &&
        event.data.nesting === 0 &&
        event.data.file
      ) {
        fileMs.set(
          event.data.file,
          (fileMs.get(event.data.file) ?? 0) + (event.data.details?.duration_ms ?? 0),
        );
      }
      yield event;
    }
    if (shared) for (const entry of entries) rmSync(entry, { force: true });
    const seconds = (Date.now() - started) / 1000;
    durations.push(`${lane} lane ${seconds.toFixed(1)} s`);
    yield note(`${lane} lane finished in ${seconds.toFixed(1)} s`);
  }
}

/** The combined summary, after the lanes' failure listings so that the run ends with it. */
function* summary() {
  for (const key of ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo']) {
    yield note(`${key} ${totals.get(key) ?? 0}`);
  }
  yield note(`duration_ms ${totals.get('duration_ms') ?? 0}`);
  yield note(durations.join(', '));
  const slowest = [...fileMs]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([file, ms]) => `${relative(join(root, 'dist', 'test'), file)} ${(ms / 1000).toFixed(1)} s`);
  if (slowest.length > 1) yield note(`slowest files: ${slowest.join(', ')}`);
  if (failed()) yield note(`FAILED with test seed ${seed}: rerun with ${replay}`);
}

const failed = () => failedEvents > 0 || (totals.get('fail') ?? 0) > 0 || (totals.get('cancelled') ?? 0) > 0;

await pipeline(Readable.from(events()), new spec(), process.stdout, { end: false });
await pipeline(Readable.from(summary()), new spec(), process.stdout, { end: false });
process.exitCode = failed() || (totals.get('tests') ?? 0) === 0 ? 1 : 0;
