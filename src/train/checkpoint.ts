import * as tf from '@tensorflow/tfjs';
import type { Checkpoint } from '../artifacts/store.js';
import type { EpochLogs } from './progress.js';

// What the training loop saves after every epoch, so that a run killed or stopped later resumes
// from there and ends with the weights an uninterrupted run would have: every model weight (the
// non-trainable ones too, e.g. batch-norm moving statistics), the optimizer's state (Adam's
// moments and step count), the best epoch's weights, the early-stopping counters, the history and
// whatever the loop's callbacks carry (prune: its masks). No random-generator state: the loop draws
// each epoch's shuffle and dropout streams from (seed, epoch) alone.

/** What tf.Optimizer.getWeights() gives (tfjs's own NamedTensor type is not exported). */
export type NamedTensor = { name: string; tensor: tf.Tensor };

/** Where one training loop keeps its checkpoint; the engine makes one per loop of the running stage. */
export interface CheckpointSlot {
  /** The checkpoint file, for messages. */
  readonly where: string;
  /** The checkpoint an interrupted run of the same stage config left; undefined when there is none. */
  load(): Promise<Checkpoint | undefined>;
  save(checkpoint: Checkpoint): Promise<void>;
  /** The checkpoint cannot be used (it does not fit the model): says so; training starts over and replaces it. */
  reject(reason: string): Promise<void>;
}

/** Tensors and JSON that a loop's callbacks carry from epoch to epoch (prune: its masks). */
export interface CallbackState {
  tensors: tf.Tensor[];
  json: unknown;
}

export interface BestEpoch {
  epoch: number;
  value: number;
  /** Empty unless the best weights are restored at the end. */
  weights: tf.Tensor[];
}

/** The loop's state after `epoch` of `epochs`. */
export interface LoopState {
  epoch: number;
  epochs: number;
  steps: number;
  history: EpochLogs[];
  best?: BestEpoch;
  sinceImprovement: number;
  stoppedEarly: boolean;
  /** model.getWeights(): trainable and non-trainable. */
  weights: tf.Tensor[];
  /** optimizer.getWeights(), and the names of the variables it optimises, in slot order. */
  optimizer: NamedTensor[];
  variables: string[];
  callbacks?: CallbackState;
}

const FORMAT = 1;
type Group = 'weights' | 'optimizer' | 'best' | 'callbacks';
interface TensorSpec {
  group: Group;
  name?: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  bytes: number;
}
interface LoopMeta {
  format: number;
  steps: number;
  history: EpochLogs[];
  best?: { epoch: number; value: number };
  sinceImprovement: number;
  stoppedEarly: boolean;
  variables: string[];
  callbacks?: unknown;
  tensors: TensorSpec[];
}

/** The loop state as the store keeps it; reads the tensors back from the device (once an epoch). */
export async function encodeLoopState(state: LoopState): Promise<Checkpoint> {
  const specs: TensorSpec[] = [];
  const chunks: Uint8Array[] = [];
  const add = async (group: Group, tensor: tf.Tensor, name?: string) => {
    if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') {
      throw new Error(`internal: a ${tensor.dtype} tensor cannot go into a checkpoint`);
    }
    const values = await tensor.data();
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    specs.push({ group, ...(name === undefined ? {} : { name }), shape: tensor.shape, dtype: tensor.dtype, bytes: bytes.byteLength });
    chunks.push(bytes.slice());
  };
  for (const w of state.weights) await add('weights', w);
  for (const w of state.optimizer) await add('optimizer', w.tensor, w.name);
  for (const w of state.best?.weights ?? []) await add('best', w);
  for (const w of state.callbacks?.tensors ?? []) await add('callbacks', w);
  const meta: LoopMeta = {
    format: FORMAT,
    steps: state.steps,
    history: state.history.map((logs) => Object.fromEntries(Object.entries(logs).map(([k, v]) => [k, numberToJson(v)]))) as never,
    ...(state.best ? { best: { epoch: state.best.epoch, value: numberToJson(state.best.value) as never } } : {}),
    sinceImprovement: state.sinceImprovement,
    stoppedEarly: state.stoppedEarly,
    variables: state.variables,
    ...(state.callbacks ? { callbacks: state.callbacks.json } : {}),
    tensors: specs,
  };
  const data = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { epoch: state.epoch, epochs: state.epochs, meta: meta as unknown as Record<string, unknown>, data };
}

/** The loop state of a checkpoint, as new tensors the caller owns; throws when it is not one. */
export function decodeLoopState(checkpoint: Checkpoint): LoopState {
  const meta = checkpoint.meta as unknown as LoopMeta;
  if (meta.format !== FORMAT) throw new Error(`it is in checkpoint format ${String(meta.format)}, this version reads ${FORMAT}`);
  const groups: Record<Group, { name?: string; tensor: tf.Tensor }[]> = { weights: [], optimizer: [], best: [], callbacks: [] };
  let offset = 0;
  for (const spec of meta.tensors) {
    const bytes = checkpoint.data.slice(offset, offset + spec.bytes);
    offset += spec.bytes;
    const values = spec.dtype === 'int32' ? new Int32Array(bytes.buffer) : new Float32Array(bytes.buffer);
    groups[spec.group].push({ name: spec.name, tensor: tf.tensor(values, spec.shape, spec.dtype) });
  }
  if (offset !== checkpoint.data.byteLength) throw new Error(`its tensors take ${offset} bytes of ${checkpoint.data.byteLength}`);
  const tensors = (group: Group) => groups[group].map((g) => g.tensor);
  return {
    epoch: checkpoint.epoch,
    epochs: checkpoint.epochs,
    steps: meta.steps,
    history: meta.history.map((logs) => Object.fromEntries(Object.entries(logs).map(([k, v]) => [k, numberFromJson(v)])) as EpochLogs),
    ...(meta.best ? { best: { epoch: meta.best.epoch, value: numberFromJson(meta.best.value), weights: tensors('best') } } : {}),
    sinceImprovement: meta.sinceImprovement,
    stoppedEarly: meta.stoppedEarly,
    weights: tensors('weights'),
    optimizer: groups.optimizer.map((g) => ({ name: g.name ?? '', tensor: g.tensor })),
    variables: meta.variables,
    ...(meta.callbacks !== undefined || groups.callbacks.length ? { callbacks: { tensors: tensors('callbacks'), json: meta.callbacks } } : {}),
  };
}

/** Every tensor a decoded state holds. */
export function stateTensors(state: LoopState): tf.Tensor[] {
  return [...state.weights, ...state.optimizer.map((w) => w.tensor), ...(state.best?.weights ?? []), ...(state.callbacks?.tensors ?? [])];
}

/**
 * Optimizer weights named after the variables they belong to now. tfjs names variables from
 * process-wide counters (dense_Dense3/kernel), so a model rebuilt in another process, or a second
 * time in one, has other names; the slots match by position, the order the optimizer made them in.
 */
export function renameOptimizerWeights(weights: NamedTensor[], saved: string[], current: string[]): NamedTensor[] {
  const rename = new Map(saved.map((name, i) => [name, current[i]]));
  return weights.map((w) => {
    const cut = w.name.lastIndexOf('/');
    const now = cut > 0 ? rename.get(w.name.slice(0, cut)) : undefined;
    return now === undefined ? w : { name: `${now}${w.name.slice(cut)}`, tensor: w.tensor };
  });
}

// Epoch logs hold NaN where there is no validation split, which JSON cannot: kept as the string.
function numberToJson(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

function numberFromJson(v: unknown): number {
  return typeof v === 'string' ? Number(v) : (v as number);
}
