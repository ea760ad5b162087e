/**
 * Checks of client-supplied fields against the bounds of `limits.ts` (422 naming the field). The
 * HTTP edge runs them while parsing a request, before any byte is stored; storage may run them
 * again. Messages never echo a long value back: names are cut to a short excerpt.
 */
import { Errors } from './errors.js';
import {
  MAX_CONTENT_TYPE_BYTES,
  MAX_LABELS_PER_RECORD,
  MAX_LABELS_TOTAL_BYTES,
  MAX_LABEL_NAME_BYTES,
  MAX_LABEL_VALUE_BYTES,
  MAX_ORIGIN_BYTES,
} from './limits.js';
import { utf8Length } from './utf8.js';

const EXCERPT_CHARS = 32;

/** The first characters of a client value, for an error message (ASCII `...` marks a cut). */
export function excerpt(value: string): string {
  return value.length <= EXCERPT_CHARS ? value : `${value.slice(0, EXCERPT_CHARS)}...`;
}

/**
 * UTF-8 length of `s` when it exceeds `max`, else undefined; counted only when it could (a char is at
 * most 3 bytes). Every check below runs per record on the write path, at the edge and again in
 * storage, so error messages are built only on failure.
 */
function bytesOver(s: string, max: number): number | undefined {
  if (s.length * 3 <= max) return undefined;
  const n = utf8Length(s);
  return n > max ? n : undefined;
}

/** 422 when a content type is longer than {@link MAX_CONTENT_TYPE_BYTES}. `where`: e.g. ` of record 5`. */
export function checkContentType(contentType: string, where = ''): void {
  const n = bytesOver(contentType, MAX_CONTENT_TYPE_BYTES);
  if (n !== undefined) throw Errors.fieldTooLong(`Content-Type${where}`, n, MAX_CONTENT_TYPE_BYTES);
}

/** 422 when a label name is longer than {@link MAX_LABEL_NAME_BYTES}. */
export function checkLabelNameBytes(name: string, where = ''): void {
  const n = bytesOver(name, MAX_LABEL_NAME_BYTES);
  if (n !== undefined)
    throw Errors.fieldTooLong(`Label name '${excerpt(name)}'${where}`, n, MAX_LABEL_NAME_BYTES);
}

/**
 * 422 when the labels of one record (or the label changes of one update: `null` deletes) break a
 * bound: count, name length, value length, or names and values together.
 */
export function checkLabelSet(labels: Readonly<Record<string, string | null>>, where = ''): void {
  const names = Object.keys(labels);
  if (names.length > MAX_LABELS_PER_RECORD) {
    throw Errors.tooManyLabels(where, names.length, MAX_LABELS_PER_RECORD);
  }
  let total = 0;
  for (const name of names) {
    checkLabelNameBytes(name, where);
    const value = labels[name] ?? '';
    const n = bytesOver(value, MAX_LABEL_VALUE_BYTES);
    if (n !== undefined) {
      throw Errors.fieldTooLong(`Value of label '${excerpt(name)}'${where}`, n, MAX_LABEL_VALUE_BYTES);
    }
    total += name.length + value.length;
  }
  // Characters are a lower bound of bytes: count bytes only when the bound is near.
  if (total * 3 > MAX_LABELS_TOTAL_BYTES) {
    total = 0;
    for (const name of names) total += utf8Length(name) + utf8Length(labels[name] ?? '');
    if (total > MAX_LABELS_TOTAL_BYTES) throw Errors.labelsTooLarge(where, total, MAX_LABELS_TOTAL_BYTES);
  }
}

/** 422 when an `x-ferry-origin` value is longer than {@link MAX_ORIGIN_BYTES}. */
export function checkOrigin(origin: string): void {
  const n = bytesOver(origin, MAX_ORIGIN_BYTES);
  if (n !== undefined) throw Errors.fieldTooLong('x-ferry-origin', n, MAX_ORIGIN_BYTES);
}
