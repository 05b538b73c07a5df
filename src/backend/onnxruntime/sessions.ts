import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { AttributeType, DataType, encodeModel, type OnnxAttribute, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from '../../export/onnx-proto.js';

// onnxruntime-node ships MLAS, a GEMM with AVX2/AVX-512/NEON kernels and its own thread pool,
// inside the npm package (no download). A kernel here is a tiny ONNX graph built once per
// shape signature and run synchronously on Float32Array views of the wasm heap: inputs are
// read in place and the output is written straight into a tensor the wasm backend allocated.
//
// The public InferenceSession.run is async (it defers to setImmediate), but tfjs kernels are
// synchronous; the native binding's run underneath it is synchronous, so that is what we call.

export interface OrtTensorLike {
  readonly dims: readonly number[];
}

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, OrtTensorLike>, fetches: Record<string, OrtTensorLike>, options: object): unknown;
}

interface OrtModule {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensorLike;
}

let ort: OrtModule | undefined;

/** Loads onnxruntime-node's native binding; throws with the reason when it cannot. */
export function loadOnnxruntime(): OrtModule {
  if (ort) return ort;
  const require = createRequire(import.meta.url);
  const { Tensor } = require('onnxruntime-node') as { Tensor: OrtModule['Tensor'] };
  const { binding, initOrt } = require('onnxruntime-node/dist/binding') as Omit<OrtModule, 'Tensor'>;
  if (typeof binding?.InferenceSession !== 'function' || typeof initOrt !== 'function') {
    throw new Error('onnxruntime-node has no native InferenceSession binding (unsupported version)');
  }
  initOrt();
  ort = { binding, initOrt, Tensor };
  return ort;
}

export interface SessionSettings {
  /** MLAS threads; default: one per core. */
  threads: number;
  /**
   * Whether pool threads spin-wait for the next kernel (onnxruntime's default) instead of
   * sleeping: faster hand-offs, but they hold cores the JavaScript side needs between kernels.
   */
  spin: boolean;
}

export const sessionSettings: SessionSettings = { threads: availableParallelism(), spin: false };

/** A graph under construction: nodes plus the int64 constants (shapes, pads) they use. */
export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private counter = 0;

  /** Adds a node and returns its (single) output name. */
  op(opType: string, inputs: string[], attributes: OnnxAttribute[] = [], output?: string): string {
    const name = output ?? `t${this.counter++}`;
    this.nodes.push({ name: `n${this.nodes.length}`, opType, input: inputs, output: [name], attribute: attributes });
    return name;
  }

  int64s(values: number[]): string {
    const name = `c${this.counter++}`;
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [values.length], dataType: DataType.INT64, rawData: new Uint8Array(raw.buffer) });
    return name;
  }

  float32(value: number): string {
    const name = `c${this.counter++}`;
    this.initializers.push({ name, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(new Float32Array([value]).buffer) });
    return name;
  }

  reshape(input: string, shape: number[]): string {
    return this.op('Reshape', [input, this.int64s(shape)]);
  }

  transpose(input: string, perm: number[]): string {
    return this.op('Transpose', [input], [ints('perm', perm)]);
  }
}

export const ints = (name: string, values: number[]): OnnxAttribute => ({ name, type: AttributeType.INTS, ints: values });
export const int = (name: string, value: number): OnnxAttribute => ({ name, type: AttributeType.INT, i: value });
export const float = (name: string, value: number): OnnxAttribute => ({ name, type: AttributeType.FLOAT, f: value });

/** A float32 graph input or output; a string dimension is symbolic (e.g. the batch). */
export function floatValue(name: string, dims: (number | string)[]): OnnxValueInfo {
  return {
    name,
    type: {
      tensorType: {
        elemType: DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

export interface KernelGraph {
  inputs: OnnxValueInfo[];
  output: OnnxValueInfo;
  build(g: GraphBuilder): void;
}

export class KernelSession {
  constructor(
    private readonly native: NativeSession,
    private readonly inputNames: string[],
    private readonly outputName: string,
  ) {}

  /** Runs the graph: inputs in order, output written into `out` (which must have the output's shape). */
  run(inputs: { data: Float32Array; dims: readonly number[] }[], out: { data: Float32Array; dims: readonly number[] }): void {
    const { Tensor } = loadOnnxruntime();
    const feeds: Record<string, OrtTensorLike> = {};
    inputs.forEach((input, i) => (feeds[this.inputNames[i]] = new Tensor('float32', input.data, input.dims)));
    this.native.run(feeds, { [this.outputName]: new Tensor('float32', out.data, out.dims) }, {});
  }
}

const sessions = new Map<string, KernelSession>();

/** The session for a graph signature, built and loaded on first use. */
export function kernelSession(key: string, graph: () => KernelGraph): KernelSession {
  let session = sessions.get(key);
  if (session) return session;
  const { binding } = loadOnnxruntime();
  const spec = graph();
  const builder = new GraphBuilder();
  spec.build(builder);
  const bytes = encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'tfjs-pipeline',
    graph: {
      name: key,
      node: builder.nodes,
      initializer: builder.initializers,
      input: spec.inputs,
      output: [spec.output],
    },
  });
  const native = new binding.InferenceSession();
  native.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
    intraOpNumThreads: sessionSettings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: sessionSettings.spin ? '1' : '0' } } },
  });
  session = new KernelSession(native, spec.inputs.map((i) => i.name), spec.output.name);
  sessions.set(key, session);
  return session;
}

/** Sessions built so far (for tests and benchmarks). */
export function sessionCount(): number {
  return sessions.size;
}
