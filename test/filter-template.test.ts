/**
 * Stored-filter templates (src/replication/filter-template.ts): definitions, parameter checks and
 * substitution, with the real `when` compiler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCondition } from '../src/query/condition/index.js';
import { parseJson } from '../src/protocol/json.js';
import {
  parseFilterDefinition,
  placeholders,
  resolveParams,
  substitute,
} from '../src/replication/filter-template.js';

const check = (when: unknown): void => void compileCondition(when);
const parse = (json: string) => parseFilterDefinition(parseJson(json), check);

/** Asserts a 422 with exactly `message`. */
function refused(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: { status?: number; message?: string }) => {
    assert.equal(e.message, message);
    assert.equal(e.status, 422);
    return true;
  });
}

test('placeholders are found anywhere and replaced, also inside arrays', () => {
  const when = parseJson(
    '{"$and": [{"$in": ["&cam", {"$param": "cams"}]}, {"&score": {"$gt": {"$param": "min"}}}, {"$each_n": {"$param": "n"}}]}',
  );
  assert.deepEqual(placeholders(when), ['cams', 'min', 'n']);
  // an array parameter in an operand list is spliced into it
  const resolved = substitute(when, { cams: ['a', 'b'], min: 0.5, n: 3 });
  assert.deepEqual(resolved, {
    $and: [{ $in: ['&cam', 'a', 'b'] }, { '&score': { $gt: 0.5 } }, { $each_n: 3 }],
  });
  compileCondition(resolved);
});

test('a definition: declared types and defaults, undeclared placeholders required of any type', () => {
  const def = parse(
    '{"when": {"&q": {"$eq": {"$param": "q"}}, "&n": {"$gte": {"$param": "n"}}}, "params": {"q": {"type": "string", "default": "ok"}}, "description": "good frames"}',
  );
  assert.deepEqual(def.params, { q: { type: 'string', default: 'ok' }, n: { type: 'any' } });
  assert.equal(def.description, 'good frames');
  assert.deepEqual(resolveParams('f', def, { n: 3 }), { q: 'ok', n: 3 });
  assert.deepEqual(resolveParams('f', def, parseJson('{"n": 3, "q": "bad"}')), { q: 'bad', n: 3 });
});

test('bad definitions are refused naming the field', () => {
  refused(() => parse('{"when": 5}'), "Invalid filter 'when': must be an object");
  refused(() => parse('{"when": {}, "extra": 1}'), "Invalid filter 'extra': unknown field");
  refused(
    () => parse('{"when": {"&a": {"$eq": 1}}, "params": {"x": {"type": "string"}}}'),
    "Invalid filter 'params.x': declared but not used in 'when'",
  );
  refused(
    () => parse('{"when": {"&a": {"$eq": {"$param": "x"}}}, "params": {"x": {"type": "text"}}}'),
    "Invalid filter 'params.x.type': must be one of string, number, integer, boolean, array, any",
  );
  refused(
    () =>
      parse(
        '{"when": {"&a": {"$eq": {"$param": "x"}}}, "params": {"x": {"type": "integer", "default": 1.5}}}',
      ),
    "Invalid filter 'params.x.default': must be an integer",
  );
  refused(
    () => parse('{"when": {"&a": {"$eq": {"$param": "__proto__"}}}}'),
    "Invalid filter 'when': '$param' must name a parameter (a letter, then letters, digits, '_'), got __proto__",
  );
  assert.throws(
    () => parse('{"when": {"&a": {"$no_such_op": {"$param": "x"}}}}'),
    (e: Error) => e.message.startsWith("Invalid filter 'when': "),
  );
});

test('query_params: missing, unknown and ill-typed parameters are refused naming them', () => {
  const def = parse(
    '{"when": {"&a": {"$eq": {"$param": "s"}}, "&b": {"$lt": {"$param": "i"}}, "$in": ["&c", {"$param": "l"}]}, "params": {"s": {"type": "string"}, "i": {"type": "integer", "default": 10}, "l": {"type": "array", "default": ["x"]}}}',
  );
  refused(
    () => resolveParams('f', def, {}),
    "Invalid replication setting 'query_params.s': missing: filter 'f' needs it",
  );
  refused(
    () => resolveParams('f', def, { s: 'x', zz: 1 }),
    "Invalid replication setting 'query_params.zz': filter 'f' has no such parameter",
  );
  refused(
    () => resolveParams('f', def, { s: 'x', constructor: 1 }),
    "Invalid replication setting 'query_params.constructor': filter 'f' has no such parameter",
  );
  refused(
    () => resolveParams('f', def, { s: 1 }),
    "Invalid replication setting 'query_params.s': must be a string",
  );
  refused(
    () => resolveParams('f', def, parseJson('{"s": "x", "i": 2.5}')),
    "Invalid replication setting 'query_params.i': must be an integer",
  );
  refused(
    () => resolveParams('f', def, parseJson('{"s": "x", "l": "a"}')),
    "Invalid replication setting 'query_params.l': must be an array",
  );
  refused(
    () => resolveParams('f', def, { s: null }),
    "Invalid replication setting 'query_params.s': must not be null",
  );
  refused(() => resolveParams('f', def, []), "Invalid replication setting 'query_params': must be an object");
  assert.deepEqual(resolveParams('f', def, parseJson('{"s": "x", "i": 18446744073709551615}')), {
    s: 'x',
    i: 18446744073709551615n,
    l: ['x'],
  });
});
