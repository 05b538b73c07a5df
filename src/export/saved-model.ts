import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { writeFileSynced } from '../util/fs.js';
import type { ExportGraph } from './graph-ir.js';
import { buildGraphDefWithConstants, signatureFor, TF_VERSION, type GraphDefOptions } from './graph-def.js';
import { decodeMessage, encodeMessage, tfType, type SavedModelObject, type TensorObject } from './tf-proto.js';

// A TensorFlow SavedModel of a frozen graph, for TensorFlow Serving and tf.saved_model.load:
// saved_model.pb holds one MetaGraphDef tagged "serve" whose GraphDef is the tfjs graph model's
// (same nodes, same attrs) with every Const's value in its tensor_content, and a serving_default
// signature (method tensorflow/serving/predict). A frozen graph has no variables, so variables/ is
// empty: TensorFlow's loader skips the restore when variables/variables.index does not exist.
//
// Quantized constants are stored as their dequantized float32 values: a GraphDef has no notion
// of tfjs's weight quantization, and the values are exactly what tfjs computes with.

/** saved_model.pb is one protobuf message, which protobuf (and TensorFlow's reader) caps at 2 GiB. */
const MAX_PROTO_BYTES = 2 ** 31 - 1;

export interface SavedModelOptions extends GraphDefOptions {
  /** MetaInfoDef.tensorflow_version (default the release whose op defs the graph follows). */
  tensorflowVersion?: string;
}

/** The bytes of saved_model.pb. */
export function encodeSavedModel(graph: ExportGraph, options: SavedModelOptions = {}): Uint8Array {
  const { graphDef, constants } = buildGraphDefWithConstants(graph, options);
  const total = constants.reduce((n, c) => n + c.values.byteLength, 0);
  if (total > MAX_PROTO_BYTES - 64 * 1024 * 1024) {
    throw new InputError(
      `cannot export a SavedModel: its constants take ${total} bytes and a frozen graph must fit in one protobuf message (2 GiB); export a tfjs graph model instead`,
      { code: 'E_EXPORT' },
    );
  }
  const byName = new Map(constants.map((c) => [c.name, c]));
  // Shallow copies: the JSON-form GraphDef stays as buildGraphDef returns it.
  const node = graphDef.node.map((n) => {
    const c = n.op === 'Const' ? byName.get(n.name) : undefined;
    if (!c) return n;
    const tensor: TensorObject = { ...n.attr!.value.tensor!, tensorContent: new Uint8Array(c.values.buffer, c.values.byteOffset, c.values.byteLength) };
    return { ...n, attr: { ...n.attr, value: { tensor } } };
  });
  const signature = signatureFor(graph);
  const savedModel = {
    savedModelSchemaVersion: '1',
    metaGraphs: [
      {
        metaInfoDef: { tags: ['serve'], tensorflowVersion: options.tensorflowVersion ?? TF_VERSION },
        graphDef: { ...graphDef, node },
        signatureDef: { serving_default: { ...signature, methodName: 'tensorflow/serving/predict' } },
      },
    ],
  };
  return encodeMessage(tfType('SavedModel'), savedModel);
}

/** Parses saved_model.pb into protobuf's JSON form (tensor_content as base64; see tensorValues). */
export function decodeSavedModel(bytes: Uint8Array): SavedModelObject {
  return decodeMessage<SavedModelObject>(tfType('SavedModel'), bytes);
}

/** A decoded TensorProto's values from its tensor_content (DT_FLOAT and DT_INT32, as we write them). */
export function tensorValues(tensor: TensorObject): Float32Array | Int32Array {
  const content = tensor.tensorContent;
  const bytes = typeof content === 'string' ? Buffer.from(content, 'base64') : (content ?? new Uint8Array());
  const copy = new Uint8Array(bytes); // aligned, and independent of the decoder's buffer
  if (tensor.dtype === 'DT_FLOAT') return new Float32Array(copy.buffer);
  if (tensor.dtype === 'DT_INT32') return new Int32Array(copy.buffer);
  throw new Error(`tensorValues: ${tensor.dtype} is not supported`);
}

/** Writes `dir`/saved_model.pb and an empty `dir`/variables/. Returns the files written, relative to `dir`. */
export async function writeSavedModel(graph: ExportGraph, dir: string, options: SavedModelOptions = {}): Promise<{ files: string[] }> {
  const bytes = encodeSavedModel(graph, options);
  await mkdir(join(dir, 'variables'), { recursive: true });
  await writeFileSynced(join(dir, 'saved_model.pb'), bytes);
  return { files: ['saved_model.pb'] };
}
