/**
 * Stored-filter templates (replication.md §3 `filter` + `query_params`): validation of a filter
 * definition, of a replication's parameters against it, and substitution of the
 * `{"$param": "<name>"}` placeholders. Pure: the condition compiler is passed in.
 */
import { Errors, FerryError } from '../protocol/errors.js';
import { JsonFloat, describeJsonValue, jsonNumber } from '../protocol/json.js';
import { MAX_FILTER_DESCRIPTION_CHARS } from '../protocol/limits.js';
import { FILTER_PARAM_TYPES, type FilterParam, type FilterParamType } from '../protocol/filters.js';

/** A validated filter definition. */
export interface FilterDefinition {
  description: string;
  when: Record<string, unknown>;
  /** Every parameter (undeclared placeholders as required `any`). */
  params: Record<string, FilterParam>;
}

/** Starts with a letter (so never `__proto__`), at most 64 characters. */
const PARAM_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);

const invalidFilter = (field: string, why: string): FerryError =>
  Errors.unprocessable(`Invalid filter '${field}': ${why}`);

const invalidParam = (field: string, why: string): FerryError =>
  Errors.unprocessable(`Invalid replication setting '${field}': ${why}`);

/** The placeholder name when `v` is `{"$param": "<name>"}`, else undefined. */
function placeholderName(v: unknown): string | undefined {
  if (!isObject(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1 || keys[0] !== '$param') return undefined;
  const name = v.$param;
  if (typeof name !== 'string' || !PARAM_NAME.test(name)) {
    throw invalidFilter(
      'when',
      `'$param' must name a parameter (a letter, then letters, digits, '_'), got ${describeJsonValue(name)}`,
    );
  }
  return name;
}

/** Placeholder names used in `template`, in order of first use. */
export function placeholders(template: unknown): string[] {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    const name = placeholderName(v);
    if (name !== undefined) out.add(name);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (isObject(v)) Object.values(v).forEach(walk);
  };
  walk(template);
  return [...out];
}

/**
 * `template` with every placeholder replaced by its value (values must cover every placeholder);
 * an array value of a placeholder that is an element of an operand list is spliced into the list.
 */
export function substitute(template: unknown, values: Readonly<Record<string, unknown>>): unknown {
  const name = placeholderName(template);
  if (name !== undefined) return Object.hasOwn(values, name) ? values[name] : undefined;
  // An array in `when` is an operator's operand list (the language has no array values): an array
  // parameter standing in such a list is spliced into it, `{"$in": ["&cam", {"$param": "cams"}]}`.
  if (Array.isArray(template)) {
    return template.flatMap((v) => {
      const out = substitute(v, values);
      return placeholderName(v) !== undefined && Array.isArray(out) ? (out as unknown[]) : [out];
    });
  }
  if (isObject(template)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(template)) {
      // defineProperty: a key named `__proto__` stays data
      Object.defineProperty(out, k, {
        value: substitute(v, values),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return template;
}

/** Why `v` is not of `type`, or undefined when it is. */
function typeMismatch(v: unknown, type: FilterParamType): string | undefined {
  const n = jsonNumber(v);
  const ok =
    type === 'any' ||
    (type === 'string' && typeof v === 'string') ||
    (type === 'boolean' && typeof v === 'boolean') ||
    (type === 'array' && Array.isArray(v)) ||
    (type === 'number' && n !== undefined) ||
    (type === 'integer' && (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))));
  if (v === null || v === undefined) return 'must not be null';
  if (ok) return undefined;
  return `must be ${type === 'integer' || type === 'array' ? 'an' : 'a'} ${type}`;
}

/** A stand-in value of each type, to compile a template whose parameter has no default. */
const SAMPLE: Record<FilterParamType, unknown> = {
  string: '',
  number: 0,
  integer: 0,
  boolean: false,
  array: [''],
  any: '',
};

/**
 * Validates a filter body (POST/PUT). The template is compiled with `checkWhen` after its
 * placeholders were replaced by their defaults (or a stand-in of their type), so that a filter
 * that can never compile is refused at once; each replication's values are compiled again.
 */
export function parseFilterDefinition(body: unknown, checkWhen: (when: unknown) => void): FilterDefinition {
  if (!isObject(body)) throw Errors.invalidJson('expected a filter object');
  for (const k of Object.keys(body)) {
    if (!['when', 'params', 'description'].includes(k)) throw invalidFilter(k, 'unknown field');
  }
  if (!isObject(body.when)) throw invalidFilter('when', 'must be an object');
  const when = body.when;
  let description = '';
  if (body.description !== undefined && body.description !== null) {
    if (typeof body.description !== 'string') throw invalidFilter('description', 'must be a string');
    if (body.description.length > MAX_FILTER_DESCRIPTION_CHARS) {
      throw invalidFilter('description', `must be at most ${MAX_FILTER_DESCRIPTION_CHARS} characters`);
    }
    description = body.description;
  }
  const used = placeholders(when);
  const params = {} as Record<string, FilterParam>;
  if (body.params !== undefined && body.params !== null) {
    if (!isObject(body.params)) throw invalidFilter('params', 'must be an object');
    for (const [name, decl] of Object.entries(body.params)) {
      const field = `params.${name}`;
      if (!PARAM_NAME.test(name))
        throw invalidFilter(field, "a parameter name is a letter, then letters, digits and '_'");
      if (!used.includes(name)) throw invalidFilter(field, "declared but not used in 'when'");
      if (!isObject(decl)) throw invalidFilter(field, 'must be an object');
      for (const k of Object.keys(decl)) {
        if (!['type', 'default', 'description'].includes(k))
          throw invalidFilter(`${field}.${k}`, 'unknown field');
      }
      if (!(FILTER_PARAM_TYPES as readonly unknown[]).includes(decl.type)) {
        throw invalidFilter(`${field}.type`, `must be one of ${FILTER_PARAM_TYPES.join(', ')}`);
      }
      const p: FilterParam = { type: decl.type as FilterParamType };
      if (decl.default !== undefined && decl.default !== null) {
        const why = typeMismatch(decl.default, p.type);
        if (why) throw invalidFilter(`${field}.default`, why);
        p.default = decl.default;
      }
      if (decl.description !== undefined && decl.description !== null) {
        if (typeof decl.description !== 'string' || decl.description.length > MAX_FILTER_DESCRIPTION_CHARS) {
          throw invalidFilter(
            `${field}.description`,
            `must be a string of at most ${MAX_FILTER_DESCRIPTION_CHARS} characters`,
          );
        }
        p.description = decl.description;
      }
      params[name] = p;
    }
  }
  for (const name of used) params[name] ??= { type: 'any' };
  const sample = {} as Record<string, unknown>;
  for (const [name, p] of Object.entries(params)) sample[name] = p.default ?? SAMPLE[p.type];
  try {
    checkWhen(substitute(when, sample));
  } catch (e) {
    throw invalidFilter('when', e instanceof Error ? e.message : String(e));
  }
  return { description, when, params };
}

/**
 * The values of every parameter for a replication's `query_params` (defaults filled in). A
 * missing, unknown or ill-typed parameter is refused with 422 naming it.
 */
export function resolveParams(
  filter: string,
  def: FilterDefinition,
  queryParams: unknown,
): Record<string, unknown> {
  const given = queryParams ?? {};
  if (!isObject(given)) throw invalidParam('query_params', 'must be an object');
  const values = {} as Record<string, unknown>;
  for (const [name, v] of Object.entries(given)) {
    const p = Object.hasOwn(def.params, name) ? def.params[name] : undefined;
    if (!p) throw invalidParam(`query_params.${name}`, `filter '${filter}' has no such parameter`);
    const why = typeMismatch(v, p.type);
    if (why) throw invalidParam(`query_params.${name}`, why);
    values[name] = v;
  }
  for (const [name, p] of Object.entries(def.params)) {
    if (Object.hasOwn(values, name)) continue;
    if (p.default === undefined) {
      throw invalidParam(`query_params.${name}`, `missing: filter '${filter}' needs it`);
    }
    values[name] = p.default;
  }
  return values;
}
