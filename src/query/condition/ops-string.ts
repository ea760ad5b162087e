/** String operators (api.md §13.3): `$contains`, `$starts_with`, `$ends_with` on the operands' string forms. */
import { requireCount, type EvalContext, type Expr, type OperatorBuilder } from './expr.js';
import { toStr } from './value.js';

function build(test: (s: string, part: string) => boolean): OperatorBuilder {
  return (name, operands) => {
    requireCount(name, operands, 2);
    const [a, b] = operands;
    const fa = a.fn;
    const fb = b.fn;
    let fn: (ctx: EvalContext) => boolean;
    if (b.konst) {
      const part = toStr(b.value!);
      fn = (ctx) => test(toStr(fa(ctx)), part);
    } else fn = (ctx) => test(toStr(fa(ctx)), toStr(fb(ctx)));
    return { fn, bool: true, pure: a.pure && b.pure } satisfies Expr;
  };
}

export const containsOp = build((s, part) => s.includes(part));
export const startsWithOp = build((s, part) => s.startsWith(part));
export const endsWithOp = build((s, part) => s.endsWith(part));
