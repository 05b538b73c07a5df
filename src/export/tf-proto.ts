import protobuf from 'protobufjs';

// The subset of TensorFlow's protos that a frozen GraphDef and a SavedModel need, as protobufjs
// reflection JSON, written from tensorflow/core/framework/{graph,node_def,attr_value,tensor,
// tensor_shape,types,versions}.proto and tensorflow/core/protobuf/{meta_graph,saved_model}.proto.
// Field numbers are the wire format and must match those files; field names are only the keys of
// the JS objects, camelCase, which is also the spelling of TensorFlow's (and tfjs-converter's)
// JSON mapping: the JSON form of a GraphDef below is exactly what a graph-model model.json holds as
// modelTopology. Fields we never write are left out; decoders skip unknown fields.
//
// All of these files are proto3: a scalar equal to its zero value is not written, repeated
// scalars are packed, and members of a oneof (AttrValue's value) are written even when zero, so
// `{b: false}` survives a round trip.
//
// The JSON form follows protobuf's JSON mapping: int64 as decimal strings, enums by name, bytes as
// base64 (so an AttrValue's `s: "U0FNRQ=="` is "SAME"; tfjs-converter base64-decodes it).

/** types.proto DataType, the values a reader may meet in what we write or decode. */
export const DATA_TYPES = {
  DT_INVALID: 0,
  DT_FLOAT: 1,
  DT_DOUBLE: 2,
  DT_INT32: 3,
  DT_UINT8: 4,
  DT_INT16: 5,
  DT_INT8: 6,
  DT_STRING: 7,
  DT_COMPLEX64: 8,
  DT_INT64: 9,
  DT_BOOL: 10,
  DT_QINT8: 11,
  DT_QUINT8: 12,
  DT_QINT32: 13,
  DT_BFLOAT16: 14,
  DT_QINT16: 15,
  DT_QUINT16: 16,
  DT_UINT16: 17,
  DT_COMPLEX128: 18,
  DT_HALF: 19,
  DT_RESOURCE: 20,
  DT_VARIANT: 21,
  DT_UINT32: 22,
  DT_UINT64: 23,
} as const;
export type DataTypeName = keyof typeof DATA_TYPES;

export interface TensorShapeObject {
  /** Sizes as int64 decimal strings; "-1" is an unknown size. A scalar has no dims. */
  dim?: { size?: string; name?: string }[];
  unknownRank?: boolean;
}

export interface TensorObject {
  dtype: DataTypeName;
  tensorShape: TensorShapeObject;
  versionNumber?: number;
  /** Little-endian element bytes, row-major: base64 in the JSON form, or bytes when encoding. */
  tensorContent?: string | Uint8Array;
  floatVal?: number[];
  intVal?: number[];
  int64Val?: string[];
  halfVal?: number[];
}

export interface ListValueObject {
  /** Strings as base64 of their bytes. */
  s?: string[];
  i?: string[];
  f?: number[];
  b?: boolean[];
  type?: DataTypeName[];
  shape?: TensorShapeObject[];
  tensor?: TensorObject[];
}

/** Exactly one member is set (proto oneof). */
export interface AttrValueObject {
  s?: string;
  i?: string;
  f?: number;
  b?: boolean;
  type?: DataTypeName;
  shape?: TensorShapeObject;
  tensor?: TensorObject;
  list?: ListValueObject;
  placeholder?: string;
}

export interface NodeDefObject {
  name: string;
  op: string;
  input?: string[];
  device?: string;
  attr?: Record<string, AttrValueObject>;
}

export interface VersionDefObject {
  producer?: number;
  minConsumer?: number;
  badConsumers?: number[];
}

export interface GraphDefObject {
  node: NodeDefObject[];
  /** FunctionDefLibrary: we never write functions, but TensorFlow's writers (and the converter) emit it empty. */
  library?: Record<string, never>;
  versions?: VersionDefObject;
}

export interface TensorInfoObject {
  name: string;
  dtype: DataTypeName;
  tensorShape?: TensorShapeObject;
}

export interface SignatureDefObject {
  inputs?: Record<string, TensorInfoObject>;
  outputs?: Record<string, TensorInfoObject>;
  methodName?: string;
}

export interface MetaGraphDefObject {
  metaInfoDef?: {
    metaGraphVersion?: string;
    tags?: string[];
    tensorflowVersion?: string;
    tensorflowGitVersion?: string;
    strippedDefaultAttrs?: boolean;
  };
  graphDef?: GraphDefObject;
  signatureDef?: Record<string, SignatureDefObject>;
}

export interface SavedModelObject {
  /** int64: a decimal string in the JSON form. */
  savedModelSchemaVersion?: string;
  metaGraphs?: MetaGraphDefObject[];
}

const field = (type: string, id: number) => ({ type, id });
const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });
const map = (keyType: string, type: string, id: number) => ({ keyType, type, id });

const TF_SCHEMA = {
  nested: {
    tensorflow: {
      nested: {
        DataType: { values: DATA_TYPES },
        // tensor_shape.proto
        TensorShapeProto: {
          edition: 'proto3',
          fields: { dim: repeated('Dim', 2), unknownRank: field('bool', 3) },
          nested: { Dim: { edition: 'proto3', fields: { size: field('int64', 1), name: field('string', 2) } } },
        },
        // tensor.proto
        TensorProto: {
          edition: 'proto3',
          fields: {
            dtype: field('DataType', 1),
            tensorShape: field('TensorShapeProto', 2),
            versionNumber: field('int32', 3),
            tensorContent: field('bytes', 4),
            floatVal: repeated('float', 5),
            doubleVal: repeated('double', 6),
            intVal: repeated('int32', 7),
            stringVal: repeated('bytes', 8),
            int64Val: repeated('int64', 10),
            boolVal: repeated('bool', 11),
            halfVal: repeated('int32', 13),
          },
        },
        // attr_value.proto
        AttrValue: {
          edition: 'proto3',
          oneofs: { value: { oneof: ['s', 'i', 'f', 'b', 'type', 'shape', 'tensor', 'list', 'func', 'placeholder'] } },
          fields: {
            list: field('ListValue', 1),
            s: field('bytes', 2),
            i: field('int64', 3),
            f: field('float', 4),
            b: field('bool', 5),
            type: field('DataType', 6),
            shape: field('TensorShapeProto', 7),
            tensor: field('TensorProto', 8),
            placeholder: field('string', 9),
            func: field('NameAttrList', 10),
          },
          nested: {
            ListValue: {
              edition: 'proto3',
              fields: {
                s: repeated('bytes', 2),
                i: repeated('int64', 3),
                f: repeated('float', 4),
                b: repeated('bool', 5),
                type: repeated('DataType', 6),
                shape: repeated('TensorShapeProto', 7),
                tensor: repeated('TensorProto', 8),
                func: repeated('NameAttrList', 9),
              },
            },
          },
        },
        NameAttrList: {
          edition: 'proto3',
          fields: { name: field('string', 1), attr: map('string', 'AttrValue', 2) },
        },
        // node_def.proto
        NodeDef: {
          edition: 'proto3',
          fields: {
            name: field('string', 1),
            op: field('string', 2),
            input: repeated('string', 3),
            device: field('string', 4),
            attr: map('string', 'AttrValue', 5),
          },
        },
        // versions.proto
        VersionDef: {
          edition: 'proto3',
          fields: { producer: field('int32', 1), minConsumer: field('int32', 2), badConsumers: repeated('int32', 3) },
        },
        // function.proto: only its presence; our graphs call no functions.
        FunctionDefLibrary: { edition: 'proto3', fields: {} },
        // graph.proto
        GraphDef: {
          edition: 'proto3',
          fields: {
            node: repeated('NodeDef', 1),
            library: field('FunctionDefLibrary', 2),
            versions: field('VersionDef', 4),
          },
        },
        // meta_graph.proto
        TensorInfo: {
          edition: 'proto3',
          oneofs: { encoding: { oneof: ['name'] } },
          fields: { name: field('string', 1), dtype: field('DataType', 2), tensorShape: field('TensorShapeProto', 3) },
        },
        SignatureDef: {
          edition: 'proto3',
          fields: {
            inputs: map('string', 'TensorInfo', 1),
            outputs: map('string', 'TensorInfo', 2),
            methodName: field('string', 3),
          },
        },
        MetaGraphDef: {
          edition: 'proto3',
          fields: {
            metaInfoDef: field('MetaInfoDef', 1),
            graphDef: field('GraphDef', 2),
            signatureDef: map('string', 'SignatureDef', 5),
          },
          nested: {
            MetaInfoDef: {
              edition: 'proto3',
              fields: {
                metaGraphVersion: field('string', 1),
                tags: repeated('string', 4),
                tensorflowVersion: field('string', 5),
                tensorflowGitVersion: field('string', 6),
                strippedDefaultAttrs: field('bool', 7),
              },
            },
          },
        },
        // saved_model.proto
        SavedModel: {
          edition: 'proto3',
          fields: { savedModelSchemaVersion: field('int64', 1), metaGraphs: repeated('MetaGraphDef', 2) },
        },
      },
    },
  },
};

let root: protobuf.Root | undefined;

/** A message type of the schema above, e.g. tfType('GraphDef') (the schema is built once, on first use). */
export function tfType(name: 'GraphDef' | 'NodeDef' | 'AttrValue' | 'TensorProto' | 'TensorShapeProto' | 'SavedModel' | 'MetaGraphDef' | 'SignatureDef'): protobuf.Type {
  root ??= protobuf.Root.fromJSON(TF_SCHEMA as protobuf.INamespace);
  return root.lookupType(`tensorflow.${name}`);
}

/** protobuf's JSON mapping: int64 as strings, enums by name, bytes as base64, nothing that is unset. */
export const JSON_FORM: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String, defaults: false, arrays: false };

/** Encodes a message given in the JSON form (bytes fields may also be Uint8Arrays). */
export function encodeMessage(type: protobuf.Type, object: object): Uint8Array {
  const message = type.fromObject(object);
  const error = type.verify(message);
  if (error) throw new Error(`invalid ${type.fullName.slice(1)}: ${error}`);
  return type.encode(message).finish();
}

/** Decodes bytes into the JSON form. */
export function decodeMessage<T>(type: protobuf.Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), JSON_FORM) as T;
}
