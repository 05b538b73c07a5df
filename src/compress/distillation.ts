import * as tf from '@tensorflow/tfjs';

// Knowledge distillation (Hinton, Vinyals & Dean 2015) as one scalar loss:
//
//   alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
//
// Everything goes through log-softmax, never log(softmax(.)), so large logits stay finite on every
// backend (webgpu and wasm included: only stock ops are used). The T^2 factor keeps the soft term's
// gradient on the hard term's scale whatever T is: the KL's gradient in the student logits s is
// (softmax(s / T) - softmax(t / T)) / T, about (s - t) / (K T^2) (centred, K classes) for logits
// small against T, so without T^2 raising T would silently shrink the teacher's influence.

export interface DistillationLossOptions {
  /** T > 0: the softmax temperature applied to both teacher and student. */
  temperature: number;
  /** Weight of the hard-label cross-entropy, 0..1; the soft (teacher) term gets 1 - alpha. */
  alpha: number;
  /** The student's output is a softmax (probabilities), not logits. */
  studentIsProbabilities: boolean;
  /** Label smoothing of the hard-label term (the `loss` option's), 0 by default. */
  labelSmoothing?: number;
}

/**
 * Floor for probabilities before their log. Far below Keras's 1e-7: a float32 softmax represents
 * probabilities down to ~1e-38 accurately, and at T = 4 clipping at 1e-7 would lift every class
 * the teacher rules out to exp(log(1e-7) / 4) ~ 2% of the softened mass, which is not the teacher.
 * 1e-30 stays a normal float32 (no denormals, which some GPU backends flush to zero).
 */
const PROBABILITY_FLOOR = 1e-30;

/**
 * Logits (up to a per-row constant) of a model output. A softmax head's output p gives
 * log(p) = logits - logsumexp(logits): the row constant differs, but softmax(. / T) of a row is
 * unchanged by adding a constant to every entry, so log(p) serves as the logits for every use here.
 */
export function logitsOf(output: tf.Tensor2D, isProbabilities: boolean): tf.Tensor2D {
  return isProbabilities ? (tf.log(tf.maximum(output, PROBABILITY_FLOOR)) as tf.Tensor2D) : output;
}

/** Mean distillation loss over the batch. `labels` are int32 class indices; `teacherLogits` are constants. */
export function distillationLoss(
  studentOutput: tf.Tensor2D,
  teacherLogits: tf.Tensor2D,
  labels: tf.Tensor1D,
  options: DistillationLossOptions,
): tf.Scalar {
  const { temperature: t, alpha } = options;
  if (!(t > 0)) throw new Error(`distillation temperature must be > 0, got ${t}`);
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`distillation alpha must be in [0, 1], got ${alpha}`);
  if (studentOutput.shape[1] !== teacherLogits.shape[1] || studentOutput.shape[0] !== teacherLogits.shape[0]) {
    throw new Error(
      `student output [${studentOutput.shape.join(', ')}] and teacher logits [${teacherLogits.shape.join(', ')}] differ in shape`,
    );
  }
  return tf.tidy(() => {
    const numClasses = studentOutput.shape[1];
    const student = logitsOf(studentOutput, options.studentIsProbabilities);
    const terms: tf.Scalar[] = [];
    if (alpha > 0) {
      const smoothing = options.labelSmoothing ?? 0;
      let target: tf.Tensor2D = tf.oneHot(labels, numClasses).toFloat() as tf.Tensor2D;
      if (smoothing > 0) target = tf.add(tf.mul(target, 1 - smoothing), smoothing / numClasses);
      const ce = tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(student)), 1))) as tf.Scalar;
      terms.push(tf.mul(ce, alpha));
    }
    if (alpha < 1) {
      const teacherLogP = tf.logSoftmax(tf.div(teacherLogits, t));
      const studentLogP = tf.logSoftmax(tf.div(student, t));
      // KL(p || q) = sum p (log p - log q); p is the teacher's, so the only gradient is through q.
      const kl = tf.mean(tf.sum(tf.mul(tf.exp(teacherLogP), tf.sub(teacherLogP, studentLogP)), 1)) as tf.Scalar;
      terms.push(tf.mul(kl, (1 - alpha) * t * t));
    }
    return terms.length === 1 ? terms[0] : (tf.add(terms[0], terms[1]) as tf.Scalar);
  }) as tf.Scalar;
}
