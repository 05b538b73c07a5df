import * as tf from '@tensorflow/tfjs';
import type { ConstTensor, ExportGraph, GraphActivation, GraphOp } from '../../src/export/graph-ir.js';

// What an ExportGraph means, computed with plain tfjs ops: the reference every graph writer's
// output (ONNX, TF GraphDef/SavedModel) is compared against. It reads each op exactly as graph-ir.ts
// documents it (NHWC, TF kernel layouts, constants' float values) and shares no code with any
// writer, so a writer's layout or padding mistake shows up as a numeric difference.

/** Runs `graph` on `input` (NHWC, batch first) and returns the output; `input` is not disposed. */
export function runGraphWithTf(graph: ExportGraph, input: tf.Tensor): tf.Tensor {
  return tf.tidy(() => graph.ops.reduce<tf.Tensor>((x, op) => applyOp(op, x), tf.cast(input, 'float32')));
}

export function applyOp(op: GraphOp, x: tf.Tensor): tf.Tensor {
  switch (op.op) {
    case 'conv2d': {
      const y = tf.conv2d(x as tf.Tensor4D, constant(op.kernel) as tf.Tensor4D, op.strides, op.padding, 'NHWC', op.dilations);
      return activate(addBias(y, op.bias), op.activation);
    }
    case 'depthwiseConv2d': {
      const y = tf.depthwiseConv2d(x as tf.Tensor4D, constant(op.kernel) as tf.Tensor4D, op.strides, op.padding, 'NHWC', op.dilations);
      return activate(addBias(y, op.bias), op.activation);
    }
    case 'dense': {
      // tf.layers.dense semantics: a matmul over the last axis, whatever the rank.
      const [inUnits, units] = op.kernel.shape;
      const flat = tf.matMul(x.reshape([-1, inUnits]) as tf.Tensor2D, constant(op.kernel) as tf.Tensor2D);
      return activate(addBias(flat.reshape([...x.shape.slice(0, -1), units]), op.bias), op.activation);
    }
    case 'maxPool':
      return tf.maxPool(x as tf.Tensor4D, op.poolSize, op.strides, op.padding);
    case 'avgPool':
      return tf.avgPool(x as tf.Tensor4D, op.poolSize, op.strides, op.padding);
    case 'globalAvgPool':
      return tf.mean(x, [1, 2]);
    case 'globalMaxPool':
      return tf.max(x, [1, 2]);
    case 'reshape':
      return tf.reshape(x, [x.shape[0], ...op.shape]);
    case 'scaleShift':
      return activate(tf.add(tf.mul(x, constant(op.scale)), constant(op.shift)), op.activation);
    case 'activation':
      return activate(x, op.activation);
    default:
      throw new Error(`runGraphWithTf: unknown op ${JSON.stringify(op)}`);
  }
}

export function activate(x: tf.Tensor, activation: GraphActivation): tf.Tensor {
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'elu':
      return tf.elu(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
    case 'softmax':
      return tf.softmax(x, -1);
    default:
      throw new Error(`runGraphWithTf: unknown activation ${String(activation)}`);
  }
}

/** The values tfjs computes with (for a quantized constant, its dequantized values). */
export function constant(t: ConstTensor): tf.Tensor {
  return tf.tensor(t.values, t.shape, 'float32');
}

function addBias(x: tf.Tensor, bias: ConstTensor | undefined): tf.Tensor {
  return bias ? tf.add(x, constant(bias)) : x;
}
