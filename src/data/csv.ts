import { Readable } from 'node:stream';
import { CsvError, parse, type InfoRecord } from 'csv-parse';
import { didYouMean } from '../util/suggest.js';
import { InputError } from '../errors.js';
import { decodeTextFile, quoteShort } from '../util/text.js';
import type { CsvDataSpec, MissingPolicy } from './types.js';

// Parses a CSV into a dense feature matrix and encoded labels. Rows are numbered as a person
// counts lines in the file (1-based, skipped rows and the header included), since that is what an
// editor shows when the user goes to fix the row.

export interface CsvTable {
  /** Every column's name: the header, or "0", "1", ... without one. */
  columns: string[];
  labelColumn: string;
  featureColumns: string[];
  /** count * featureColumns.length raw values, missing ones already filled per the policy. */
  x: Float32Array;
  y: Int32Array;
  count: number;
  classes: string[];
  /** Rows left out by `missing: drop`. */
  dropped: number;
}

/** Values that mean "no value" in common exports (pandas, R, UCI). Compared case-insensitively. */
const MISSING_TOKENS = new Set(['', 'na', 'nan', '?']);
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INTEGER = /^(?:0|[1-9]\d*)$/;
const MISSING_FIX = 'set missing: drop (leave such rows out), mean (fill with the column mean) or zero';

export function isMissing(text: string): boolean {
  return text.length <= 3 && MISSING_TOKENS.has(text.toLowerCase());
}

interface ParsedRecord {
  record: string[];
  line: number;
}

/**
 * Longest row, in bytes and (within quotes, across lines) in characters. A real row of even 100,000
 * features is under 1 MB; past this the file is not CSV, or an unclosed quote has swallowed the
 * rest of it, and the parser would hold all of it as one field before saying so.
 */
export const MAX_ROW_BYTES = 4 * 1024 * 1024;

/** `data` is the decompressed file; `file` names it in messages. */
export async function parseCsv(raw: Buffer, file: string, spec: CsvDataSpec, dataset: string): Promise<CsvTable> {
  const header = spec.header ?? true;
  const skipRows = spec.skipRows ?? 0;
  const delimiter = spec.delimiter ?? ',';
  const policy: MissingPolicy = spec.missing ?? 'error';
  checkOptions(spec, dataset);
  const data = decodeCsv(raw, file);

  if (isBlank(data)) {
    throw new InputError(`${file}: the file is empty; expected ${header ? 'a header row and ' : ''}rows of comma-separated values.`);
  }

  let columns: string[] | undefined;
  let labelIndex = -1;
  let featureIndices: number[] = [];
  let headerLine = 0;
  let featureCount = 0;
  let x = new Float32Array(0);
  let lines = new Int32Array(0);
  const labelIds: number[] = [];
  const labelValues: string[] = [];
  const labelIdOf = new Map<string, number>();
  let count = 0;
  let dropped = 0;
  let dataRows = 0;
  let missingSeen = false;

  for await (const { record, line } of records(data, file, skipRows, delimiter)) {
    if (!columns) {
      columns = header ? record : record.map((_, i) => String(i));
      headerLine = line;
      ({ labelIndex, featureIndices } = resolveColumns(columns, spec, header, file, dataset));
      featureCount = featureIndices.length;
      // Start small for wide rows: the first row alone must not reserve what 1,024 of them would take.
      const rows = Math.max(1, Math.min(1024, Math.floor((1 << 20) / featureCount)));
      x = new Float32Array(rows * featureCount);
      lines = new Int32Array(rows);
      if (header) continue;
    }
    dataRows++;
    if (record.length !== columns.length) {
      const like = header ? `like the header on row ${headerLine}` : `like the first row, row ${headerLine}`;
      throw new InputError(
        `${file}: row ${line} has ${record.length} field${record.length === 1 ? '' : 's'}, expected ${columns.length} (${like}). ` +
          `Fix the row: a value is missing or extra, or a value holds an unquoted "${delimiter}"` +
          (delimiter === ',' ? '; if the file uses another separator, set delimiter (e.g. ";").' : '.'),
      );
    }
    if (count === lines.length) {
      const grownX = new Float32Array(x.length * 2);
      grownX.set(x);
      x = grownX;
      const grownLines = new Int32Array(lines.length * 2);
      grownLines.set(lines);
      lines = grownLines;
    }

    let drop = false;
    const base = count * featureCount;
    for (let j = 0; j < featureCount; j++) {
      const column = featureIndices[j];
      const text = record[column];
      if (isMissing(text)) {
        if (policy === 'error') {
          throw new InputError(
            `${file}: row ${line}, column ${quoteShort(columns[column])}: expected a number, found a missing value (${JSON.stringify(text)}). ` +
              `Fill it in, or ${MISSING_FIX} in data set "${dataset}".`,
          );
        }
        drop ||= policy === 'drop';
        missingSeen = true;
        x[base + j] = policy === 'zero' ? 0 : NaN;
        continue;
      }
      x[base + j] = parseNumber(text, file, line, columns[column]);
    }
    const labelText = record[labelIndex];
    if (isMissing(labelText)) {
      if (policy !== 'drop') {
        throw new InputError(
          `${file}: row ${line}, column ${quoteShort(columns[labelIndex])} (the label): expected a class label, found a missing value ` +
            `(${JSON.stringify(labelText)}). Fill it in, or set missing: drop in data set "${dataset}" to leave such rows out ` +
            `(mean and zero fill only feature columns).`,
        );
      }
      drop = true;
    }
    if (drop) {
      dropped++;
      continue;
    }
    let id = labelIdOf.get(labelText);
    if (id === undefined) {
      id = labelValues.length;
      labelIdOf.set(labelText, id);
      labelValues.push(labelText);
    }
    labelIds.push(id);
    lines[count] = line;
    count++;
  }

  if (!columns) {
    throw new InputError(
      skipRows > 0
        ? `${file}: no rows left after skipping ${skipRows} (skipRows); expected ${header ? 'a header and ' : ''}data rows. Lower skipRows.`
        : `${file}: the file is empty; expected ${header ? 'a header row and ' : ''}rows of values.`,
    );
  }
  if (dataRows === 0) {
    throw new InputError(`${file}: the header on row ${headerLine} is followed by no data rows; expected at least one row of values.`);
  }
  if (count === 0) {
    throw new InputError(
      `${file}: all ${dataRows} data rows have missing values and missing: drop left none; fix the file or use missing: mean or zero.`,
    );
  }

  x = x.slice(0, count * featureCount);
  if (missingSeen && policy === 'mean') fillWithMeans(x, featureCount, featureIndices.map((c) => columns[c]), file);

  const { classes, codeOf } = encodeLabels(labelValues, spec.classes, file, columns[labelIndex], dataset, (value) => {
    const id = labelIdOf.get(value);
    const at = labelIds.indexOf(id ?? -1);
    return lines[at];
  });
  const y = new Int32Array(count);
  for (let i = 0; i < count; i++) y[i] = codeOf[labelIds[i]];

  return {
    columns,
    labelColumn: columns[labelIndex],
    featureColumns: featureIndices.map((c) => columns[c]),
    x,
    y,
    count,
    classes,
    dropped,
  };
}

/** UTF-8 text (UTF-16 with a byte-order mark converted) with no row over MAX_ROW_BYTES, or an error at the line. */
function decodeCsv(raw: Buffer, file: string): Buffer {
  const decoded = decodeTextFile(raw);
  if ('problem' in decoded) {
    const { line, col, message } = decoded.problem;
    throw new InputError(`${file}: row ${line}, byte ${col}: not CSV text: ${message}.`);
  }
  const data = decoded.text;
  if (data.length <= MAX_ROW_BYTES) return data;
  let line = 1;
  let rowStart = 0;
  for (let i = 0; i <= data.length; i++) {
    const byte = i < data.length ? data[i] : 0x0a;
    if (byte !== 0x0a && byte !== 0x0d) continue;
    if (i - rowStart > MAX_ROW_BYTES) {
      throw new InputError(
        `${file}: row ${line} is over ${MAX_ROW_BYTES.toLocaleString('en-US')} bytes long (the limit for one row): ` +
          'this is not a CSV file, or not the one meant; check the path.',
      );
    }
    if (byte === 0x0a) line++;
    rowStart = i + 1;
  }
  return data;
}

function checkOptions(spec: CsvDataSpec, dataset: string): void {
  const skipRows = spec.skipRows ?? 0;
  if (!Number.isInteger(skipRows) || skipRows < 0) {
    throw new InputError(`data set "${dataset}": skipRows is ${JSON.stringify(spec.skipRows)}; expected a whole number >= 0.`);
  }
  if (spec.delimiter !== undefined && (typeof spec.delimiter !== 'string' || spec.delimiter.length === 0)) {
    throw new InputError(`data set "${dataset}": delimiter is ${JSON.stringify(spec.delimiter)}; expected a character such as "," or ";".`);
  }
  const policies: MissingPolicy[] = ['error', 'drop', 'mean', 'zero'];
  if (spec.missing !== undefined && !policies.includes(spec.missing)) {
    throw new InputError(`data set "${dataset}": missing is ${JSON.stringify(spec.missing)}; expected one of ${policies.join(', ')}.`);
  }
}

/** Streams records out of the parser so a large file never exists as one array of string arrays. */
async function* records(data: Buffer, file: string, skipRows: number, delimiter: string): AsyncGenerator<ParsedRecord> {
  const parser = parse({
    bom: true,
    delimiter,
    from_line: skipRows + 1,
    info: true,
    max_record_size: MAX_ROW_BYTES,
    relax_column_count: true,
    skip_empty_lines: true,
    trim: true,
  });
  Readable.from(chunks(data, 1 << 20)).pipe(parser);
  try {
    for await (const item of parser) {
      const { info, record } = item as { info: InfoRecord; record: string[] };
      yield { record, line: info.lines };
    }
  } catch (err) {
    if (err instanceof CsvError) {
      const line = typeof err.lines === 'number' ? `row ${err.lines}: ` : '';
      if (err.code === 'CSV_MAX_RECORD_SIZE') {
        throw new InputError(
          `${file}: ${line}a record runs past ${MAX_ROW_BYTES.toLocaleString('en-US')} characters: a quote opened on or before ` +
            'that row is never closed, so the rest of the file reads as one value; close the quote.',
          { cause: err },
        );
      }
      throw new InputError(`${file}: ${line}could not read the CSV: ${err.message}. Check the quotes on that row.`, { cause: err });
    }
    throw err;
  }
}

/** Stops at the first printable byte, so it costs nothing on a real file. */
function isBlank(data: Buffer): boolean {
  for (const byte of data) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) return false;
  return true;
}

function* chunks(data: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

function parseNumber(text: string, file: string, line: number, column: string): number {
  const v = NUMBER.test(text) ? Number(text) : NaN;
  if (Number.isFinite(Math.fround(v))) return v;
  const why = Number.isNaN(v) ? `found the text ${quoteShort(text)}` : `found ${text.length > 40 ? quoteShort(text) : text}, beyond the float32 range`;
  throw new InputError(
    `${file}: row ${line}, column ${quoteShort(column)}: expected a number, ${why}. ` +
      `Fix the value, or leave the column out of the features (list the wanted columns in features).`,
  );
}

function fillWithMeans(x: Float32Array, featureCount: number, names: string[], file: string): void {
  const count = x.length / featureCount;
  const sum = new Float64Array(featureCount);
  const seen = new Int32Array(featureCount);
  for (let k = 0; k < x.length; k++) {
    const v = x[k];
    if (!Number.isNaN(v)) {
      sum[k % featureCount] += v;
      seen[k % featureCount]++;
    }
  }
  for (let f = 0; f < featureCount; f++) {
    if (seen[f] === 0) {
      throw new InputError(
        `${file}: column ${quoteShort(names[f])} has no values at all, so missing: mean has no mean to fill with; ` +
          `leave the column out of features or use missing: zero.`,
      );
    }
  }
  for (let i = 0; i < count; i++) {
    for (let f = 0; f < featureCount; f++) {
      const k = i * featureCount + f;
      if (Number.isNaN(x[k])) x[k] = sum[f] / seen[f];
    }
  }
}

function resolveColumns(
  columns: string[],
  spec: CsvDataSpec,
  header: boolean,
  file: string,
  dataset: string,
): { labelIndex: number; featureIndices: number[] } {
  if (spec.label === undefined || spec.label === null) {
    throw new InputError(`data set "${dataset}": label is not set; name the label column (by name or 0-based index) with label.`);
  }
  const labelIndex = findColumn(spec.label, columns, header, file, 'label column');
  let featureIndices: number[];
  if (spec.features === undefined) {
    featureIndices = columns.map((_, i) => i).filter((i) => i !== labelIndex);
  } else {
    if (!Array.isArray(spec.features) || spec.features.length === 0) {
      throw new InputError(`data set "${dataset}": features is ${JSON.stringify(spec.features)}; expected a non-empty list of columns, or leave it out to use every column but the label.`);
    }
    featureIndices = spec.features.map((f) => findColumn(f, columns, header, file, 'feature column'));
    const seen = new Set<number>();
    for (const [k, i] of featureIndices.entries()) {
      if (i === labelIndex) {
        throw new InputError(
          `data set "${dataset}": features lists ${JSON.stringify(spec.features[k])}, which is the label column ${quoteShort(columns[i])}; ` +
            `remove it from features (a model given its own label learns nothing).`,
        );
      }
      if (seen.has(i)) throw new InputError(`data set "${dataset}": features lists column ${quoteShort(columns[i])} twice; list each column once.`);
      seen.add(i);
    }
  }
  if (featureIndices.length === 0) {
    throw new InputError(`${file}: the label column ${quoteShort(columns[labelIndex])} is the only column; expected feature columns besides it.`);
  }
  return { labelIndex, featureIndices };
}

function findColumn(ref: string | number, columns: string[], header: boolean, file: string, what: string): number {
  const range = `${columns.length} columns (0..${columns.length - 1})`;
  if (typeof ref === 'number') {
    if (Number.isInteger(ref) && ref >= 0 && ref < columns.length) return ref;
    throw new InputError(`${file}: ${what} index ${ref} is out of range: the file has ${range}; indices are 0-based.`);
  }
  const exact = columns.indexOf(ref);
  if (exact >= 0) {
    if (columns.indexOf(ref, exact + 1) >= 0) {
      throw new InputError(`${file}: ${what} "${ref}" is ambiguous: the header has it more than once; refer to it by 0-based index instead.`);
    }
    return exact;
  }
  const available = header
    ? `Available columns: ${listNames(columns)}.`
    : `Without a header (header: false) columns are named by 0-based index: the file has ${range}.`;
  throw new InputError(`${file}: ${what} "${ref}" not found.${suggestColumn(ref, columns)} ${available}`);
}

function listNames(columns: string[]): string {
  const shown = columns.slice(0, 30).map((c) => quoteShort(c));
  return columns.length > 30 ? `${shown.join(', ')}, ... (${columns.length} in all)` : shown.join(', ');
}

function suggestColumn(name: string, candidates: string[]): string {
  const guess = didYouMean(name, candidates);
  return guess === undefined ? '' : ` Did you mean ${quoteShort(guess)}?`;
}

/**
 * Label values to class indices. With `classes` given, a value is matched by name; sklearn's
 * files hold integers 0..k-1 instead of names, so when no class name is itself an integer and
 * every value is one in range, value i is class i. Without `classes`, the distinct values sorted
 * (numerically where all are numbers, so "10" follows "9") are the classes.
 */
function encodeLabels(
  values: string[],
  given: string[] | undefined,
  file: string,
  column: string,
  dataset: string,
  firstRow: (value: string) => number,
): { classes: string[]; codeOf: Int32Array } {
  const codeOf = new Int32Array(values.length);
  if (given === undefined) {
    const numeric = values.every((v) => NUMBER.test(v));
    const sorted = [...values].sort((a, b) => (numeric ? Number(a) - Number(b) : 0) || (a < b ? -1 : a > b ? 1 : 0));
    const index = new Map(sorted.map((v, i) => [v, i]));
    values.forEach((v, i) => (codeOf[i] = index.get(v) ?? -1));
    return { classes: sorted, codeOf };
  }
  if (!Array.isArray(given) || given.length === 0 || given.some((c) => typeof c !== 'string')) {
    throw new InputError(`data set "${dataset}": classes is ${JSON.stringify(given)}; expected a non-empty list of label names.`);
  }
  if (new Set(given).size !== given.length) {
    throw new InputError(`data set "${dataset}": classes ${JSON.stringify(given)} names a class twice; list each class once.`);
  }
  const byName = new Map(given.map((c, i) => [c, i]));
  const byIndex =
    !given.some((c) => INTEGER.test(c)) && values.every((v) => INTEGER.test(v) && Number(v) < given.length);
  for (const [i, v] of values.entries()) {
    const code = byIndex ? Number(v) : byName.get(v);
    if (code === undefined) {
      const hint = values.some((w) => INTEGER.test(w))
        ? ` (integer labels are read as class indices only when all are in 0..${given.length - 1})`
        : '';
      throw new InputError(
        `${file}: row ${firstRow(v)}, column ${quoteShort(column)}: expected a label in classes ${JSON.stringify(given)}, ` +
          `found ${quoteShort(v)}${hint}. Add it to classes in data set "${dataset}", or fix the row.`,
      );
    }
    codeOf[i] = code;
  }
  return { classes: [...given], codeOf };
}
