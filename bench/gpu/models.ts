import * as tf from '@tensorflow/tfjs';

// The models the GPU benchmarks train: the Fashion-MNIST teacher CNN and the reference MLP.

export type ModelName = 'teacher' | 'mlp';

export const FEATURES: Record<ModelName, number[]> = { teacher: [28, 28, 1], mlp: [784] };

/** The teacher of pipelines/fashion-mnist.yaml and the MLP of ../shared/gpu/README.md. */
export function buildModel(name: ModelName): tf.LayersModel {
  const L = tf.layers;
  if (name === 'mlp') {
    return tf.sequential({
      layers: [
        L.dense({ inputShape: [784], units: 1200, activation: 'relu' }),
        L.dense({ units: 1200, activation: 'relu' }),
        L.dense({ units: 10 }),
      ],
    });
  }
  const block = (filters: number, first = false) => [
    L.conv2d({ filters, kernelSize: 3, padding: 'same', ...(first ? { inputShape: [28, 28, 1] } : {}) }),
    L.batchNormalization({ momentum: 0.9 }),
    L.activation({ activation: 'relu' }),
  ];
  return tf.sequential({
    layers: [
      ...block(32, true),
      ...block(32),
      L.maxPooling2d({ poolSize: 2 }),
      L.dropout({ rate: 0.25 }),
      ...block(64),
      ...block(64),
      L.maxPooling2d({ poolSize: 2 }),
      L.dropout({ rate: 0.25 }),
      L.flatten(),
      L.dense({ units: 256 }),
      L.batchNormalization({ momentum: 0.9 }),
      L.activation({ activation: 'relu' }),
      L.dropout({ rate: 0.5 }),
      L.dense({ units: 10 }),
    ],
  });
}

