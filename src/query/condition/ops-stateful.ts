/**
 * Stateful operators (api.md §13.3): `$each_n`, `$each_t`, `$limit`, `$gate`. Their state lives in
 * closures and is exposed through {@link StateSlot}s so replication can persist and restore it.
 */
import { FerryError } from '../../protocol/errors.js';
import {
  compileError,
  LIMIT_REACHED,
  requireCount,
  testOf,
  type EvalContext,
  type Expr,
  type OperatorBuilder,
  type StateSlot,
} from './expr.js';
import { asFloat, asInt, Duration, type Val } from './value.js';

/** Runs a check on a constant operand at compile time, turning its error into a 422 naming the operator. */
function checkConst(name: string, e: Expr, check: (v: Val) => void): void {
  if (!e.konst) return;
  try {
    check(e.value!);
  } catch (err) {
    if (err instanceof FerryError)
      throw err.message.includes(name) ? err : compileError(`${err.message} (in ${name})`);
    throw err;
  }
}

function eachNCount(name: string, v: Val): number {
  const n = Number(asInt(v));
  // Zero is refused by the reference; a negative N would select everything, which in a REMOVE
  // query means deleting everything: refuse it too.
  if (n <= 0)
    throw compileError(`Value '${n}' is not a valid operand for ${name}: it must be a positive integer`);
  return n;
}

function isNumArray(x: unknown, len: number): x is unknown[] {
  return Array.isArray(x) && x.length === len;
}

function badState(kind: string): FerryError {
  return new FerryError(422, `Invalid saved state for ${kind}`);
}

/** A state slot holding one number (the counters of `$each_n` and `$limit`). */
function numberSlot(kind: string, get: () => number, set: (v: number) => void): StateSlot {
  return {
    kind,
    save: get,
    restore: (s) => {
      if (typeof s !== 'number') throw badState(kind);
      set(s);
    },
  };
}

/** `$each_n: N` — true for the N-th, 2N-th, … evaluated record (counter starts at 1). */
export const eachNOp: OperatorBuilder = (name, operands, scope) => {
  requireCount(name, operands, 1);
  const nExpr = operands[0];
  checkConst(name, nExpr, (v) => eachNCount(name, v));
  let count = 0;
  scope.slots.push(
    numberSlot(
      name,
      () => count,
      (v) => (count = v),
    ),
  );
  const nFn = nExpr.fn;
  let fn: (ctx: EvalContext) => boolean;
  if (nExpr.konst) {
    const n = eachNCount(name, nExpr.value!);
    fn = () => ++count % n === 0;
  } else
    fn = (ctx) => {
      count++;
      return count % eachNCount(name, nFn(ctx)) === 0;
    };
  return { fn, bool: true };
};

/** A duration operand in µs: a duration literal, or a number of seconds. */
function thresholdUs(v: Val): number {
  if (v instanceof Duration) return Math.max(0, v.us);
  return Math.max(0, Math.trunc(asFloat(v) * 1_000_000));
}

/**
 * `$each_t: S` — the first record seeds the clock (false unless S = 0); afterwards true when at least
 * S has passed since the last record let through. Time going backwards re-seeds the clock.
 */
export const eachTOp: OperatorBuilder = (name, operands, scope) => {
  requireCount(name, operands, 1);
  const sExpr = operands[0];
  checkConst(name, sExpr, thresholdUs);
  let last: number | null = null;
  scope.slots.push({
    kind: name,
    save: () => last,
    restore: (s) => {
      if (s !== null && typeof s !== 'number') throw badState(name);
      last = s;
    },
  } satisfies StateSlot);
  const constUs = sExpr.konst ? thresholdUs(sExpr.value!) : undefined;
  const sFn = sExpr.fn;
  const fn = (ctx: EvalContext): boolean => {
    const ts = Number(ctx.ts);
    if (last === null || ts < last) last = ts;
    const thr = constUs ?? thresholdUs(sFn(ctx));
    if (ts - last >= thr) {
      last = ts;
      return true;
    }
    return false;
  };
  return { fn, bool: true };
};

/** `$limit: N` — lets the first N evaluated records through, then ends the whole query. */
export const limitOp: OperatorBuilder = (name, operands, scope) => {
  requireCount(name, operands, 1);
  const nExpr = operands[0];
  checkConst(name, nExpr, asInt);
  let count = 0;
  scope.slots.push(
    numberSlot(
      name,
      () => count,
      (v) => (count = v),
    ),
  );
  const nFn = nExpr.fn;
  const constN = nExpr.konst ? asInt(nExpr.value!) : undefined;
  const fn = (ctx: EvalContext): boolean => {
    count++;
    if (count > (constN ?? asInt(nFn(ctx)))) throw LIMIT_REACHED;
    return true;
  };
  return { fn, bool: true };
};

/**
 * `$gate: [duration, condition]` — a false→true edge of `condition` opens a window of `duration`
 * during which the output mirrors `condition`; after it closes the output stays false until
 * `condition` has been false once. Time going backwards resets the gate.
 */
export const gateOp: OperatorBuilder = (name, operands, scope) => {
  requireCount(name, operands, 2);
  const [dExpr, cond] = operands;
  checkConst(name, dExpr, thresholdUs);
  let deadline: number | null = null;
  let previous = false;
  let resetRequired = false;
  let lastTs: number | null = null;
  scope.slots.push({
    kind: name,
    save: () => [deadline, previous, resetRequired, lastTs],
    restore: (s) => {
      if (!isNumArray(s, 4)) throw badState(name);
      const [d, p, r, l] = s;
      if (
        (d !== null && typeof d !== 'number') ||
        typeof p !== 'boolean' ||
        typeof r !== 'boolean' ||
        (l !== null && typeof l !== 'number')
      ) {
        throw badState(name);
      }
      deadline = d;
      previous = p;
      resetRequired = r;
      lastTs = l;
    },
  } satisfies StateSlot);
  const dFn = dExpr.fn;
  const test = testOf(cond);
  const fn = (ctx: EvalContext): boolean => {
    const ts = Number(ctx.ts);
    if (lastTs !== null && ts < lastTs) {
      deadline = null;
      previous = false;
      resetRequired = false;
    }
    lastTs = ts;
    const duration = thresholdUs(dFn(ctx));
    const input = test(ctx);
    if (deadline !== null && ts >= deadline) {
      deadline = null;
      resetRequired = true;
    }
    if (resetRequired) {
      if (!input) resetRequired = false;
      previous = input;
      return false;
    }
    if (deadline === null && !previous && input) deadline = ts + duration;
    const out = deadline !== null && ts < deadline ? input : false;
    previous = input;
    return out;
  };
  return { fn, bool: true };
};
