import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ServeError } from '../../src/serve/status.js';
import { formatFloat32, formatPredictResponse, parsePredictInputs, parseRequestJson, type ServingSignature } from '../../src/serve/tensor-json.js';

// TF Serving's JSON tensor encoding without a model: what a request may look like, what the
// reply looks like, and float32 values written so they read back exactly.

const signature: ServingSignature = {
  name: 'serving_default',
  methodName: 'tensorflow/serving/predict',
  inputs: [{ key: 'x', tensorName: 'x:0', dtype: 'float32', shape: [-1, 2] }],
  outputs: [{ key: 'y', tensorName: 'y:0', dtype: 'float32', shape: [-1, 1] }],
};
const parse = (body: unknown) => parsePredictInputs(parseRequestJson(Buffer.from(JSON.stringify(body))), signature, 'model "m" version 1');

test('float32 values are written as the shortest decimal that reads back as the same float32, whole numbers with ".0"', () => {
  for (const v of [0.1, 1 / 3, 2.5, 1e-7, 3.4028234663852886e38, -0.000123456, 123456789, 0.2 + 0.1]) {
    const f = Math.fround(v);
    const text = formatFloat32(f);
    assert.is(Math.fround(Number(text)), f, `${v} -> ${text}`);
    assert.ok(text.length <= 16, `${text} is short`);
  }
  assert.is(formatFloat32(Math.fround(0.1)), '0.1');
  assert.is(formatFloat32(1), '1.0');
  assert.is(formatFloat32(-0), '0.0');
  assert.is(formatFloat32(NaN), 'null');
  assert.is(formatFloat32(Infinity), 'null');
});

test('row, named-row and columnar requests read the same values; replies follow the request format', () => {
  const a = parse({ instances: [[1, 2], [3, 4]] });
  const b = parse({ instances: [{ x: [1, 2] }, { x: [3, 4] }] });
  const c = parse({ inputs: [[1, 2], [3, 4]], signature_name: 'serving_default' });
  const d = parse({ inputs: { x: [[1, 2], [3, 4]] } });
  for (const p of [a, b, c, d]) {
    assert.equal([...p.values], [1, 2, 3, 4]);
    assert.is(p.rows, 2);
    assert.equal(p.exampleShape, [2]);
  }
  assert.equal([a.format, c.format, c.signatureName], ['row', 'columnar', 'serving_default']);
  const out = [{ key: 'y', shape: [2, 1], values: Float32Array.from([0.5, 2]) }];
  assert.is(formatPredictResponse('row', out), '{"predictions":[[0.5],[2.0]]}');
  assert.is(formatPredictResponse('columnar', out), '{"outputs":[[0.5],[2.0]]}');
  const two = [...out, { key: 'z', shape: [2], values: Float32Array.from([7, 8]) }];
  assert.equal(JSON.parse(formatPredictResponse('row', two)), { predictions: [{ y: [0.5], z: 7 }, { y: [2], z: 8 }] });
  assert.equal(JSON.parse(formatPredictResponse('columnar', two)), { outputs: { y: [[0.5], [2]], z: [7, 8] } });
});

test('every malformed request is INVALID_ARGUMENT with the expected shape and what was sent', () => {
  const cases: [unknown, string][] = [
    [{ instances: [[1, 2, 3]] }, "'instances' element 0 has shape [3] but each example must have shape [2] (input \"x\" of model \"m\" version 1 is float32 [-1,2]"],
    [{ instances: [[1, 2], [3]] }, "'instances' element 1 has shape [1] but element 0 has shape [2]"],
    [{ instances: [[1, null]] }, "'instances' element 0: the value at [1] is null, not a number"],
    [{ instances: [[1, [2]]] }, "'instances' element 0: the value at [1] is a list of 1, not a number"],
    [{ instances: [{ x: [1, 2] }, [3, 4]] }, "'instances' element 1 is a list of 2 but element 0 is an object"],
    [{ instances: [{ x: [1, 2], y: [1] }] }, "'instances' element 0 has keys [\"x\", \"y\"]; model \"m\" version 1 has one named input: \"x\""],
    [{ inputs: [1, 2] }, "'inputs' has shape [2] but the input must have shape [-1,2]"],
    [{ inputs: [] }, "'inputs' has shape [0] but the input must have shape [-1,2]"],
    [{ inputs: [[1, 2], [3, 'a']] }, "'inputs': the value at [1][1] is the string \"a\", not a number"],
    [{ inputs: { y: [[1, 2]] } }, 'Missing named input: "x" in \'inputs\' object (it has "y")'],
    [{ inputs: { x: [[1, 2]], extra: 1 } }, "'inputs' has unknown input \"extra\"; model \"m\" version 1 has one input: \"x\""],
  ];
  for (const [body, message] of cases) {
    let err: unknown;
    try {
      parse(body);
    } catch (e) {
      err = e;
    }
    assert.instance(err, ServeError, JSON.stringify(body));
    assert.is((err as ServeError).httpStatus, 400);
    assert.ok((err as Error).message.includes(message), `${JSON.stringify(body)}:\n  ${(err as Error).message}\n  should contain ${message}`);
  }
});

test.run();
