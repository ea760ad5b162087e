import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import './helpers/property-config.js';
import { compileCondition } from '../src/query/condition/index.js';
import { FerryError } from '../src/protocol/errors.js';

type Labels = Record<string, string>;
type Json = unknown;
type Outcome = boolean | `error ${number}`;

// ---------------------------------------------------------------------------------------------
// A deliberately simple reference interpreter: walks the JSON on every call, regexes for inference.
// Covers the stateless subset generated below.

class RefError extends Error {
  constructor(readonly status: number) {
    super(String(status));
  }
}

type V = boolean | number | string;

function infer(s: string): V {
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (/^[+-]?\d+$/.test(s)) return Number(s);
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return Number(s);
  return s;
}

function num(v: V): number {
  return typeof v === 'boolean' ? (v ? 1 : 0) : (v as number);
}

function truth(v: V): boolean {
  return typeof v === 'string' ? v !== '' : num(v) !== 0;
}

function cmp(op: string, a: V, b: V): boolean {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a !== 'string' || typeof b !== 'string') return op === '$ne';
    return { $eq: a === b, $ne: a !== b, $gt: a > b, $gte: a >= b, $lt: a < b, $lte: a <= b }[op]!;
  }
  const x = num(a);
  const y = num(b);
  return { $eq: x === y, $ne: x !== y, $gt: x > y, $gte: x >= y, $lt: x < y, $lte: x <= y }[op]!;
}

function refEval(json: Json, labels: Labels): V {
  if (typeof json === 'boolean' || typeof json === 'number') return json;
  if (typeof json === 'string') {
    if (json.startsWith('&')) {
      const name = json.slice(1);
      if (!Object.hasOwn(labels, name)) throw new RefError(404);
      return infer(labels[name]);
    }
    return json;
  }
  const [op, args] = Object.entries(json as Record<string, Json[]>)[0];
  switch (op) {
    case '$and':
      for (const a of args) if (!truth(refEval(a, labels))) return false;
      return true;
    case '$or':
      for (const a of args) if (truth(refEval(a, labels))) return true;
      return false;
    case '$not':
      for (const a of args) if (truth(refEval(a, labels))) return false;
      return true;
    case '$xor':
      return args.filter((a) => truth(refEval(a, labels))).length === 1;
    case '$in': {
      const first = refEval(args[0], labels);
      for (const a of args.slice(1)) if (cmp('$eq', first, refEval(a, labels))) return true;
      return false;
    }
    case '$has':
      return args.every((a) => Object.hasOwn(labels, a as string));
    case '$add':
    case '$sub':
    case '$mult': {
      const a = refEval(args[0], labels);
      const b = refEval(args[1], labels);
      if (typeof a === 'string' || typeof b === 'string') {
        if (op === '$add' && typeof a === 'string' && typeof b === 'string') return a + b;
        throw new RefError(422);
      }
      return op === '$add' ? num(a) + num(b) : op === '$sub' ? num(a) - num(b) : num(a) * num(b);
    }
    default:
      return cmp(op, refEval(args[0], labels), refEval(args[1], labels));
  }
}

function refOutcome(json: Json, labels: Labels): Outcome {
  try {
    return truth(refEval(json, labels));
  } catch (e) {
    if (e instanceof RefError) return `error ${e.status}`;
    throw e;
  }
}

function compiledOutcome(json: Json, labels: Labels): Outcome {
  try {
    // Wrapped in $and so the generated expression is one top-level condition.
    return compileCondition({ $and: [json] }).evaluate({ ts: 0n, labels });
  } catch (e) {
    if (e instanceof FerryError) return `error ${e.status}`;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Generators.

const NAMES = ['a', 'b', 'c'];
const LABEL_VALUES = ['1', '2', '-3', '1.5', '0', '10', '2.0', 'true', 'false', 'x', 'abc', '', '1e2'];

const labelsArb: fc.Arbitrary<Labels> = fc
  .record({
    a: fc.option(fc.constantFrom(...LABEL_VALUES)),
    b: fc.option(fc.constantFrom(...LABEL_VALUES)),
    c: fc.option(fc.constantFrom(...LABEL_VALUES)),
  })
  .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)) as Labels);

const refArb = fc.constantFrom('&a', '&b', '&c');
const constArb: fc.Arbitrary<Json> = fc.oneof(
  fc.integer({ min: -3, max: 10 }),
  fc.constantFrom(0.5, -1.5, 1.5, 100),
  fc.boolean(),
  fc.constantFrom('x', 'abc', '', 'zz'),
);
const operandArb: fc.Arbitrary<Json> = fc.oneof(refArb, constArb);
// Arithmetic always involves a label, so errors happen at evaluation as in the interpreter.
const arithArb: fc.Arbitrary<Json> = fc
  .tuple(fc.constantFrom('$add', '$sub', '$mult'), refArb, operandArb)
  .map(([op, a, b]) => ({ [op]: [a, b] }));
const valueArb = fc.oneof({ weight: 3, arbitrary: operandArb }, { weight: 1, arbitrary: arithArb });

const { cond: condArb } = fc.letrec<{ cond: Json }>((tie) => ({
  cond: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .tuple(fc.constantFrom('$eq', '$ne', '$gt', '$gte', '$lt', '$lte'), valueArb, valueArb)
      .map(([op, a, b]) => ({ [op]: [a, b] })),
    fc
      .tuple(valueArb, fc.array(operandArb, { minLength: 1, maxLength: 3 }))
      .map(([a, rest]) => ({ $in: [a, ...rest] })),
    fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 2 }).map((names) => ({ $has: names })),
    refArb,
    fc
      .tuple(fc.constantFrom('$and', '$or', '$not', '$xor'), fc.array(tie('cond'), { maxLength: 3 }))
      .map(([op, args]) => ({ [op]: args })),
  ),
}));

const RUNS = { numRuns: 300 };

test('compiled evaluator agrees with the reference interpreter', () => {
  fc.assert(
    fc.property(condArb, labelsArb, (cond, labels) => {
      assert.equal(compiledOutcome(cond, labels), refOutcome(cond, labels), JSON.stringify(cond));
    }),
    RUNS,
  );
});

test('logical laws: AND/OR truth tables, double negation, De Morgan', () => {
  fc.assert(
    fc.property(condArb, condArb, labelsArb, (a, b, labels) => {
      const oa = compiledOutcome(a, labels);
      const ob = compiledOutcome(b, labels);
      fc.pre(typeof oa === 'boolean' && typeof ob === 'boolean');
      assert.equal(compiledOutcome({ $and: [a, b] }, labels), oa && ob);
      assert.equal(compiledOutcome({ $or: [a, b] }, labels), oa || ob);
      assert.equal(compiledOutcome({ $xor: [a, b] }, labels), oa !== ob);
      assert.equal(compiledOutcome({ $not: [{ $not: [a] }] }, labels), oa);
      assert.equal(
        compiledOutcome({ $not: [{ $and: [a, b] }] }, labels),
        compiledOutcome({ $or: [{ $not: [a] }, { $not: [b] }] }, labels),
      );
      assert.equal(
        compiledOutcome({ $not: [{ $or: [a, b] }] }, labels),
        compiledOutcome({ $and: [{ $not: [a] }, { $not: [b] }] }, labels),
      );
      assert.equal(compiledOutcome({ $not: [a, b] }, labels), !(oa || ob));
    }),
    RUNS,
  );
});

test('top-level keys are AND-ed like $and', () => {
  fc.assert(
    fc.property(condArb, condArb, labelsArb, (a, b, labels) => {
      let top: Outcome;
      try {
        top = compileCondition({ $and: [a], $or: [b] }).evaluate({ ts: 0n, labels });
      } catch (e) {
        top = `error ${(e as FerryError).status}`;
      }
      assert.equal(top, compiledOutcome({ $and: [a, { $or: [b] }] }, labels));
    }),
    RUNS,
  );
});

test('label inference agrees with a regex reference on random label text', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 6 }),
    fc.stringMatching(/^[+-]?\d{1,17}(\.\d{0,3})?([eE][+-]?\d{1,2})?$/),
    fc.constantFrom('true', 'false', 'True', '.5', '5.', '-', '+', '.', 'e5', '1e', '0x10', ' 1', '1 '),
  );
  fc.assert(
    fc.property(text, fc.constantFrom(-1, 0, 1, 5.5, 'x', true), (s, c) => {
      for (const op of ['$eq', '$ne', '$gt', '$lt']) {
        const cond = { [op]: ['&v', c] };
        assert.equal(compiledOutcome(cond, { v: s }), refOutcome(cond, { v: s }), `${s} ${op} ${String(c)}`);
      }
    }),
    RUNS,
  );
});
