import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCondition, legacyToWhen } from '../src/query/condition/index.js';
import { parseJson } from '../src/protocol/json.js';
import { FerryError } from '../src/protocol/errors.js';

type Labels = Record<string, string>;
type Outcome = boolean | { status: number; message: string | RegExp };

function run(when: string, labels: Labels = {}, ts = 0n): boolean | FerryError {
  try {
    return compileCondition(parseJson(when)).evaluate({ ts, labels });
  } catch (e) {
    if (e instanceof FerryError) return e;
    throw e;
  }
}

function check(when: string, labels: Labels, expected: Outcome, ts = 0n): void {
  const got = run(when, labels, ts);
  if (typeof expected === 'boolean') {
    assert.equal(got, expected, `${when} with ${JSON.stringify(labels)}`);
  } else {
    assert.ok(got instanceof FerryError, `${when} should fail, got ${String(got)}`);
    assert.equal(got.status, expected.status, `${when}: ${got.message}`);
    if (typeof expected.message === 'string') assert.equal(got.message, expected.message);
    else assert.match(got.message, expected.message);
  }
}

const err = (status: number, message: string | RegExp) => ({ status, message });

/** Rows of [when, labels, expected]. */
type Row = [string, Labels, Outcome];

function table(name: string, rows: Row[]): void {
  test(name, () => {
    for (const [when, labels, expected] of rows) check(when, labels, expected);
  });
}

table('label inference and comparisons across types', [
  ['{"&a": {"$eq": 10}}', { a: '10' }, true],
  ['{"&a": {"$eq": 10.0}}', { a: '10' }, true],
  ['{"&a": {"$eq": 10}}', { a: '10.0' }, true],
  ['{"&a": {"$eq": "10"}}', { a: '10' }, false], // label infers int, constant is a string
  ['{"&a": {"$ne": "10"}}', { a: '10' }, true],
  ['{"&a": {"$gt": "1"}}', { a: '10' }, false],
  ['{"&a": {"$lt": "1"}}', { a: '10' }, false],
  ['{"&a": {"$eq": true}}', { a: 'true' }, true],
  ['{"&a": {"$eq": 1}}', { a: 'true' }, true],
  ['{"&a": {"$gt": 0}}', { a: 'true' }, true],
  ['{"&a": {"$eq": "True"}}', { a: 'True' }, true], // only lower-case true/false are bools
  ['{"&a": {"$gt": 2.5}}', { a: '3' }, true],
  ['{"&a": {"$gte": 3}}', { a: '3.0' }, true],
  ['{"&a": {"$lt": -1}}', { a: '-2' }, true],
  ['{"&a": {"$lt": 0}}', { a: '-1e3' }, true],
  ['{"&a": {"$gt": 1000}}', { a: '+1e4' }, true],
  ['{"&a": {"$eq": "abc"}}', { a: 'abc' }, true],
  ['{"&a": {"$gt": "abc"}}', { a: 'abd' }, true],
  ['{"&a": {"$lte": "b"}}', { a: 'a' }, true],
  ['{"&a": {"$gt": "10m"}}', { a: '700000000' }, true], // constant is a duration (600 s)
  ['{"&a": {"$eq": "10m"}}', { a: '10m' }, false], // label stays a string, constant is a duration
  ['{"&a": {"$eq": 9007199254740993}}', { a: '9007199254740993' }, true],
  ['{"&a": {"$gt": 9007199254740992}}', { a: '9007199254740993' }, true],
  ['{"$eq": [1, 1.0]}', {}, true],
  ['{"$eq": ["$$x", "$$x"]}', {}, true],
  ['{"$$plugin": {"$eq": "$$plugin"}}', {}, true],
  ['{"$ne": ["a", 1]}', {}, true],
  ['{"$gt": ["a", 1]}', {}, false],
  ['{"$gte": ["a", "a"]}', {}, true],
  ['{"$eq": [1]}', {}, err(422, '$eq requires exactly two operands')],
  ['{"$lt": [1, 2, 3]}', {}, err(422, '$lt requires exactly two operands')],
  ['{"&missing": {"$eq": 1}}', {}, err(404, "Reference 'missing' not found")],
  ['{"&constructor": {"$eq": 1}}', {}, err(404, "Reference 'constructor' not found")],
  ['{"@c": {"$eq": 1}}', {}, err(404, "Reference 'c' not found")],
]);

table('logical operators and aliases', [
  ['{"$and": [true, 1, "x"]}', {}, true],
  ['{"$all_of": [true, 0]}', {}, false],
  ['{"$and": []}', {}, true],
  ['{"$or": [false, 0, ""]}', {}, false],
  ['{"$any_of": [false, 2]}', {}, true],
  ['{"$or": []}', {}, false],
  ['{"$not": [true]}', {}, false],
  ['{"$not": "&flag"}', { flag: 'false' }, true],
  ['{"$none_of": [false, 0]}', {}, true],
  ['{"$none_of": [false, 1]}', {}, false],
  ['{"$xor": [true, true]}', {}, false],
  ['{"$one_of": [true, false, 0]}', {}, true],
  ['{"$xor": []}', {}, false],
  ['{"$in": ["&s", "error", "warn"]}', { s: 'warn' }, true],
  ['{"$in": ["&s", "error", "warn"]}', { s: 'ok' }, false],
  ['{"$in": ["&n", 1, 2.0]}', { n: '2' }, true],
  ['{"$nin": ["&s", "error", "warn"]}', { s: 'ok' }, true],
  ['{"$nin": ["a", "a", "b"]}', {}, false],
  ['{"$in": ["a"]}', {}, err(422, '$in operator requires at least two operands')],
  ['{"$nin": []}', {}, err(422, '$nin operator requires at least two operands')],
  // $and/$or short-circuit: the missing reference is never evaluated.
  ['{"$or": [true, "&missing"]}', {}, true],
  ['{"$and": [false, "&missing"]}', {}, false],
  ['{"$and": [true, "&missing"]}', {}, err(404, "Reference 'missing' not found")],
  // Top-level conditions are AND-ed.
  ['{"&a": {"$eq": 1}, "&b": {"$eq": 2}}', { a: '1', b: '2' }, true],
  ['{"&a": {"$eq": 1}, "&b": {"$eq": 2}}', { a: '1', b: '3' }, false],
  [
    '{"$or": [{"&status": {"$in": ["error"]}}, {"$not": [{"$has": "checked"}]}]}',
    {},
    err(422, /Array type is not supported/),
  ],
  ['{"$or": [{"$in": ["&status", "error"]}, {"$not": [{"$has": "checked"}]}]}', { status: 'ok' }, true],
  [
    '{"$or": [{"$in": ["&status", "error"]}, {"$not": [{"$has": "checked"}]}]}',
    { status: 'ok', checked: '1' },
    false,
  ],
]);

table('arithmetic', [
  ['{"$eq": [{"$add": [1, 2, 3]}, 6]}', {}, true],
  ['{"$eq": [{"$add": [1, 2.5]}, 3.5]}', {}, true],
  ['{"$eq": [{"$add": ["a", "b"]}, "ab"]}', {}, true],
  ['{"$eq": [{"$add": [true, true]}, 2]}', {}, true],
  ['{"$eq": [{"$add": []}, 0]}', {}, true],
  ['{"$eq": [{"$add": ["&a", "&b"]}, 9007199254740993]}', { a: '9007199254740992', b: '1' }, true],
  ['{"$add": ["&a", 1]}', { a: 'x' }, err(422, 'Cannot add string to integer')],
  ['{"$add": [1.5, "&a"]}', { a: 'x' }, err(422, 'Cannot add float to string')],
  ['{"$eq": [{"$sub": [1, 2]}, -1]}', {}, true],
  ['{"$sub": ["&a", "&b"]}', { a: 'x', b: 'y' }, err(422, 'Cannot subtract string')],
  ['{"$sub": ["&a", 1]}', { a: 'x' }, err(422, 'Cannot subtract string from integer')],
  ['{"$eq": [{"$mult": [2, 3]}, 6]}', {}, true],
  ['{"$mult": ["&a", true]}', { a: 'x' }, err(422, 'Cannot multiply string by boolean')],
  ['{"$eq": [{"$div": [3, 2]}, 1.5]}', {}, true],
  ['{"$div": ["&a", 0]}', { a: '1' }, err(422, 'Cannot divide by zero')],
  ['{"$div": [1, 0]}', {}, err(422, 'Cannot divide by zero (in $div)')],
  ['{"$div": ["&a", 1]}', { a: 'x' }, err(422, 'Cannot divide string')],
  ['{"$div": [1, "&a"]}', { a: 'x' }, err(422, 'Cannot divide by string')],
  ['{"$eq": [{"$div_num": [7, 2]}, 3]}', {}, true],
  ['{"$eq": [{"$div_num": [-7, 2]}, -3]}', {}, true],
  ['{"$eq": [{"$div_num": [7.9, 2]}, 3]}', {}, true],
  ['{"$div_num": ["&a", 0]}', { a: '1' }, err(422, 'Cannot divide by zero')],
  ['{"$eq": [{"$rem": [-10, 6]}, -4]}', {}, true],
  ['{"$eq": [{"$rem": [6, 3.5]}, 2.5]}', {}, true],
  ['{"$rem": ["&a", 1]}', { a: 'x' }, err(422, 'Cannot divide string by integer')],
  ['{"$eq": [{"$abs": -10}, 10]}', {}, true],
  ['{"$eq": [{"$abs": [-1.5]}, 1.5]}', {}, true],
  ['{"$abs": "&a"}', { a: 'x' }, err(422, 'Cannot calculate absolute value of a string')],
  ['{"$abs": [1, 2]}', {}, err(422, '$abs requires exactly one operand')],
  ['{"$sub": [1]}', {}, err(422, '$sub requires exactly two operands')],
  ['{"$gt": [{"$sub": ["&end", "&start"]}, "500ms"]}', { end: '2000000', start: '1000000' }, true],
  ['{"$gt": [{"$sub": ["&end", "&start"]}, "500ms"]}', { end: '1400000', start: '1000000' }, false],
]);

table('string operators use string forms', [
  ['{"&a": {"$contains": "ell"}}', { a: 'hello' }, true],
  ['{"&a": {"$contains": "xyz"}}', { a: 'hello' }, false],
  ['{"&a": {"$starts_with": "he"}}', { a: 'hello' }, true],
  ['{"&a": {"$ends_with": "lo"}}', { a: 'hello' }, true],
  ['{"&a": {"$starts_with": 12}}', { a: '123' }, true],
  ['{"&a": {"$ends_with": "ue"}}', { a: 'true' }, true],
  ['{"&key": {"$starts_with": "$$plugin"}}', { key: '$plugin/x' }, true],
  ['{"$contains": ["1h 30m", "30m"]}', {}, true],
  ['{"$contains": ["90m", "1h"]}', {}, true], // duration 90m prints as "1h 30m"
  ['{"$contains": ["a"]}', {}, err(422, '$contains requires exactly two operands')],
]);

table('misc operators', [
  ['{"$has": ["a", "b"]}', { a: '1', b: '2' }, true],
  ['{"$has": ["a", "b"]}', { a: '1' }, false],
  ['{"$exists": "a"}', { a: '' }, true],
  ['{"$has": []}', {}, err(422, '$has requires at least one operand')],
  ['{"$eq": [{"$cast": ["&a", "string"]}, "10"]}', { a: '10' }, true],
  ['{"$eq": [{"&a": {"$cast": "string"}}, "1.5"]}', { a: '1.50' }, true],
  ['{"$eq": [{"$cast": ["&a", "int"]}, 10]}', { a: '10.9' }, true],
  ['{"$eq": [{"$cast": ["&a", "float"]}, 0.5]}', { a: '0.5' }, true],
  ['{"$eq": [{"$cast": ["&a", "bool"]}, true]}', { a: 'x' }, true],
  ['{"$eq": [{"$cast": ["", "bool"]}, false]}', {}, true],
  ['{"$eq": [{"$cast": ["&a", "duration"]}, "5s"]}', { a: '5s' }, true],
  ['{"$eq": [{"$cast": [5000000, "duration"]}, "5s"]}', {}, true],
  // A duration prints as "1m 30s" (a string literal "1m 30s" would itself be a duration).
  ['{"$contains": [{"$cast": [{"$cast": [90000000, "duration"]}, "string"]}, "m 3"]}', {}, true],
  ['{"$contains": [{"$cast": ["90s", "string"]}, "m 3"]}', {}, true],
  ['{"$cast": ["&a", "int"]}', { a: 'x' }, err(422, "Value 'x' could not be parsed as integer")],
  ['{"$cast": ["&a", "float"]}', { a: 'x' }, err(422, "Value 'x' could not be parsed as float")],
  ['{"$cast": ["&a", "complex"]}', { a: '1' }, err(422, "Unknown type 'complex' in $cast")],
  ['{"$cast": ["&a"]}', { a: '1' }, err(422, '$cast requires exactly two operands')],
  ['{"$eq": [{"$ref": [{"$add": ["na", "me"]}]}, 5]}', { name: '5' }, true],
  ['{"$ref": {"$add": ["a"]}}', {}, err(422, /Unknown .\$. literal .\$ref./)], // object value = object notation
  ['{"$ref": "x"}', {}, err(404, 'Label \'"x"\' not found')],
  ['{"$eq": ["$timestamp", 1234]}', {}, false],
  ['{"$gt": ["$id", 0]}', {}, false],
  ['{"$timestamp": [1]}', {}, err(422, '$timestamp requires no operands')],
]);

test('$timestamp and date operators with time zones', () => {
  const ts = 1704067200123456n; // 2024-01-01T00:00:00.123456Z, a Monday
  check('{"$eq": ["$timestamp", 1704067200123456]}', {}, true, ts);
  const cases: Array<[string, number]> = [
    ['{"$second": "$timestamp"}', 0],
    ['{"$minute": "$timestamp"}', 0],
    ['{"$hour": "$timestamp"}', 0],
    ['{"$hour": ["$timestamp", "Europe/Berlin"]}', 1],
    ['{"$day": "$timestamp"}', 1],
    ['{"$day": ["$timestamp", "America/New_York"]}', 31],
    ['{"$month": ["$timestamp", "America/New_York"]}', 12],
    ['{"$year": "$timestamp"}', 2024],
    ['{"$year": ["$timestamp", "America/New_York"]}', 2023],
    ['{"$weekday": "$timestamp"}', 0],
    ['{"$weekday": ["$timestamp", "America/New_York"]}', 6],
    ['{"$hour": ["$timestamp", "Asia/Kolkata"]}', 5],
    ['{"$minute": ["$timestamp", "Asia/Kolkata"]}', 30],
  ];
  for (const [expr, expected] of cases) check(`{"$eq": [${expr}, ${expected}]}`, {}, true, ts);
  // Summer time: 2024-07-01T12:00:00Z is 14:00 in Berlin.
  check('{"$eq": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 14]}', {}, true, 1719835200000000n);
  check('{"$lt": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 6]}', {}, true, ts);
  check('{"$eq": [{"$hour": ["$timestamp", "&tz"]}, 1]}', { tz: 'Europe/Berlin' }, true, ts);
  check('{"$hour": ["$timestamp", "Mars/Olympus"]}', {}, err(422, "Invalid timezone: 'Mars/Olympus'"), ts);
  check('{"$hour": ["$timestamp", 5]}', {}, err(422, '$hour requires timezone to be a string'), ts);
  check('{"$hour": []}', {}, err(422, '$hour requires one or two operands'), ts);
  check('{"$hour": "&t"}', { t: '9223372036854775807' }, err(422, /\$hour requires a valid timestamp/), ts);
});

test('syntax errors name the operator or operand', () => {
  check(
    '{"$plugin": {"$eq": "value"}}',
    {},
    err(422, "Unknown '$' literal '$plugin'; use '$$' to escape a string value"),
  );
  check(
    '{"$eq": ["$plugin", "x"]}',
    {},
    err(422, "Unknown '$' literal '$plugin'; use '$$' to escape a string value"),
  );
  check('{"$xx": [true, true]}', {}, err(422, "Operator '$xx' not supported"));
  check('{"and": [true, true]}', {}, err(422, "Operator 'and' must start with '$'"));
  check(
    '{"&ref": {"$and": true, "x": "y"}}',
    {},
    err(422, /Object notation must have exactly one operator.*&ref/),
  );
  check('{"&label": {"$in": [10, 20]}}', {}, err(422, 'Array type is not supported: [10,20]'));
  check('{"&ref": {"$and": null}}', {}, err(422, 'Null type is not supported: null'));
  check(
    '{"$each_n": 0}',
    {},
    err(422, "Value '0' is not a valid operand for $each_n: it must be a positive integer"),
  );
  check(
    '{"$each_n": -1}',
    {},
    err(422, "Value '-1' is not a valid operand for $each_n: it must be a positive integer"),
  );
  check('{"$each_t": "soon"}', {}, err(422, /soon.*\$each_t/));
  check('{"$limit": "x"}', {}, err(422, /'x'.*\$limit/));
  check('{"#ext": {"a": 1}}', {}, err(422, /#ext/));
  check('{"#unknown": 1}', {}, err(422, "Directive '#unknown' is not supported"));
  check('{"#ctx_before": null}', {}, err(422, "Directive '#ctx_before' cannot be null"));
  check('{"#ctx_after": [1, 2]}', {}, err(422, /#ctx_after/));
  check('{"$limit": 1, "$gate": [1]}', {}, err(422, '$gate requires exactly two operands'));
});

test('duration literals', () => {
  for (const [lit, us] of [
    ['5s', 5_000_000],
    ['500ms', 500_000],
    ['1h 30m', 5_400_000_000],
    ['-1d', -86_400_000_000],
    ['1h -30m', 1_800_000_000],
    ['7us', 7],
  ] as const) {
    check(`{"$eq": ["${lit}", ${us}]}`, {}, true);
  }
  // Not durations: plain strings.
  for (const s of ['5', 's', '1.5s', '5 x', '5sec']) check(`{"$eq": ["${s}", "${s}"]}`, {}, true);
});

test('directives', () => {
  const c = compileCondition(
    parseJson(
      '{"&speed": {"$gt": 2.0}, "#ctx_before": 3, "#ctx_after": "2s", "#select_labels": ["speed"], "#batch_size": "1MB", "#batch_records": 10, "#batch_metadata_size": 4096, "#batch_timeout": 5, "#record_timeout": "500ms", "#io_timeout": "1m"}',
    ),
  );
  assert.deepEqual(c.directives, {
    ctxBefore: { records: 3 },
    ctxAfter: { durationUs: 2_000_000n },
    selectLabels: ['speed'],
    batchSize: 1_000_000,
    batchRecords: 10,
    batchMetadataSize: 4096,
    batchTimeoutMs: 5000,
    recordTimeoutMs: 500,
    ioTimeoutMs: 60_000,
  });
  assert.equal(c.evaluate({ ts: 0n, labels: { speed: '3' } }), true);
  assert.equal(c.stateful, false);
});

function sequence(when: string, tss: number[], labels: (i: number) => Labels = () => ({})): boolean[] {
  const c = compileCondition(parseJson(when));
  return tss.map((ts, i) => c.evaluate({ ts: BigInt(ts), labels: labels(i) }));
}

test('$each_n yields the N-th, 2N-th, … record', () => {
  assert.deepEqual(sequence('{"$each_n": 2}', [1, 2, 3]), [false, true, false]);
  assert.deepEqual(sequence('{"$each_n": 3}', [1, 2, 3, 4, 5, 6]), [false, false, true, false, false, true]);
  // Counted only for records reaching it (top-level AND in key order).
  assert.deepEqual(
    sequence('{"&ok": {"$eq": true}, "$each_n": 2}', [1, 2, 3, 4, 5], (i) => ({
      ok: i === 1 ? 'false' : 'true',
    })),
    [false, false, true, false, true],
  );
});

test('$each_t seeds on the first record and resets when time goes backwards', () => {
  assert.deepEqual(sequence('{"$each_t": 0.1}', [0, 1, 100_001, 100_002, 200_001]), [
    false,
    false,
    true,
    false,
    true,
  ]);
  assert.deepEqual(sequence('{"$each_t": "100ms"}', [0, 100_000, 150_000, 200_000]), [
    false,
    true,
    false,
    true,
  ]);
  assert.deepEqual(sequence('{"$each_t": 0}', [5, 5, 6]), [true, true, true]);
  assert.deepEqual(sequence('{"$each_t": "10s"}', [50_000_000, 10_000_000, 20_000_001]), [
    false,
    false,
    true,
  ]);
});

test('$limit ends the whole query', () => {
  const c = compileCondition(parseJson('{"&score": {"$gt": 10}, "$limit": 2}'));
  const out: boolean[] = [];
  for (const s of ['20', '5', '30', '40', '50']) out.push(c.evaluate({ ts: 0n, labels: { score: s } }));
  assert.deepEqual(out, [true, false, true, false, false]);
  assert.equal(c.done, true);
  const zero = compileCondition(parseJson('{"$limit": 0}'));
  assert.equal(zero.evaluate({ ts: 0n, labels: {} }), false);
  assert.equal(zero.done, true);
});

test('$gate opens on a rising edge, mirrors while open and needs a reset afterwards', () => {
  const input = [true, true, true, false, true, true];
  assert.deepEqual(
    sequence('{"$gate": ["2us", "&in"]}', [0, 1, 2, 3, 4, 5], (i) => ({ in: String(input[i]) })),
    [true, true, false, false, true, true],
  );
  assert.deepEqual(sequence('{"$gate": [0.1, true]}', [0, 99_999, 100_000]), [true, true, false]);
  const falling = [false, true, false, true];
  assert.deepEqual(
    sequence('{"$gate": ["10s", "&in"]}', [0, 1, 2, 3], (i) => ({ in: String(falling[i]) })),
    [false, true, false, true],
  );
  // Time going backwards resets the gate.
  assert.deepEqual(sequence('{"$gate": ["100ms", true]}', [200_000, 400_000, 100_000]), [true, false, true]);
});

test('state save/restore and clone', () => {
  const when = parseJson('{"$each_n": 3, "$gate": ["1s", true], "$each_t": "1us"}');
  const a = compileCondition(when);
  assert.equal(a.stateful, true);
  const ts = [1, 2, 3, 4, 5, 6, 7, 8, 9].map(BigInt);
  const full = ts.map((t) => a.evaluate({ ts: t, labels: {} }));
  const b = compileCondition(when);
  ts.slice(0, 4).forEach((t) => b.evaluate({ ts: t, labels: {} }));
  const saved = JSON.parse(JSON.stringify(b.saveState()));
  const c = compileCondition(when);
  c.restoreState(saved);
  assert.deepEqual(
    ts.slice(4).map((t) => c.evaluate({ ts: t, labels: {} })),
    full.slice(4),
  );
  const fresh = c.clone();
  assert.deepEqual(
    ts.map((t) => fresh.evaluate({ ts: t, labels: {} })),
    full,
  );
  assert.throws(
    () => c.restoreState({ v: 1, done: false, slots: [] }),
    (e: unknown) => e instanceof FerryError && e.status === 422,
  );
});

test('legacy include/exclude/each_n/each_s migrate into when', () => {
  const w = legacyToWhen({ include: { a: '1', b: 'x', c: '5s', d: '$y' }, exclude: { e: '&z' } });
  const c = () => compileCondition(w);
  const base = { a: '1', b: 'x', c: '5s', d: '$y' };
  assert.equal(c().evaluate({ ts: 0n, labels: base }), true);
  assert.equal(c().evaluate({ ts: 0n, labels: { ...base, b: 'y' } }), false);
  assert.equal(c().evaluate({ ts: 0n, labels: { a: '1', b: 'x', c: '5s' } }), false);
  assert.equal(c().evaluate({ ts: 0n, labels: { ...base, e: '&z' } }), false);
  assert.equal(c().evaluate({ ts: 0n, labels: { ...base, e: 'q' } }), true);
  // exclude drops only when all pairs match; a missing label is not an error.
  const ex = compileCondition(legacyToWhen({ exclude: { a: '1', b: '2' } }));
  assert.equal(ex.evaluate({ ts: 0n, labels: { a: '1' } }), true);
  assert.equal(ex.evaluate({ ts: 0n, labels: { a: '1', b: '2' } }), false);
  // Sampling comes last and the existing when's directives stay top-level.
  const s = legacyToWhen({ each_n: 2 }, { '&x': { $gt: 0 }, '#batch_records': 5 }) as Record<string, unknown>;
  assert.equal(s['#batch_records'], 5);
  const sc = compileCondition(s);
  const out = ['1', '0', '1', '1', '1'].map((x) => sc.evaluate({ ts: 0n, labels: { x } }));
  assert.deepEqual(out, [false, false, true, false, true]);
  assert.equal(sc.directives.batchRecords, 5);
  const t = compileCondition(legacyToWhen({ each_s: 1 }));
  assert.deepEqual(
    [0, 500_000, 1_000_000].map((x) => t.evaluate({ ts: BigInt(x), labels: {} })),
    [false, false, true],
  );
  const when = { '&a': { $eq: 1 } };
  assert.equal(legacyToWhen({}, when), when);
});

test('a missing when matches everything', () => {
  assert.equal(compileCondition(undefined).evaluate({ ts: 0n, labels: {} }), true);
  assert.equal(compileCondition(null).evaluate({ ts: 0n, labels: {} }), true);
  assert.equal(compileCondition({}).evaluate({ ts: 0n, labels: {} }), true);
});
