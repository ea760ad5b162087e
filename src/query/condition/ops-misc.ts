/** Misc operators (api.md §13.3): `$exists`/`$has`, `$cast`, `$ref`, `$timestamp`/`$id`; label references. */
import { FerryError } from '../../protocol/errors.js';
import {
  compileError,
  notFoundRef,
  requireCount,
  type EvalContext,
  type Expr,
  type OperatorBuilder,
} from './expr.js';
import { parseDurationLiteral } from './duration.js';
import {
  asFloat,
  asInt,
  Duration,
  evalError,
  inferLabel,
  normInt,
  toStr,
  truthy,
  type Val,
} from './value.js';

/** `&name`: the record's label, type inferred. */
export function labelRef(name: string): Expr {
  return {
    fn: (ctx) => {
      const s = ctx.labels[name];
      if (typeof s !== 'string') throw notFoundRef(name);
      return inferLabel(s);
    },
    label: name,
  };
}

/** `@name`: a computed label (produced by extensions; none exist here, so usually missing). */
export function computedRef(name: string): Expr {
  return {
    fn: (ctx) => {
      const s = ctx.computed?.[name];
      if (typeof s !== 'string') throw notFoundRef(name);
      return inferLabel(s);
    },
  };
}

/** `$timestamp` / `$id`: the record timestamp as int. */
export const timestampOp: OperatorBuilder = (name, operands) => {
  requireCount(name, operands, 0);
  return { fn: (ctx: EvalContext) => (ctx.ts <= 9007199254740991n ? Number(ctx.ts) : normInt(ctx.ts)) };
};

/** `$exists` / `$has`: all named labels exist. */
export const existsOp: OperatorBuilder = (name, operands) => {
  if (operands.length === 0) throw compileError(`${name} requires at least one operand`);
  if (operands.every((o) => o.konst)) {
    const names = operands.map((o) => toStr(o.value!));
    if (names.length === 1) {
      const n = names[0];
      return { fn: (ctx: EvalContext) => typeof ctx.labels[n] === 'string', bool: true };
    }
    return {
      fn: (ctx: EvalContext) => {
        for (let i = 0; i < names.length; i++) if (typeof ctx.labels[names[i]] !== 'string') return false;
        return true;
      },
      bool: true,
    };
  }
  const fns = operands.map((o) => o.fn);
  return {
    fn: (ctx: EvalContext) => {
      for (let i = 0; i < fns.length; i++)
        if (typeof ctx.labels[toStr(fns[i](ctx))] !== 'string') return false;
      return true;
    },
    bool: true,
  };
};

/** `$ref`: label looked up by a computed name. */
export const refOp: OperatorBuilder = (name, operands) => {
  requireCount(name, operands, 1);
  const f = operands[0].fn;
  return {
    fn: (ctx: EvalContext) => {
      const label = toStr(f(ctx));
      const s = ctx.labels[label];
      if (typeof s !== 'string') throw new FerryError(404, `Label '${JSON.stringify(label)}' not found`);
      return inferLabel(s);
    },
  };
};

const CASTS: Record<string, (v: Val) => Val> = {
  bool: (v) => truthy(v),
  int: (v) => asInt(v),
  float: (v) => asFloat(v),
  string: (v) => toStr(v),
  duration: (v) => {
    if (v instanceof Duration) return v;
    if (typeof v === 'string') {
      const us = parseDurationLiteral(v);
      if (us !== undefined) return new Duration(us);
    }
    return new Duration(Number(asInt(v)));
  },
};

/** `$cast` to `bool`, `int`, `float`, `string` or `duration`. */
export const castOp: OperatorBuilder = (name, operands) => {
  requireCount(name, operands, 2);
  const [a, t] = operands;
  const fa = a.fn;
  if (t.konst) {
    const typeName = toStr(t.value!);
    const cast = Object.hasOwn(CASTS, typeName) ? CASTS[typeName] : undefined;
    if (cast === undefined) throw compileError(`Unknown type '${typeName}' in ${name}`);
    return { fn: (ctx: EvalContext) => cast(fa(ctx)), pure: a.pure, bool: typeName === 'bool' };
  }
  const ft = t.fn;
  return {
    fn: (ctx: EvalContext) => {
      const typeName = toStr(ft(ctx));
      const cast = Object.hasOwn(CASTS, typeName) ? CASTS[typeName] : undefined;
      if (cast === undefined) throw evalError(`Unknown type '${typeName}'`);
      return cast(fa(ctx));
    },
    pure: a.pure && t.pure,
  };
};
