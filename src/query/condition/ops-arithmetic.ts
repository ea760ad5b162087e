/** Arithmetic operators (api.md §13.3): `$add` (n-ary), `$sub`, `$mult`, `$div`, `$div_num`, `$rem`, `$abs`. */
import { requireCount, type EvalContext, type Expr, type OperatorBuilder } from './expr.js';
import { asFloat, asInt, evalError, normInt, numOf, typeName, type Val } from './value.js';

type Num = number | bigint;

/** Integer-exact binary arithmetic: safe ints overflowing 2^53 continue in i64 (wrapping) via bigint. */
function arith(
  x: Num,
  y: Num,
  op: (a: number, b: number) => number,
  big: (a: bigint, b: bigint) => bigint,
): Num {
  if (typeof x === 'number' && typeof y === 'number') {
    const r = op(x, y);
    if (Number.isSafeInteger(r) || !Number.isSafeInteger(x) || !Number.isSafeInteger(y)) return r;
    return normInt(BigInt.asIntN(64, big(BigInt(x), BigInt(y))));
  }
  if ((typeof x === 'number' && !Number.isInteger(x)) || (typeof y === 'number' && !Number.isInteger(y))) {
    return op(Number(x), Number(y));
  }
  return normInt(BigInt.asIntN(64, big(BigInt(x), BigInt(y))));
}

export function addValues(a: Val, b: Val): Val {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a === 'string' && typeof b === 'string') return a + b;
    if (typeof a === 'string') throw evalError(`Cannot add string to ${typeName(b)}`);
    throw evalError(`Cannot add ${typeName(a)} to string`);
  }
  return arith(
    numOf(a),
    numOf(b),
    (p, q) => p + q,
    (p, q) => p + q,
  );
}

export function subValues(a: Val, b: Val): Val {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a === 'string' && typeof b === 'string') throw evalError('Cannot subtract string');
    throw evalError(`Cannot subtract string from ${typeName(typeof a === 'string' ? b : a)}`);
  }
  return arith(
    numOf(a),
    numOf(b),
    (p, q) => p - q,
    (p, q) => p - q,
  );
}

export function multValues(a: Val, b: Val): Val {
  if (typeof a === 'string' || typeof b === 'string') {
    throw evalError(`Cannot multiply ${typeName(a)} by ${typeName(b)}`);
  }
  return arith(
    numOf(a),
    numOf(b),
    (p, q) => p * q,
    (p, q) => p * q,
  );
}

export function divValues(a: Val, b: Val): Val {
  if (typeof a === 'string') throw evalError('Cannot divide string');
  if (typeof b === 'string') throw evalError('Cannot divide by string');
  const y = asFloat(b);
  if (y === 0) throw evalError('Cannot divide by zero');
  return asFloat(a) / y;
}

export function divNumValues(a: Val, b: Val): Val {
  if (typeof a === 'string') throw evalError('Cannot divide string');
  if (typeof b === 'string') throw evalError('Cannot divide by string');
  const y = asInt(b);
  if (y == 0) throw evalError('Cannot divide by zero');
  const x = asInt(a);
  if (typeof x === 'number' && typeof y === 'number') return Math.trunc(x / y) || 0;
  return normInt(BigInt.asIntN(64, BigInt(x) / BigInt(y)));
}

export function remValues(a: Val, b: Val): Val {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a === 'string' && typeof b === 'string') throw evalError('Cannot divide string');
    throw evalError(`Cannot divide ${typeName(a)} by ${typeName(b)}`);
  }
  const x = numOf(a);
  const y = numOf(b);
  if (y == 0) throw evalError('Cannot divide by zero');
  if (typeof x === 'number' && typeof y === 'number') return x % y || 0;
  return arith(
    x,
    y,
    (p, q) => p % q,
    (p, q) => p % q,
  );
}

export function absValue(a: Val): Val {
  if (typeof a === 'string') throw evalError('Cannot calculate absolute value of a string');
  const x = numOf(a);
  if (typeof x === 'number') return Math.abs(x);
  return normInt(BigInt.asIntN(64, x < 0n ? -x : x));
}

function binary(f: (a: Val, b: Val) => Val): OperatorBuilder {
  return (name, operands) => {
    requireCount(name, operands, 2);
    const [a, b] = operands;
    const fa = a.fn;
    const fb = b.fn;
    let fn: (ctx: EvalContext) => Val;
    if (b.konst) {
      const vb = b.value!;
      fn = (ctx) => f(fa(ctx), vb);
    } else fn = (ctx) => f(fa(ctx), fb(ctx));
    return { fn, pure: a.pure && b.pure } satisfies Expr;
  };
}

/** `$add`: n-ary sum (string + string concatenates); no operands → 0. */
export const addOp: OperatorBuilder = (_name, operands) => {
  const fns = operands.map((o) => o.fn);
  const pure = operands.every((o) => o.pure);
  if (fns.length === 0) return { fn: () => 0, pure };
  if (fns.length === 1) return { fn: fns[0], pure };
  if (fns.length === 2) {
    const [fa, fb] = fns;
    return { fn: (ctx) => addValues(fa(ctx), fb(ctx)), pure };
  }
  return {
    fn: (ctx) => {
      let sum = fns[0](ctx);
      for (let i = 1; i < fns.length; i++) sum = addValues(sum, fns[i](ctx));
      return sum;
    },
    pure,
  };
};

export const subOp = binary(subValues);
export const multOp = binary(multValues);
export const divOp = binary(divValues);
export const divNumOp = binary(divNumValues);
export const remOp = binary(remValues);

export const absOp: OperatorBuilder = (name, operands) => {
  requireCount(name, operands, 1);
  const fa = operands[0].fn;
  return { fn: (ctx) => absValue(fa(ctx)), pure: operands[0].pure };
};
