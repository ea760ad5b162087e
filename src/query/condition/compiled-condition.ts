/** The compiled `when` condition: evaluation entry point, `$limit` completion and operator state. */
import { FerryError, isFerryError } from '../../protocol/errors.js';
import { JsonFloat } from '../../protocol/json.js';
import { applyDirective, type Directives } from './directives.js';
import {
  CompileScope,
  compileError,
  LIMIT_REACHED,
  testOf,
  type EvalContext,
  type StateSlot,
  type TestFn,
} from './expr.js';
import { compileObject, compileValue } from './compiler.js';
import { allOf } from './ops-logical.js';

export interface CompiledCondition {
  /**
   * true = record passes. Throws FerryError 404 `Reference '<name>' not found` (or other evaluation
   * errors with their status) — the caller decides: strict mode fails the query, non-strict skips
   * the record.
   */
  evaluate(ctx: EvalContext): boolean;
  /** True once a `$limit` has been exhausted: the whole query/filter must end. */
  readonly done: boolean;
  readonly directives: Directives;
  /** Whether it has stateful operators (`$each_n`, `$each_t`, `$limit`, `$gate`). */
  readonly stateful: boolean;
  /** Serialisable snapshot of all operator state (for replication cursors that survive restarts). */
  saveState(): unknown;
  /** Restores a snapshot taken by `saveState` of a condition compiled from the same `when`. */
  restoreState(state: unknown): void;
  /** Fresh copy with independent state (replication keeps one state per source entry). */
  clone(): CompiledCondition;
}

interface SavedState {
  v: 1;
  done: boolean;
  slots: unknown[];
}

class Compiled implements CompiledCondition {
  private finished = false;

  constructor(
    private readonly source: unknown,
    private readonly root: TestFn,
    private readonly slots: StateSlot[],
    readonly directives: Directives,
  ) {}

  get done(): boolean {
    return this.finished;
  }

  get stateful(): boolean {
    return this.slots.length > 0;
  }

  evaluate(ctx: EvalContext): boolean {
    if (this.finished) return false;
    try {
      return this.root(ctx);
    } catch (e) {
      if (e === LIMIT_REACHED) {
        this.finished = true;
        return false;
      }
      throw e;
    }
  }

  saveState(): unknown {
    return { v: 1, done: this.finished, slots: this.slots.map((s) => s.save()) } satisfies SavedState;
  }

  restoreState(state: unknown): void {
    const s = state as Partial<SavedState> | null;
    if (
      !s ||
      s.v !== 1 ||
      typeof s.done !== 'boolean' ||
      !Array.isArray(s.slots) ||
      s.slots.length !== this.slots.length
    ) {
      throw new FerryError(422, 'Saved condition state does not match the condition');
    }
    this.slots.forEach((slot, i) => slot.restore(s.slots![i]));
    this.finished = s.done;
  }

  clone(): CompiledCondition {
    return compileCondition(this.source);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/**
 * Parses and checks a `when` value once. Input is the JSON value produced by `parseJson` (numbers
 * may be number, bigint, or the JsonFloat marker). `undefined`/`null` match every record. Throws
 * FerryError 422 with a message naming the wrong operator/operand.
 */
export function compileCondition(when: unknown): CompiledCondition {
  const scope = new CompileScope();
  const directives: Directives = {};
  let root: TestFn;
  if (when === undefined || when === null) {
    root = () => true;
  } else if (isObject(when)) {
    const conditions: Record<string, unknown> = {};
    for (const key of Object.keys(when)) {
      if (key.startsWith('#')) applyDirective(directives, key, when[key]);
      else conditions[key] = when[key];
    }
    root = allOf(compileObject(conditions, scope).map(testOf));
  } else if (Array.isArray(when)) {
    throw compileError(`Condition must be a JSON object, got an array`);
  } else {
    root = allOf(compileValue(when, scope).map(testOf));
  }
  return new Compiled(when, root, scope.slots, directives);
}

/**
 * Non-strict evaluation: a record the condition cannot judge (an evaluation error such as a
 * missing label) does not pass; other errors are thrown.
 */
export function passesLenient(cond: CompiledCondition, ctx: EvalContext): boolean {
  try {
    return cond.evaluate(ctx);
  } catch (e) {
    if (isFerryError(e)) return false;
    throw e;
  }
}
