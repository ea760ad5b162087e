/** Logical operators (api.md §13.3): `$and`/`$all_of`, `$or`/`$any_of`, `$not`/`$none_of`, `$xor`/`$one_of`, `$in`, `$nin`. */
import { compileError, testOf, type Expr, type OperatorBuilder, type TestFn } from './expr.js';
import { valEq } from './value.js';

function boolExpr(fn: TestFn, operands: Expr[]): Expr {
  return { fn, bool: true, pure: operands.every((o) => o.pure) };
}

/** AND with short-circuit; empty → true. */
export const andOp: OperatorBuilder = (_name, operands) => boolExpr(allOf(operands.map(testOf)), operands);

export function allOf(tests: TestFn[]): TestFn {
  switch (tests.length) {
    case 0:
      return () => true;
    case 1:
      return tests[0];
    case 2: {
      const [a, b] = tests;
      return (ctx) => a(ctx) && b(ctx);
    }
    case 3: {
      const [a, b, c] = tests;
      return (ctx) => a(ctx) && b(ctx) && c(ctx);
    }
    default:
      return (ctx) => {
        for (let i = 0; i < tests.length; i++) if (!tests[i](ctx)) return false;
        return true;
      };
  }
}

/** OR with short-circuit; empty → false. */
export const orOp: OperatorBuilder = (_name, operands) => {
  const tests = operands.map(testOf);
  let fn: TestFn;
  if (tests.length === 0) fn = () => false;
  else if (tests.length === 1) fn = tests[0];
  else if (tests.length === 2) {
    const [a, b] = tests;
    fn = (ctx) => a(ctx) || b(ctx);
  } else
    fn = (ctx) => {
      for (let i = 0; i < tests.length; i++) if (tests[i](ctx)) return true;
      return false;
    };
  return boolExpr(fn, operands);
};

/** NOT / NONE_OF: true if none of the operands is true (stops at the first true one). */
export const notOp: OperatorBuilder = (_name, operands) => {
  const tests = operands.map(testOf);
  let fn: TestFn;
  if (tests.length === 1) {
    const a = tests[0];
    fn = (ctx) => !a(ctx);
  } else
    fn = (ctx) => {
      for (let i = 0; i < tests.length; i++) if (tests[i](ctx)) return false;
      return true;
    };
  return boolExpr(fn, operands);
};

/** XOR / ONE_OF: exactly one operand is true (all are evaluated). */
export const xorOp: OperatorBuilder = (_name, operands) => {
  const tests = operands.map(testOf);
  const fn: TestFn = (ctx) => {
    let count = 0;
    for (let i = 0; i < tests.length; i++) if (tests[i](ctx)) count++;
    return count === 1;
  };
  return boolExpr(fn, operands);
};

function membership(negate: boolean): OperatorBuilder {
  return (name, operands) => {
    if (operands.length < 2) throw compileError(`${name} operator requires at least two operands`);
    const first = operands[0].fn;
    const rest = operands.slice(1);
    let fn: TestFn;
    if (rest.every((o) => o.konst)) {
      const values = rest.map((o) => o.value!);
      fn = (ctx) => {
        const v = first(ctx);
        for (let i = 0; i < values.length; i++) if (valEq(v, values[i])) return !negate;
        return negate;
      };
    } else {
      const fns = rest.map((o) => o.fn);
      fn = (ctx) => {
        const v = first(ctx);
        for (let i = 0; i < fns.length; i++) if (valEq(v, fns[i](ctx))) return !negate;
        return negate;
      };
    }
    return boolExpr(fn, operands);
  };
}

export const inOp = membership(false);
export const ninOp = membership(true);
