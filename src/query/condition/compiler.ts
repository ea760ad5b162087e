/**
 * Parser + compiler of `when` (api.md §13.1): JSON value → tree of closures. Runs once per query
 * (or replication filter); all checks that do not depend on a record happen here.
 */
import { FerryError } from '../../protocol/errors.js';
import { JsonFloat, stringifyJson } from '../../protocol/json.js';
import { CompileScope, compileError, constExpr, type Expr, type OperatorBuilder } from './expr.js';
import { parseDurationLiteral } from './duration.js';
import { andOp, inOp, ninOp, notOp, orOp, xorOp } from './ops-logical.js';
import { eqOp, gteOp, gtOp, lteOp, ltOp, neOp } from './ops-compare.js';
import { absOp, addOp, divNumOp, divOp, multOp, remOp, subOp } from './ops-arithmetic.js';
import { containsOp, endsWithOp, startsWithOp } from './ops-string.js';
import { dayOp, hourOp, minuteOp, monthOp, secondOp, weekdayOp, yearOp } from './ops-date.js';
import { castOp, computedRef, existsOp, labelRef, refOp, timestampOp } from './ops-misc.js';
import { eachNOp, eachTOp, gateOp, limitOp } from './ops-stateful.js';
import { Duration, type Val } from './value.js';

const OPERATORS = new Map<string, OperatorBuilder>([
  ['$and', andOp],
  ['$all_of', andOp],
  ['$or', orOp],
  ['$any_of', orOp],
  ['$not', notOp],
  ['$none_of', notOp],
  ['$xor', xorOp],
  ['$one_of', xorOp],
  ['$in', inOp],
  ['$nin', ninOp],
  ['$eq', eqOp],
  ['$ne', neOp],
  ['$gt', gtOp],
  ['$gte', gteOp],
  ['$lt', ltOp],
  ['$lte', lteOp],
  ['$add', addOp],
  ['$sub', subOp],
  ['$mult', multOp],
  ['$div', divOp],
  ['$div_num', divNumOp],
  ['$rem', remOp],
  ['$abs', absOp],
  ['$contains', containsOp],
  ['$starts_with', startsWithOp],
  ['$ends_with', endsWithOp],
  ['$second', secondOp],
  ['$minute', minuteOp],
  ['$hour', hourOp],
  ['$day', dayOp],
  ['$month', monthOp],
  ['$year', yearOp],
  ['$weekday', weekdayOp],
  ['$exists', existsOp],
  ['$has', existsOp],
  ['$cast', castOp],
  ['$ref', refOp],
  ['$timestamp', timestampOp],
  ['$id', timestampOp],
  ['$each_n', eachNOp],
  ['$each_t', eachTOp],
  ['$limit', limitOp],
  ['$gate', gateOp],
]);

/** Every operator name the parser accepts. */
export const OPERATOR_NAMES: readonly string[] = [...OPERATORS.keys()];

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** Compiles an operator applied to operands; folds it to a constant when it is pure and constant. */
export function compileOperator(name: string, operands: Expr[], scope: CompileScope): Expr {
  if (!name.startsWith('$')) throw compileError(`Operator '${name}' must start with '$'`);
  const builder = OPERATORS.get(name);
  if (builder === undefined) throw compileError(`Operator '${name}' not supported`);
  const expr = builder(name, operands, scope);
  if (expr.pure && operands.length > 0 && operands.every((o) => o.konst)) {
    let value: Val;
    try {
      value = expr.fn(FOLD_CTX);
    } catch (e) {
      if (e instanceof FerryError) throw compileError(`${e.message} (in ${name})`);
      throw e;
    }
    return constExpr(value);
  }
  return expr;
}

const FOLD_CTX = { ts: 0n, labels: {} };

/** `parse_recursively`: one JSON value → its expressions (an object yields one per key). */
export function compileValue(json: unknown, scope: CompileScope): Expr[] {
  switch (typeof json) {
    case 'boolean':
      return [constExpr(json)];
    case 'number':
      return [constExpr(json)];
    case 'bigint':
      return [constExpr(json >= I64_MIN && json <= I64_MAX ? json : Number(json))];
    case 'string':
      return [compileLiteral(json, scope)];
    default:
      break;
  }
  if (json instanceof JsonFloat) return [constExpr(json.value)];
  if (Array.isArray(json)) throw compileError(`Array type is not supported: ${stringifyJson(json)}`);
  if (isObject(json)) return compileObject(json, scope);
  throw compileError(`Null type is not supported: null`);
}

/** Strings by prefix: `&label`, `@computed`, `$$escape`, `$operator`, duration literal, string. */
export function compileLiteral(text: string, scope: CompileScope): Expr {
  const c = text.charCodeAt(0);
  if (c === 38) return labelRef(text.slice(1));
  if (c === 64) return computedRef(text.slice(1));
  if (c === 36) {
    if (text.startsWith('$$')) return constExpr(text.slice(1));
    try {
      return compileOperator(text, [], scope);
    } catch (e) {
      if (e instanceof FerryError) {
        throw compileError(`Unknown '$' literal '${text}'; use '$$' to escape a string value`);
      }
      throw e;
    }
  }
  const us = parseDurationLiteral(text);
  return us === undefined ? constExpr(text) : constExpr(new Duration(us));
}

/** Every key of an object is one expression (array, object or bare-operand notation). */
/** Deepest object nesting a condition may have (bounds compile and evaluation recursion). */
export const MAX_CONDITION_DEPTH = 128;
let depth = 0;

export function compileObject(map: Record<string, unknown>, scope: CompileScope): Expr[] {
  if (depth >= MAX_CONDITION_DEPTH) {
    throw compileError(`Condition is nested too deeply (more than ${MAX_CONDITION_DEPTH} levels)`);
  }
  depth++;
  try {
    return compileObjectKeys(map, scope);
  } finally {
    depth--;
  }
}

function compileObjectKeys(map: Record<string, unknown>, scope: CompileScope): Expr[] {
  const out: Expr[] = [];
  for (const key of Object.keys(map)) {
    const value = map[key];
    if (Array.isArray(value)) {
      const operands: Expr[] = [];
      for (const item of value) operands.push(...compileValue(item, scope));
      out.push(compileOperator(key, operands, scope));
    } else if (isObject(value)) {
      out.push(compileObjectNotation(key, value, scope));
    } else {
      out.push(compileOperator(key, compileValue(value, scope), scope));
    }
  }
  return out;
}

function compileObjectNotation(left: string, inner: Record<string, unknown>, scope: CompileScope): Expr {
  const leftExpr = compileLiteral(left, scope);
  const keys = Object.keys(inner);
  if (keys.length !== 1) {
    throw compileError(
      `Object notation must have exactly one operator (in '${left}': ${keys.length === 0 ? 'none' : keys.join(', ')})`,
    );
  }
  const op = keys[0];
  return compileOperator(op, [leftExpr, ...compileValue(inner[op], scope)], scope);
}
