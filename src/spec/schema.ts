import { BACKEND_CHOICES } from '../backend/select.js';
import { listStageKinds } from '../stages/registry.js';
import type { JsonSchema } from '../stages/types.js';

// The pipeline file's JSON Schema, assembled from the registered stage kinds so a new kind brings
// its own options. Stage kinds, layer types and data formats are discriminated with if/then on
// `uses`/`type`/`format`, which gives editors completion per kind and keeps errors about one branch.
// Published as pipelines/pipeline.schema.json (a test keeps the file in step with this code).

export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]*$';
const NAME_MESSAGE = 'a name of letters, digits, "_" and "-" (it names a folder in the artifact store)';

const splitSize: JsonSchema = {
  description: 'a fraction (< 1) or a count of samples (>= 1)',
  type: 'number',
  minimum: 0,
};

const normalize: JsonSchema = {
  description: 'feature scaling, computed on the training split and stored with the model',
  oneOf: [
    { enum: ['none', 'minmax', 'standard'] },
    {
      type: 'object',
      properties: { scale: { type: 'number', exclusiveMinimum: 0 } },
      required: ['scale'],
      additionalProperties: false,
    },
  ],
};

const column: JsonSchema = { type: ['string', 'integer'], description: 'a column name or 0-based index' };

const DATA_FORMATS: Record<string, { properties: Record<string, JsonSchema>; required: string[] }> = {
  csv: {
    properties: {
      path: { type: 'string', minLength: 1, description: "relative to the pipeline file's folder; .gz is read too" },
      header: { type: 'boolean', default: true },
      skipRows: { type: 'integer', minimum: 0 },
      delimiter: { type: 'string', minLength: 1, maxLength: 1 },
      label: column,
      features: { type: 'array', items: column, minItems: 1 },
      classes: { type: 'array', items: { type: 'string' }, minItems: 2 },
      shape: { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 1 },
      normalize,
      missing: { enum: ['error', 'drop', 'mean', 'zero'], default: 'error' },
      split: {
        type: 'object',
        properties: { validation: splitSize, test: splitSize },
        additionalProperties: false,
      },
      limit: { type: 'integer', minimum: 1 },
    },
    required: ['path', 'label'],
  },
  idx: {
    properties: {
      path: { type: 'string', minLength: 1, description: 'folder holding the IDX files (gzip or not)' },
      files: {
        type: 'object',
        properties: {
          trainImages: { type: 'string' },
          trainLabels: { type: 'string' },
          testImages: { type: 'string' },
          testLabels: { type: 'string' },
        },
        additionalProperties: false,
      },
      classes: { type: 'array', items: { type: 'string' }, minItems: 2 },
      normalize,
      split: { type: 'object', properties: { validation: splitSize }, additionalProperties: false },
      subset: {
        type: 'object',
        properties: { train: { type: 'integer', minimum: 1 }, test: { type: 'integer', minimum: 1 } },
        additionalProperties: false,
      },
    },
    required: ['path'],
  },
};

function discriminated(key: string, branches: Record<string, { properties: Record<string, JsonSchema>; required: string[] }>, common: Record<string, JsonSchema> = {}): JsonSchema {
  const names = Object.keys(branches);
  return {
    type: 'object',
    required: [key],
    properties: { [key]: { enum: names } },
    allOf: names.map((name) => ({
      if: { properties: { [key]: { const: name } }, required: [key] },
      then: {
        properties: { [key]: { const: name }, ...common, ...branches[name].properties },
        required: branches[name].required,
        additionalProperties: false,
      },
    })),
  };
}

/** A Kubernetes quantity: 2, 0.5, "500m", "4Gi", "1e3". */
const QUANTITY_PATTERN = '^[0-9]+(\\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$';

const quantity = (what: string): JsonSchema => ({
  description: `${what}: a number, or a Kubernetes quantity such as "500m" or "4Gi"`,
  oneOf: [
    { type: 'number', exclusiveMinimum: 0 },
    { type: 'string', pattern: QUANTITY_PATTERN, errorMessage: 'a Kubernetes quantity such as "500m", "4Gi" or "4G"' },
  ],
});

/** What one step of a stage asks of a cluster node (`pipeline compile`); not in the fingerprint. */
const stageResources: JsonSchema = {
  description: 'what a step running this stage asks of a cluster node (pipeline compile --target argo); not part of the fingerprint',
  type: 'object',
  properties: {
    gpu: {
      type: 'integer',
      minimum: 0,
      maximum: 64,
      description: 'GPUs (nvidia.com/gpu); default: 1 when the backend is webgpu or tensorflow-gpu, else 0',
    },
    cpu: quantity('CPU cores requested'),
    memory: quantity('memory requested, in bytes'),
  },
  additionalProperties: false,
};

// Built once per set of registered kinds: the validator compiles once per schema object (most of a
// second for this one), so a fresh object per call recompiled it for every file loaded.
let built: { kinds: number; schema: JsonSchema } | undefined;

export function pipelineSchema(): JsonSchema {
  const kinds = listStageKinds().length;
  if (built?.kinds !== kinds) built = { kinds, schema: buildPipelineSchema() };
  return built.schema;
}

function buildPipelineSchema(): JsonSchema {
  const stageBranches = Object.fromEntries(
    listStageKinds().map((k) => [k.kind, { properties: k.options, required: k.required }]),
  );
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'tfjs-pipeline pipeline file',
    type: 'object',
    required: ['name', 'stages'],
    additionalProperties: false,
    properties: {
      $schema: { type: 'string' },
      name: {
        type: 'string',
        pattern: NAME_PATTERN,
        errorMessage: 'a name of letters, digits, "_" and "-" (it names a folder in the artifact store)',
        description: 'names the folder of this pipeline in the artifact store',
      },
      description: { type: 'string' },
      seed: { type: 'integer', minimum: 0, maximum: 4294967295, default: 42 },
      backend: { enum: [...BACKEND_CHOICES], default: 'auto' },
      store: {
        type: 'string',
        minLength: 1,
        description: "where stage versions are stored: a folder (relative to this file) or s3://bucket/prefix, cached in --cache; --store overrides it",
      },
      data: {
        type: 'object',
        propertyNames: { pattern: NAME_PATTERN, errorMessage: NAME_MESSAGE },
        additionalProperties: discriminated('format', DATA_FORMATS),
      },
      stages: {
        type: 'object',
        minProperties: 1,
        propertyNames: { pattern: NAME_PATTERN, errorMessage: NAME_MESSAGE },
        additionalProperties: discriminated('uses', stageBranches, { description: { type: 'string' }, resources: stageResources }),
      },
    },
  };
}
