import protobuf from 'protobufjs';

// The subset of ONNX's onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) that the
// ONNX writer emits, as protobufjs reflection JSON. Field numbers are the wire format and must match
// onnx.proto exactly; field names are only the keys of the JS objects (camelCase, as protobufjs
// names them when it parses .proto text). Fields we never write are left out: decoders skip
// unknown fields, and an absent optional field is the same as one never written.
//
// onnx.proto is proto2. Every type is marked so: under protobufjs's proto3 default, a zero-valued
// optional field (an int attribute of 0, a dim_value of 0) would be dropped from the wire, and
// proto2 readers would then see "absent" instead of 0.

/** TensorProto.DataType: the element types we write. */
export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT32: 6, INT64: 7, FLOAT16: 10 } as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType: the discriminator every attribute must carry (IR >= 2). */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;
export type AttributeType = (typeof AttributeType)[keyof typeof AttributeType];

export interface OnnxTensor {
  name: string;
  dims: number[];
  dataType: DataType;
  /** Fixed-width little-endian element bytes, row-major. */
  rawData: Uint8Array;
  docString?: string;
}

export interface OnnxAttribute {
  name: string;
  type: AttributeType;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: OnnxTensor;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain?: string;
  attribute?: OnnxAttribute[];
  docString?: string;
}

/** One dimension: a fixed size, a named symbolic size, or (neither set) an unknown one. */
export interface OnnxDimension {
  dimValue?: number;
  dimParam?: string;
}

export interface OnnxValueInfo {
  name: string;
  type: { tensorType: { elemType: DataType; shape?: { dim: OnnxDimension[] } } };
  docString?: string;
}

export interface OnnxGraph {
  node: OnnxNode[];
  name: string;
  initializer: OnnxTensor[];
  docString?: string;
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetImport: { domain: string; version: number }[];
  producerName: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: number;
  docString?: string;
  graph: OnnxGraph;
  metadataProps?: { key: string; value: string }[];
}

const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });
const optional = (type: string, id: number) => ({ type, id });

const ONNX_SCHEMA = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          edition: 'proto2',
          fields: {
            irVersion: optional('int64', 1),
            producerName: optional('string', 2),
            producerVersion: optional('string', 3),
            domain: optional('string', 4),
            modelVersion: optional('int64', 5),
            docString: optional('string', 6),
            graph: optional('GraphProto', 7),
            opsetImport: repeated('OperatorSetIdProto', 8),
            metadataProps: repeated('StringStringEntryProto', 14),
          },
        },
        StringStringEntryProto: {
          edition: 'proto2',
          fields: { key: optional('string', 1), value: optional('string', 2) },
        },
        OperatorSetIdProto: {
          edition: 'proto2',
          fields: { domain: optional('string', 1), version: optional('int64', 2) },
        },
        GraphProto: {
          edition: 'proto2',
          fields: {
            node: repeated('NodeProto', 1),
            name: optional('string', 2),
            initializer: repeated('TensorProto', 5),
            docString: optional('string', 10),
            input: repeated('ValueInfoProto', 11),
            output: repeated('ValueInfoProto', 12),
            valueInfo: repeated('ValueInfoProto', 13),
          },
        },
        NodeProto: {
          edition: 'proto2',
          fields: {
            input: repeated('string', 1),
            output: repeated('string', 2),
            name: optional('string', 3),
            opType: optional('string', 4),
            attribute: repeated('AttributeProto', 5),
            docString: optional('string', 6),
            domain: optional('string', 7),
          },
        },
        AttributeProto: {
          edition: 'proto2',
          fields: {
            name: optional('string', 1),
            f: optional('float', 2),
            i: optional('int64', 3),
            s: optional('bytes', 4),
            t: optional('TensorProto', 5),
            floats: repeated('float', 7),
            ints: repeated('int64', 8),
            strings: repeated('bytes', 9),
            docString: optional('string', 13),
            type: optional('AttributeType', 20),
          },
          nested: {
            AttributeType: {
              values: { UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10 },
            },
          },
        },
        TensorProto: {
          edition: 'proto2',
          fields: {
            dims: repeated('int64', 1),
            dataType: optional('int32', 2),
            floatData: { ...repeated('float', 4), options: { packed: true } },
            int32Data: { ...repeated('int32', 5), options: { packed: true } },
            int64Data: { ...repeated('int64', 7), options: { packed: true } },
            name: optional('string', 8),
            rawData: optional('bytes', 9),
            docString: optional('string', 12),
          },
        },
        ValueInfoProto: {
          edition: 'proto2',
          fields: { name: optional('string', 1), type: optional('TypeProto', 2), docString: optional('string', 3) },
        },
        TypeProto: {
          edition: 'proto2',
          oneofs: { value: { oneof: ['tensorType'] } },
          fields: { tensorType: optional('Tensor', 1), denotation: optional('string', 6) },
          nested: {
            Tensor: {
              fields: { elemType: optional('int32', 1), shape: optional('TensorShapeProto', 2) },
            },
          },
        },
        TensorShapeProto: {
          edition: 'proto2',
          fields: { dim: repeated('Dimension', 1) },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: { dimValue: optional('int64', 1), dimParam: optional('string', 2), denotation: optional('string', 3) },
            },
          },
        },
      },
    },
  },
};

let modelType: protobuf.Type | undefined;

/** The onnx.ModelProto message type (built once, on first use). */
export function modelProtoType(): protobuf.Type {
  modelType ??= protobuf.Root.fromJSON(ONNX_SCHEMA as protobuf.INamespace).lookupType('onnx.ModelProto');
  return modelType;
}

/** Serialises a model to the bytes of an .onnx file. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const type = modelProtoType();
  const error = type.verify(model);
  if (error) throw new Error(`invalid ONNX ModelProto: ${error}`);
  return type.encode(model).finish();
}

/** Parses .onnx bytes back into the shape encodeModel takes (int64s as numbers): for tests and inspection. */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  const type = modelProtoType();
  return type.toObject(type.decode(bytes), { longs: Number, arrays: true, defaults: false }) as OnnxModel;
}
