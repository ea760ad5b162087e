/** Comparison operators (api.md §13.2, §13.3): `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`. */
import {
  notFoundRef,
  requireCount,
  type EvalContext,
  type Expr,
  type OperatorBuilder,
  type TestFn,
} from './expr.js';
import { inferLabel, numOf, valCmp, valEq, type Val } from './value.js';

type Kind = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte';
type Num = number | bigint;

const NUM_TESTS: Record<Kind, (x: Num, y: Num) => boolean> = {
  eq: (x, y) => x == y,
  ne: (x, y) => x != y,
  gt: (x, y) => x > y,
  gte: (x, y) => x >= y,
  lt: (x, y) => x < y,
  lte: (x, y) => x <= y,
};

const STR_TESTS: Record<Kind, (x: string, y: string) => boolean> = {
  eq: (x, y) => x === y,
  ne: (x, y) => x !== y,
  gt: (x, y) => x > y,
  gte: (x, y) => x >= y,
  lt: (x, y) => x < y,
  lte: (x, y) => x <= y,
};

/** Generic comparison of two values. */
export function compareValues(kind: Kind, a: Val, b: Val): boolean {
  switch (kind) {
    case 'eq':
      return valEq(a, b);
    case 'ne':
      return !valEq(a, b);
    case 'gt':
      return valCmp(a, b) === 1;
    case 'gte': {
      const r = valCmp(a, b);
      return r === 1 || r === 0;
    }
    case 'lt':
      return valCmp(a, b) === -1;
    case 'lte': {
      const r = valCmp(a, b);
      return r === -1 || r === 0;
    }
  }
}

function mirror(kind: Kind): Kind {
  switch (kind) {
    case 'gt':
      return 'lt';
    case 'gte':
      return 'lte';
    case 'lt':
      return 'gt';
    case 'lte':
      return 'gte';
    default:
      return kind;
  }
}

/** `label <op> constant`, with the label's type inferred inline (the hot path of most queries). */
function labelVsConst(kind: Kind, label: string, c: Val): TestFn {
  const mixed = kind === 'ne'; // string vs non-string: only $ne is true
  if (typeof c === 'string') {
    const strTest = STR_TESTS[kind];
    if (typeof inferLabel(c) === 'string' && (kind === 'eq' || kind === 'ne')) {
      // A label equal to `c` as text also infers to a string, so text equality decides.
      return kind === 'eq'
        ? (ctx) => {
            const s = ctx.labels[label];
            if (typeof s !== 'string') throw notFoundRef(label);
            return s === c;
          }
        : (ctx) => {
            const s = ctx.labels[label];
            if (typeof s !== 'string') throw notFoundRef(label);
            return s !== c;
          };
    }
    return (ctx) => {
      const s = ctx.labels[label];
      if (typeof s !== 'string') throw notFoundRef(label);
      const v = inferLabel(s);
      return typeof v === 'string' ? strTest(v, c) : mixed;
    };
  }
  const y = numOf(c);
  const numTest = NUM_TESTS[kind];
  return (ctx) => {
    const s = ctx.labels[label];
    if (typeof s !== 'string') throw notFoundRef(label);
    const v = inferLabel(s);
    if (typeof v === 'number') return numTest(v, y);
    if (typeof v === 'string') return mixed;
    return numTest(numOf(v), y);
  };
}

function build(kind: Kind): OperatorBuilder {
  return (name, operands) => {
    requireCount(name, operands, 2);
    const [a, b] = operands;
    let fn: TestFn;
    if (a.label !== undefined && b.konst) fn = labelVsConst(kind, a.label, b.value!);
    else if (b.label !== undefined && a.konst) fn = labelVsConst(mirror(kind), b.label, a.value!);
    else if (b.konst) {
      const fa = a.fn;
      const vb = b.value!;
      fn = (ctx: EvalContext) => compareValues(kind, fa(ctx), vb);
    } else {
      const fa = a.fn;
      const fb = b.fn;
      fn = (ctx: EvalContext) => compareValues(kind, fa(ctx), fb(ctx));
    }
    return { fn, bool: true, pure: a.pure && b.pure } satisfies Expr;
  };
}

export const eqOp = build('eq');
export const neOp = build('ne');
export const gtOp = build('gt');
export const gteOp = build('gte');
export const ltOp = build('lt');
export const lteOp = build('lte');
