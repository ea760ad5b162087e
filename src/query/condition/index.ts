/**
 * The `when` condition language (api.md §13): compile once, evaluate per record.
 *
 * ```ts
 * const cond = compileCondition(parseJson('{"&score": {"$gte": 0.8}}'));
 * cond.evaluate({ ts: 1n, labels: { score: '0.9' } }); // true
 * ```
 */
export { compileCondition, passesLenient, type CompiledCondition } from './compiled-condition.js';
export type { Directives } from './directives.js';
export type { EvalContext } from './expr.js';
export { legacyToWhen } from './legacy.js';
export { parseDurationLiteral, formatDuration } from './duration.js';
export { OPERATOR_NAMES } from './compiler.js';
