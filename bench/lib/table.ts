/** Plain-text aligned tables for benchmark output. */

/** One column: header text, how to align it, and how to turn a row's cell into text. */
export interface Column<Row> {
  header: string;
  /** Default: right for numbers, left otherwise. */
  align?: 'left' | 'right';
  /** Cell text; default `String(row[key])` when `key` is given. */
  format?: (row: Row) => string;
  key?: keyof Row;
}

function cellText<Row>(col: Column<Row>, row: Row): { text: string; numeric: boolean } {
  if (col.format) return { text: col.format(row), numeric: false };
  if (col.key === undefined) return { text: '', numeric: false };
  const v = row[col.key];
  return {
    text: v === undefined || v === null ? '' : String(v),
    numeric: typeof v === 'number' || typeof v === 'bigint',
  };
}

/** Renders rows under the given columns, padded so that columns line up. */
export function formatTable<Row>(columns: ReadonlyArray<Column<Row>>, rows: readonly Row[]): string {
  const cells = rows.map((row) => columns.map((c) => cellText(c, row)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.text.length)));
  const looksNumeric = (c: { text: string; numeric: boolean }): boolean =>
    c.numeric ||
    c.text === '' ||
    c.text === 'n/a' ||
    /^[-+<>≥≤~]?\s*[\d.,]+\s*(%|x|×|ms|MB|MB\/s)?$/.test(c.text);
  const right = columns.map(
    (c, i) =>
      (c.align ?? (cells.length > 0 && cells.every((r) => looksNumeric(r[i]!)) ? 'right' : 'left')) ===
      'right',
  );
  const pad = (text: string, i: number): string =>
    right[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!);
  const lines = [
    columns.map((c, i) => pad(c.header, i)).join('  '),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...cells.map((r) => r.map((c, i) => pad(c.text, i)).join('  ')),
  ];
  return lines.map((l) => l.trimEnd()).join('\n');
}

/** Prints {@link formatTable} to stdout. */
export function printTable<Row>(columns: ReadonlyArray<Column<Row>>, rows: readonly Row[]): void {
  console.log(formatTable(columns, rows));
}

/** One benchmark target: what it asks, what was measured, and `met` / `MISSED` / `n/a`. */
export interface TargetRow {
  target: string;
  measured: string;
  ok: string;
}

/** Prints the targets of a benchmark as a table under a blank line. */
export function printTargets(targets: readonly TargetRow[]): void {
  console.log();
  printTable(
    [
      { header: 'target', key: 'target', align: 'left' },
      { header: 'measured', key: 'measured', align: 'left' },
      { header: 'verdict', key: 'ok', align: 'left' },
    ],
    targets,
  );
}
