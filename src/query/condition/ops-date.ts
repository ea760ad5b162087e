/**
 * Date operators (api.md §13.3): `$second` … `$weekday` of a µs timestamp in UTC or an IANA zone.
 * Fields are computed arithmetically from the zone's UTC offset; the offset comes from an
 * `Intl.DateTimeFormat` created once per zone and is cached per 15-minute bucket, so a time-ordered
 * scan calls into Intl about once per quarter hour of data, not once per record.
 */
import { compileError, type EvalContext, type Expr, type OperatorBuilder } from './expr.js';
import { asInt, evalError, type Val } from './value.js';

type Field = 'second' | 'minute' | 'hour' | 'day' | 'month' | 'year' | 'weekday';

const MS_PER_DAY = 86_400_000;
const BUCKET_MS = 900_000;
/** JS Date range, a little narrower than the reference's; outside it a timestamp is invalid. */
const MAX_ABS_MS = 8.64e15;

/** UTC offset lookup for one IANA zone. */
export class ZoneOffsets {
  private readonly fmt: Intl.DateTimeFormat;
  private bucket = NaN;
  private offset = 0;

  constructor(readonly zone: string) {
    this.fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      era: 'short',
    });
  }

  /** Offset in ms to add to a UTC instant to get the zone's wall-clock time. */
  offsetMs(utcMs: number): number {
    const bucket = Math.floor(utcMs / BUCKET_MS);
    if (bucket !== this.bucket) {
      this.offset = this.compute(bucket * BUCKET_MS);
      this.bucket = bucket;
    }
    return this.offset;
  }

  private compute(at: number): number {
    let year = 0;
    let month = 1;
    let day = 1;
    let hour = 0;
    let minute = 0;
    let second = 0;
    let bc = false;
    for (const p of this.fmt.formatToParts(at)) {
      switch (p.type) {
        case 'year':
          year = Number(p.value);
          break;
        case 'month':
          month = Number(p.value);
          break;
        case 'day':
          day = Number(p.value);
          break;
        case 'hour':
          hour = Number(p.value);
          break;
        case 'minute':
          minute = Number(p.value);
          break;
        case 'second':
          second = Number(p.value);
          break;
        case 'era':
          bc = p.value.startsWith('B');
          break;
      }
    }
    const d = new Date(0);
    d.setUTCFullYear(bc ? 1 - year : year, month - 1, day);
    d.setUTCHours(hour, minute, second, 0);
    return d.getTime() - at;
  }
}

/** Validates a zone name; throws 422 `Invalid timezone: '<zone>'`. */
export function zoneOffsets(zone: string): ZoneOffsets {
  try {
    return new ZoneOffsets(zone);
  } catch {
    throw compileError(`Invalid timezone: '${zone}'`);
  }
}

/** The requested calendar field of a wall-clock instant given in ms since the epoch. */
export function dateField(field: Field, localMs: number): number {
  const days = Math.floor(localMs / MS_PER_DAY);
  const msOfDay = localMs - days * MS_PER_DAY;
  switch (field) {
    case 'second':
      return Math.floor(msOfDay / 1000) % 60;
    case 'minute':
      return Math.floor(msOfDay / 60_000) % 60;
    case 'hour':
      return Math.floor(msOfDay / 3_600_000);
    case 'weekday':
      return ((days % 7) + 7 + 3) % 7; // 1970-01-01 was a Thursday; Monday = 0
    default: {
      // Civil date from days since the epoch (proleptic Gregorian).
      const z = days + 719_468;
      const era = Math.floor(z / 146_097);
      const doe = z - era * 146_097;
      const yoe = Math.floor(
        (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
      );
      const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
      const mp = Math.floor((5 * doy + 2) / 153);
      const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
      const m = mp < 10 ? mp + 3 : mp - 9;
      if (field === 'day') return d;
      if (field === 'month') return m;
      return yoe + era * 400 + (m <= 2 ? 1 : 0);
    }
  }
}

function timestampMs(name: string, v: Val): number {
  const us = asInt(v);
  const ms = Math.floor(Number(us) / 1000);
  if (!(Math.abs(ms) <= MAX_ABS_MS)) {
    throw evalError(`${name} requires a valid timestamp in microseconds, got ${us}`);
  }
  return ms;
}

function build(field: Field): OperatorBuilder {
  return (name, operands) => {
    if (operands.length !== 1 && operands.length !== 2)
      throw compileError(`${name} requires one or two operands`);
    const ts = operands[0].fn;
    const pure = operands.every((o) => o.pure);
    if (operands.length === 1) {
      return { fn: (ctx: EvalContext) => dateField(field, timestampMs(name, ts(ctx))), pure } satisfies Expr;
    }
    const tz = operands[1];
    if (tz.konst) {
      if (typeof tz.value !== 'string') throw compileError(`${name} requires timezone to be a string`);
      if (tz.value === 'UTC')
        return { fn: (ctx: EvalContext) => dateField(field, timestampMs(name, ts(ctx))), pure };
      const zone = zoneOffsets(tz.value);
      return {
        fn: (ctx: EvalContext) => {
          const ms = timestampMs(name, ts(ctx));
          return dateField(field, ms + zone.offsetMs(ms));
        },
        pure,
      };
    }
    // Zone computed per record (rare): keep a small cache of formatters.
    const zones = new Map<string, ZoneOffsets>();
    const tzFn = tz.fn;
    return {
      fn: (ctx: EvalContext) => {
        const ms = timestampMs(name, ts(ctx));
        const z = tzFn(ctx);
        if (typeof z !== 'string') throw evalError(`${name} requires timezone to be a string`);
        let zone = zones.get(z);
        if (zone === undefined) {
          try {
            zone = new ZoneOffsets(z);
          } catch {
            throw evalError(`Invalid timezone: '${z}'`);
          }
          if (zones.size >= 16) zones.clear();
          zones.set(z, zone);
        }
        return dateField(field, ms + zone.offsetMs(ms));
      },
      pure,
    };
  };
}

export const secondOp = build('second');
export const minuteOp = build('minute');
export const hourOp = build('hour');
export const dayOp = build('day');
export const monthOp = build('month');
export const yearOp = build('year');
export const weekdayOp = build('weekday');
