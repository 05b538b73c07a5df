import { quote, ServeError } from './status.js';

// TensorFlow Serving's JSON tensor encoding for :predict (https://www.tensorflow.org/tfx/serving/api_rest):
//
//   row      {"signature_name": s?, "instances": [example, ...]}  -> {"predictions": [output, ...]}
//            an example is the input's value (one input) or {"<input>": value} (named inputs)
//   columnar {"signature_name": s?, "inputs": batch}              -> {"outputs": batch}
//            batch is the whole input with its first (batch) dimension, or {"<input>": batch}
//
// With one output the response omits its name; with several, rows become objects keyed by output
// name (row) or the response is an object of batches (columnar). Values are checked against the
// signature here, before a tensor exists, so a bad request costs no model time and its 400 names
// what was expected and what was sent.

export type DType = 'float32';

export interface TensorInfo {
  /** The key in the signature ("input", "probabilities"): what JSON requests and replies use. */
  key: string;
  /** The graph tensor ("input:0"), for metadata. */
  tensorName: string;
  dtype: DType;
  /** -1 marks a dimension of any size; the first is the batch. */
  shape: number[];
}

export interface ServingSignature {
  name: string;
  methodName: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
}

export type RequestFormat = 'row' | 'columnar';

export interface PredictInput {
  format: RequestFormat;
  signatureName: string;
  /** Number of examples (the batch dimension). */
  rows: number;
  /** Shape of one example (the input's shape without the batch dimension). */
  exampleShape: number[];
  /** rows x exampleShape values, row-major. */
  values: Float32Array;
}

export interface OutputTensor {
  key: string;
  /** Full shape, batch first. */
  shape: number[];
  values: Float32Array;
}

const FLOAT32_MAX = 3.4028234663852886e38;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isBase64 = (v: unknown) => isObject(v) && Object.keys(v).length === 1 && typeof v.b64 === 'string';

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (isBase64(v)) return 'a binary {"b64": ...} value';
  if (isObject(v)) return 'an object';
  if (typeof v === 'string') return `the string ${quote(v, 20)}`;
  return `${typeof v} ${String(v)}`;
}

export const shapeText = (shape: readonly number[]) => `[${shape.join(',')}]`;

/** The body as TF Serving reads it: one JSON object, whatever the Content-Type says (curl -d sends form encoding). */
export function parseRequestJson(body: Buffer | undefined): Record<string, Json> {
  const text = body?.toString('utf8') ?? '';
  if (!text.trim()) throw new ServeError('INVALID_ARGUMENT', 'JSON Parse error: The document is empty; send {"instances": [...]} or {"inputs": ...}');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ServeError('INVALID_ARGUMENT', `JSON Parse error: ${(err as Error).message}`);
  }
  if (!isObject(doc)) {
    throw new ServeError('INVALID_ARGUMENT', `the request body must be a JSON object like {"instances": [...]}; got ${describe(doc)}`);
  }
  return doc;
}

/** "" when absent (the default signature), as in TF Serving's model_spec. */
export function requestedSignature(doc: Record<string, Json>): string {
  const s = doc.signature_name;
  if (s === undefined) return '';
  if (typeof s !== 'string') {
    throw new ServeError('INVALID_ARGUMENT', `'signature_name' key must be a string value; got ${describe(s)}`);
  }
  return s;
}

/**
 * Reads the examples of a :predict request for a signature with one float32 input, checking
 * every value's type and the shape against the signature. `where` names the model version
 * (for messages).
 */
export function parsePredictInputs(doc: Record<string, Json>, signature: ServingSignature, where: string): PredictInput {
  const signatureName = requestedSignature(doc);
  const input = signature.inputs[0];
  const hasInstances = doc.instances !== undefined;
  const hasInputs = doc.inputs !== undefined;
  if (hasInstances && hasInputs) {
    throw new ServeError('INVALID_ARGUMENT', "the request has both 'instances' (row format) and 'inputs' (columnar format): send only one");
  }
  if (!hasInstances && !hasInputs) {
    throw new ServeError(
      'INVALID_ARGUMENT',
      `Missing 'inputs' or 'instances' key: send {"instances": [<example>, ...]} or {"inputs": <batch>} ` +
        `(input "${input.key}" of ${where} is ${input.dtype} ${shapeText(input.shape)})`,
    );
  }
  const expectedExample = input.shape.slice(1);
  const typeNote = `(input "${input.key}" of ${where} is ${input.dtype} ${shapeText(input.shape)}, -1: any size)`;

  if (hasInstances) {
    const instances = doc.instances;
    if (!Array.isArray(instances)) {
      throw new ServeError('INVALID_ARGUMENT', `'instances' must be a list with one entry per example; got ${describe(instances)}`);
    }
    if (instances.length === 0) throw new ServeError('INVALID_ARGUMENT', "No values in 'instances' list: send at least one example");
    const named = isObject(instances[0]) && !isBase64(instances[0]);
    let exampleShape: number[] = [];
    let values = new Float32Array(0);
    let per = 0;
    instances.forEach((element, i) => {
      let value: Json;
      if (named) {
        if (!isObject(element) || isBase64(element)) {
          throw new ServeError('INVALID_ARGUMENT', `'instances' element ${i} is ${describe(element)} but element 0 is an object: use one form for every example`);
        }
        const keys = Object.keys(element);
        if (keys.length !== 1 || keys[0] !== input.key) {
          throw new ServeError(
            'INVALID_ARGUMENT',
            `'instances' element ${i} has keys [${keys.map((k) => quote(k, 40)).join(', ')}]; ${where} has one named input: "${input.key}"`,
          );
        }
        value = element[input.key];
      } else {
        if (isObject(element) && !isBase64(element)) {
          throw new ServeError('INVALID_ARGUMENT', `'instances' element ${i} is an object but element 0 is not: use one form for every example`);
        }
        value = element;
      }
      const shape = denseShape(value);
      if (i === 0) {
        if (!Array.isArray(value) && expectedExample.length > 0) {
          const b64 = isBase64(value) ? ' (binary {"b64": ...} values are for string inputs)' : '';
          throw new ServeError(
            'INVALID_ARGUMENT',
            `'instances' element 0 is ${describe(value)} but each example must be a nested list of shape ${shapeText(expectedExample)} ${typeNote}${b64}`,
          );
        }
        if (!shapeMatches(shape, expectedExample)) {
          const hint = shape.length === expectedExample.length + 1 ? '; in "instances" each entry is one example, without the batch dimension' : '';
          throw new ServeError(
            'INVALID_ARGUMENT',
            `'instances' element 0 has shape ${shapeText(shape)} but each example must have shape ${shapeText(expectedExample)} ${typeNote}${hint}`,
          );
        }
        exampleShape = shape;
        per = shape.reduce((a, b) => a * b, 1);
        values = new Float32Array(per * instances.length);
      } else if (!sameShape(shape, exampleShape)) {
        throw new ServeError(
          'INVALID_ARGUMENT',
          `'instances' element ${i} has shape ${shapeText(shape)} but element 0 has shape ${shapeText(exampleShape)}: every example must have the same shape`,
        );
      }
      fill(value, exampleShape, values, i * per, `'instances' element ${i}`, typeNote);
    });
    return { format: 'row', signatureName, rows: instances.length, exampleShape, values };
  }

  let batch = doc.inputs;
  if (isObject(batch) && !isBase64(batch)) {
    const keys = Object.keys(batch);
    if (!keys.includes(input.key)) {
      throw new ServeError('INVALID_ARGUMENT', `Missing named input: "${input.key}" in 'inputs' object (it has ${keys.map((k) => quote(k, 40)).join(', ') || 'no keys'})`);
    }
    const extra = keys.filter((k) => k !== input.key);
    if (extra.length) {
      throw new ServeError('INVALID_ARGUMENT', `'inputs' has unknown input ${quote(extra[0], 40)}; ${where} has one input: "${input.key}"`);
    }
    batch = batch[input.key];
  }
  const shape = denseShape(batch);
  if (!shapeMatches(shape, input.shape)) {
    const hint =
      shape.length === input.shape.length - 1 && shapeMatches(shape, expectedExample)
        ? '; "inputs" takes the whole batch: wrap a single example in a list'
        : '';
    throw new ServeError('INVALID_ARGUMENT', `'inputs' has shape ${shapeText(shape)} but the input must have shape ${shapeText(input.shape)} ${typeNote}${hint}`);
  }
  if (shape[0] === 0) throw new ServeError('INVALID_ARGUMENT', "'inputs' holds no examples (its first dimension is 0)");
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(batch, shape, values, 0, "'inputs'", typeNote);
  return { format: 'columnar', signatureName, rows: shape[0], exampleShape: shape.slice(1), values };
}

/** The shape a nested list has if it is rectangular (following first elements, as TF Serving does). */
function denseShape(v: Json): number[] {
  const shape: number[] = [];
  let cur: Json = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0];
  }
  return shape;
}

const shapeMatches = (got: number[], want: number[]) => got.length === want.length && got.every((d, i) => want[i] === -1 || want[i] === d);
const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Copies a nested list of numbers into `out` at `offset`, checking it is rectangular and numeric. */
function fill(v: Json, shape: number[], out: Float32Array, offset: number, what: string, typeNote: string): void {
  const path: number[] = [];
  let pos = offset;
  const at = () => (path.length ? ` at ${path.map((i) => `[${i}]`).join('')}` : '');
  const walk = (x: Json, level: number): void => {
    if (level === shape.length) {
      if (typeof x !== 'number') {
        const b64 = isBase64(x) ? ' (binary {"b64": ...} values are for string inputs)' : '';
        throw new ServeError('INVALID_ARGUMENT', `${what}: the value${at()} is ${describe(x)}, not a number ${typeNote}${b64}`);
      }
      if (Math.abs(x) > FLOAT32_MAX) {
        throw new ServeError('INVALID_ARGUMENT', `${what}: cannot convert ${x}${at()} to float32 without loss of precision (outside float32's range)`);
      }
      out[pos++] = x;
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[level]) {
      throw new ServeError(
        'INVALID_ARGUMENT',
        `${what}: expected a list of ${shape[level]}${at()} (lists must be rectangular, shape ${shapeText(shape)}) but found ${describe(x)}`,
      );
    }
    for (let i = 0; i < x.length; i++) {
      path.push(i);
      walk(x[i], level + 1);
      path.pop();
    }
  };
  walk(v, 0);
}

/**
 * A float32 as the shortest decimal that reads back as the same float32, with ".0" on whole
 * numbers (TF Serving writes "1.0", not "1", so clients infer a float type). JSON has no NaN or
 * infinity: those become null.
 */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v)) return 'null';
  let text = String(v);
  for (let digits = 1; digits <= 9; digits++) {
    const d = Number(v.toPrecision(digits));
    if (Math.fround(d) === v) {
      text = String(d);
      break;
    }
  }
  return /[.e]/.test(text) ? text : `${text}.0`;
}

function writeNested(values: Float32Array, shape: number[], offset: number, level: number, parts: string[]): void {
  if (level === shape.length) {
    parts.push(formatFloat32(values[offset]));
    return;
  }
  const stride = shape.slice(level + 1).reduce((a, b) => a * b, 1);
  parts.push('[');
  for (let i = 0; i < shape[level]; i++) {
    if (i) parts.push(',');
    writeNested(values, shape, offset + i * stride, level + 1, parts);
  }
  parts.push(']');
}

/** The outputs of one request as the JSON reply TF Serving sends for `format`. */
export function formatPredictResponse(format: RequestFormat, outputs: OutputTensor[]): string {
  const parts: string[] = [format === 'row' ? '{"predictions":' : '{"outputs":'];
  if (outputs.length === 1) {
    writeNested(outputs[0].values, outputs[0].shape, 0, 0, parts);
  } else if (format === 'columnar') {
    parts.push('{');
    outputs.forEach((o, i) => {
      parts.push(`${i ? ',' : ''}${JSON.stringify(o.key)}:`);
      writeNested(o.values, o.shape, 0, 0, parts);
    });
    parts.push('}');
  } else {
    const rows = outputs[0].shape[0];
    parts.push('[');
    for (let r = 0; r < rows; r++) {
      parts.push(r ? ',{' : '{');
      outputs.forEach((o, i) => {
        const example = o.shape.slice(1);
        const per = example.reduce((a, b) => a * b, 1);
        parts.push(`${i ? ',' : ''}${JSON.stringify(o.key)}:`);
        writeNested(o.values, example, r * per, 0, parts);
      });
      parts.push('}');
    }
    parts.push(']');
  }
  parts.push('}');
  return parts.join('');
}
