import * as tf from '@tensorflow/tfjs';

// tfjs-layers' BatchNormalization, with its training step's gradient in closed form. Stock tfjs
// normalises with tf.moments and tf.batchNorm and lets autodiff differentiate both, which costs
// about 30 passes over the activation per layer and step (the mean and variance each get their own
// gradient, broadcast back); the textbook gradient needs about a dozen:
//
//   xhat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps),   n = elements per channel
//   dbeta = sum(dy),   dgamma = sum(dy * xhat)
//   dx = gamma * rstd * (dy - dbeta / n - xhat * dgamma / n)
//
// On a CPU that is most of the elementwise time of a CNN with batch norm (bench/cpu-train's big
// model), and on a GPU fewer kernel launches. Inference, the saved model.json (class name
// "BatchNormalization", same config and weights) and the moving-statistics update are tfjs's own;
// only a training call on channels-last input with both gamma and beta takes this path.

interface StockBatchNormalization extends tf.layers.Layer {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma: tf.LayerVariable;
  beta: tf.LayerVariable;
  movingMean: tf.LayerVariable;
  movingVariance: tf.LayerVariable;
}

type LayerArgs = Parameters<typeof tf.layers.batchNormalization>[0];

// The class is not exported by name; a throwaway instance (no weights until built) gives it.
const Stock = tf.layers.batchNormalization({}).constructor as new (args?: LayerArgs) => StockBatchNormalization;

/** y = gamma * xhat + beta over every axis but the last, with the closed-form gradient above. */
export function batchNormTraining(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const perChannel = x.size / x.shape[x.rank - 1];
  const { mean, variance } = tf.moments(x, axes);
  // mean and variance enter as constants: their part of the gradient is folded into dx below.
  const normalize = tf.customGrad((input, scale, offset, save) => {
    const [xIn, g, b] = [input, scale, offset] as tf.Tensor[];
    const rstd = tf.rsqrt(tf.add(variance, epsilon));
    // x * a + c with per-channel a and c: two broadcast passes, which on wasm cost a third of its
    // FusedBatchNorm kernel's one.
    const a = tf.mul(g, rstd);
    const y = tf.add(tf.mul(xIn, a), tf.sub(b, tf.mul(mean, a)));
    (save as (tensors: tf.Tensor[]) => void)([xIn, g, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xSaved, gSaved, rstdSaved] = saved;
        const xhat = tf.mul(tf.sub(xSaved, mean), rstdSaved);
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, xhat), axes);
        const centered = tf.sub(dy, tf.div(dbeta, perChannel));
        const dx = tf.mul(tf.sub(centered, tf.mul(xhat, tf.div(dgamma, perChannel))), tf.mul(gSaved, rstdSaved));
        return [dx, dgamma, dbeta];
      },
    };
  });
  return { y: normalize(x, gamma, beta), mean, variance };
}

export class FastBatchNormalization extends Stock {
  static className = 'BatchNormalization';

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    const lastAxis = this.axis === -1 || this.axis === input.rank - 1;
    if (!kwargs.training || !lastAxis || !this.center || !this.scale || input.rank < 2) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const { y, mean, variance } = batchNormTraining(input, this.gamma.read(), this.beta.read(), this.epsilon);
      // As tfjs: moving = moving - (moving - batch) * (1 - momentum), with the biased variance.
      for (const [moving, batch] of [[this.movingMean, mean], [this.movingVariance, variance]] as const) {
        tf.tidy(() => {
          const current = moving.read();
          moving.write(tf.sub(current, tf.mul(tf.sub(current, batch), 1 - this.momentum)));
        });
      }
      return y;
    });
  }
}

// Models read from model.json (a teacher, a model to prune or fine-tune) train the same way. The
// static fromConfig is the stock class's, which the constructor type above does not declare.
tf.serialization.registerClass(FastBatchNormalization as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>);
