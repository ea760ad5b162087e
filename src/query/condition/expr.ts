/**
 * The compiled form of a condition: a tree of closures. Each node is an {@link Expr} whose `fn`
 * computes its value for one record; constants, plain label references and boolean-only nodes are
 * marked so that parents can specialise (e.g. a comparison of a label against a constant number).
 */
import type { Labels } from '../../storage/types.js';
import { FerryError } from '../../protocol/errors.js';
import { truthy, type Val } from './value.js';

/** What a condition sees of a record: never its blob. */
export interface EvalContext {
  ts: bigint;
  labels: Labels;
  computed?: Labels;
}

export type EvalFn = (ctx: EvalContext) => Val;
export type TestFn = (ctx: EvalContext) => boolean;

export interface Expr {
  readonly fn: EvalFn;
  /** `fn` always returns a boolean. */
  readonly bool?: boolean;
  /** Compile-time constant (then `value` holds it). */
  readonly konst?: boolean;
  readonly value?: Val;
  /** Plain `&name` reference. */
  readonly label?: string;
  /** Depends on nothing but its operands (no labels, no timestamp, no state). */
  readonly pure?: boolean;
}

/** State of one stateful operator instance, saved into replication cursors. */
export interface StateSlot {
  readonly kind: string;
  save(): unknown;
  restore(state: unknown): void;
}

/** Collects what compilation discovers: stateful operators in evaluation order. */
export class CompileScope {
  readonly slots: StateSlot[] = [];
}

/** Thrown by `$limit` once exhausted; caught by the compiled condition, which then reports `done`. */
export const LIMIT_REACHED: unique symbol = Symbol('limit reached');

export function constExpr(value: Val): Expr {
  const fn = (): Val => value;
  return { fn, konst: true, value, pure: true, bool: typeof value === 'boolean' };
}

/** Boolean test of an operand (truthiness), without wrapping when it is already boolean. */
export function testOf(e: Expr): TestFn {
  if (e.konst) {
    const b = truthy(e.value as Val);
    return () => b;
  }
  if (e.bool) return e.fn as TestFn;
  const fn = e.fn;
  return (ctx) => truthy(fn(ctx));
}

/** 422 raised while compiling; the message names the operator or operand at fault. */
export function compileError(message: string): FerryError {
  return new FerryError(422, message);
}

export function notFoundRef(name: string): FerryError {
  return new FerryError(404, `Reference '${name}' not found`);
}

/** Builder of one operator: receives the operator name as written and its compiled operands. */
export type OperatorBuilder = (name: string, operands: Expr[], scope: CompileScope) => Expr;

export function requireCount(name: string, operands: Expr[], count: number): void {
  if (operands.length !== count) {
    const what = count === 0 ? 'no operands' : count === 1 ? 'exactly one operand' : 'exactly two operands';
    throw compileError(`${name} requires ${what}`);
  }
}
