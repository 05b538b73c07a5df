import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { magnitudeMask } from '../../src/compress/pruning.js';
import {
  affineRange,
  chooseEncodings,
  float32ToFloat16Bits,
  quantizeAffine,
  quantizingEncoder,
  roundHalfEven,
  sizesOf,
  type QuantizationDtype,
} from '../../src/compress/quantization.js';
import { InputError } from '../../src/errors.js';
import { loadLayersModelFrom, saveLayersModel } from '../../src/models/io.js';
import { removeTempDirs, serveFolder as serve, tempDir } from '../helpers.js';

test.after(removeTempDirs);

test("np.round's half-to-even rounding", () => {
  assert.equal([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, 3].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3, 3]);
});

test("the converter's own example: [0, -0.1, 1.2] -> [20, 0, 255], min -0.10196078817, scale 0.00509803940852", () => {
  const { entry, data } = quantizeAffine(Float32Array.from([0, -0.1, 1.2]), 'uint8');
  assert.equal(Array.from(data), [20, 0, 255]);
  assert.ok(Math.abs(entry.min! - -0.10196078817) < 1e-10, `min ${entry.min}`);
  assert.ok(Math.abs(entry.scale! - 0.00509803940852) < 1e-13, `scale ${entry.scale}`);
  assert.is(20 * entry.scale! + entry.min!, 0, 'zero is exact in the dequantization formula');
  // Ranges without 0 are not nudged; one value gets scale 1.
  assert.equal(affineRange(1, 2, 'uint8'), { scale: 1 / 255, min: 1, max: 2 });
  assert.equal(quantizeAffine(Float32Array.from([0.25, 0.25]), 'uint16').entry, { dtype: 'uint16', min: 0.25, scale: 1, original_dtype: 'float32' });
});

/** A dense net with a pruned (80% zeros) kernel, a constant kernel and a bias vector. */
function prunedNet(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.dense({ name: 'hidden', inputShape: [40], units: 64, activation: 'relu', biasInitializer: 'randomNormal' }));
  model.add(tf.layers.dense({ name: 'flat', units: 16, kernelInitializer: 'ones' }));
  model.add(tf.layers.dense({ name: 'out', units: 5 }));
  const [kernel, bias] = model.layers[0].getWeights();
  const mask = tf.tensor(magnitudeMask(kernel.dataSync(), 0.8), kernel.shape, 'float32');
  model.layers[0].setWeights([tf.mul(kernel, mask), bias]);
  return model;
}

async function weightsOf(model: tf.LayersModel): Promise<Map<string, Float32Array>> {
  return new Map(model.weights.map((w) => [w.originalName, w.read().dataSync() as Float32Array]));
}

for (const dtype of ['uint8', 'uint16'] as const) {
  test(`${dtype}: stock tf.loadLayersModel over HTTP dequantizes every weight to within scale/2, zeros exact`, async () => {
    const model = prunedNet();
    const original = await weightsOf(model);
    const dir = await tempDir();
    const choices = chooseEncodings(
      model.weights.map((w) => ({ name: w.originalName, shape: w.shape as number[], dtype: 'float32' as const })),
      { dtype, layers: {}, minElements: 0 },
      'stages.q',
    );
    await saveLayersModel(model, dir, { encodeWeights: quantizingEncoder(choices) });
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    const specs = json.weightsManifest[0].weights as tf.io.WeightsManifestEntry[];
    for (const spec of specs) {
      assert.is(spec.dtype, 'float32', "the weight's own dtype stays float32");
      assert.equal(Object.keys(spec.quantization!), ['dtype', 'min', 'scale', 'original_dtype']);
      assert.is(spec.quantization!.dtype, dtype);
    }
    const bytes = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0) * (dtype === 'uint8' ? 1 : 2);
    assert.is((await readFile(join(dir, 'group1-shard1of1.bin'))).byteLength, bytes);

    const { url, server } = await serve(dir);
    let loaded: tf.LayersModel;
    try {
      loaded = await tf.loadLayersModel(`${url}/model.json`);
    } finally {
      server.close();
    }
    const restored = await weightsOf(loaded);
    for (const spec of specs) {
      const a = original.get(spec.name)!;
      const b = restored.get(spec.name)!;
      const half = spec.quantization!.scale! / 2;
      for (let i = 0; i < a.length; i++) {
        // scale/2 from rounding, plus float32's own rounding of the dequantized value.
        const bound = half + Math.abs(a[i]) * 2 ** -23;
        if (Math.abs(a[i] - b[i]) > bound) assert.unreachable(`${spec.name}[${i}]: ${a[i]} -> ${b[i]}, more than scale/2 = ${half}`);
        if (a[i] === 0 && b[i] !== 0) assert.unreachable(`${spec.name}[${i}]: zero became ${b[i]}`);
      }
    }
    const kernel = restored.get('hidden/kernel')!;
    assert.is(kernel.filter((v) => v === 0).length, original.get('hidden/kernel')!.filter((v) => v === 0).length);
    assert.equal(Array.from(restored.get('flat/kernel')!), Array.from(original.get('flat/kernel')!), 'a constant tensor is exact');
    // Our own loader reads the same files to the same values.
    const ours = await weightsOf(await loadLayersModelFrom(join(dir, 'model.json')));
    for (const [name, values] of restored) assert.equal(Array.from(ours.get(name)!), Array.from(values));
  });
}

test('float16: every half-precision value survives encode(decode(h)) with tfjs\'s decoder; rounding is to nearest even', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const spec = { name: 'h', shape: [65536], dtype: 'float32' as const, quantization: { dtype: 'float16' as const } };
  const decoded = tf.io.decodeWeights(all.buffer, [spec]).h.dataSync();
  for (let h = 0; h < 65536; h++) {
    const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN16) continue;
    if (float32ToFloat16Bits(decoded[h]) !== h) assert.unreachable(`0x${h.toString(16)} -> ${decoded[h]} -> 0x${float32ToFloat16Bits(decoded[h]).toString(16)}`);
  }
  assert.is(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00, 'halfway: down to the even 1.0');
  assert.is(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02, 'halfway: up to the even neighbour');
  assert.is(float32ToFloat16Bits(65519), 0x7bff);
  assert.is(float32ToFloat16Bits(65520), 0x7c00, 'halfway past the largest half: infinity');
  assert.is(float32ToFloat16Bits(2 ** -25), 0, 'half the smallest subnormal: to even (zero)');
  assert.is(float32ToFloat16Bits(1.5 * 2 ** -25), 1);
  assert.is(float32ToFloat16Bits(-0), 0x8000);
  // Random values land on the nearest half.
  const x = tf.randomNormal([5000], 0, 3, 'float32', 3).dataSync();
  const bits = Uint16Array.from(x, float32ToFloat16Bits);
  const neighbours = new Uint16Array(bits.length * 2);
  bits.forEach((b, i) => ((neighbours[2 * i] = b - 1), (neighbours[2 * i + 1] = b + 1)));
  const [mine, around] = [bits, neighbours].map((a) => tf.io.decodeWeights(a.buffer, [{ ...spec, shape: [a.length] }]).h.dataSync());
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(x[i] - mine[i]);
    assert.ok(d <= Math.abs(x[i] - around[2 * i]) && d <= Math.abs(x[i] - around[2 * i + 1]), `${x[i]} -> ${mine[i]}`);
  }
});

test('float16 through the stock loader: entries are {dtype: float16} with no scale/min, zeros kept', async () => {
  const model = prunedNet();
  const original = await weightsOf(model);
  const dir = await tempDir();
  const specs = model.weights.map((w) => ({ name: w.originalName, shape: w.shape as number[], dtype: 'float32' as const }));
  await saveLayersModel(model, dir, { encodeWeights: quantizingEncoder(chooseEncodings(specs, { dtype: 'float16', layers: {}, minElements: 0 }, 'q')) });
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  assert.equal(json.weightsManifest[0].weights[0].quantization, { dtype: 'float16', original_dtype: 'float32' });
  const restored = await weightsOf(await loadLayersModelFrom(join(dir, 'model.json')));
  for (const [name, a] of original) {
    const b = restored.get(name)!;
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * 2 ** -11 + 2 ** -25, `${name}[${i}] ${a[i]} -> ${b[i]}`);
      if (a[i] === 0) assert.is(b[i], 0);
    }
  }
});

test('which weights: minElements keeps biases float32, patterns on weight or layer names override, bad patterns are named', () => {
  const specs = [
    { name: 'conv1/kernel', shape: [3, 3, 1, 32], dtype: 'float32' as const },
    { name: 'conv1/bias', shape: [32], dtype: 'float32' as const },
    { name: 'dense_Dense1/kernel', shape: [1024, 10], dtype: 'float32' as const },
    { name: 'dense_Dense1/bias', shape: [10], dtype: 'float32' as const },
  ];
  const pick = (layers: Record<string, QuantizationDtype | 'float32'>) =>
    chooseEncodings(specs, { dtype: 'uint8', layers, minElements: 1024 }, 'stages.q').map((c) => c.encoding);
  assert.equal(pick({}), ['float32', 'float32', 'uint8', 'float32']);
  assert.equal(pick({ conv1: 'float16' }), ['float16', 'float16', 'uint8', 'float32'], 'a layer name selects its weights');
  assert.equal(pick({ '*/kernel': 'uint16', 'dense_*/bias': 'uint8' }), ['uint16', 'float32', 'uint16', 'uint8']);
  assert.equal(pick({ 'dense_*': 'float32' }), ['float32', 'float32', 'float32', 'float32']);
  for (const [layers, message] of [
    [{ 'conv9/*': 'uint8' }, 'stages.q.layers: "conv9/*" matches no weight; the model\'s weights are: conv1/kernel'],
    [{ '*/kernel': 'uint8', 'conv1*': 'float16' }, 'weight "conv1/kernel" is matched by "*/kernel" (uint8) and "conv1*" (float16)'],
  ] as const) {
    try {
      pick(layers);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, InputError);
      assert.match((err as Error).message, message);
    }
  }
});

test('sizes: raw bytes and gzip -9; pruned + uint8 weights compress far better than float32', () => {
  const dense = tf.randomNormal([256, 256], 0, 0.1, 'float32', 1).dataSync() as Float32Array;
  const mask = magnitudeMask(dense, 0.8);
  const pruned = dense.map((v, i) => (mask[i] ? v : 0));
  const float = sizesOf(new Uint8Array(dense.buffer));
  const q = quantizeAffine(pruned, 'uint8');
  const small = sizesOf(q.data as Uint8Array);
  assert.is(float.raw, 256 * 256 * 4);
  assert.is(small.raw, 256 * 256);
  assert.ok(float.gzip / small.gzip > 8, `only ${(float.gzip / small.gzip).toFixed(1)}x`);
});

test('our loader refuses a uint8 weight without scale or min (tfjs would load NaNs)', async () => {
  const model = prunedNet();
  const dir = await tempDir();
  const specs = model.weights.map((w) => ({ name: w.originalName, shape: w.shape as number[], dtype: 'float32' as const }));
  await saveLayersModel(model, dir, { encodeWeights: quantizingEncoder(chooseEncodings(specs, { dtype: 'uint8', layers: {}, minElements: 0 }, 'q')) });
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  delete json.weightsManifest[0].weights[1].quantization.scale;
  await writeFile(join(dir, 'model.json'), JSON.stringify(json));
  try {
    await loadLayersModelFrom(join(dir, 'model.json'));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'weight "hidden/bias" is quantized to uint8 without a finite "scale" and "min"');
  }
});

test.run();
