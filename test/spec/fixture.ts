// A schema shaped like the real pipeline schema (stage kinds dispatched on `uses` with if/then,
// layers on `type`, optimizer as a name or a single-key mapping) and a valid file for it, so the
// tests exercise the same schema patterns the real one uses.

export const testSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'stages'],
  properties: {
    name: { type: 'string', minLength: 1, pattern: '^[a-z0-9-]+$' },
    seed: { type: 'integer', minimum: 0 },
    backend: { enum: ['cpu', 'wasm', 'webgl', 'webgpu', 'tensorflow'] },
    data: { type: 'object', additionalProperties: { $ref: '#/$defs/dataset' } },
    stages: { type: 'object', minProperties: 1, additionalProperties: { $ref: '#/$defs/stage' } },
  },
  $defs: {
    dataset: {
      type: 'object',
      additionalProperties: false,
      required: ['format', 'path'],
      properties: {
        format: { enum: ['csv', 'idx'] },
        path: { type: 'string', minLength: 1 },
        label: { type: 'string' },
        split: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      },
    },
    stage: {
      type: 'object',
      required: ['uses'],
      properties: { uses: { enum: ['train', 'evaluate'] } },
      allOf: [
        { if: { properties: { uses: { const: 'train' } }, required: ['uses'] }, then: { $ref: '#/$defs/stage-train' } },
        { if: { properties: { uses: { const: 'evaluate' } }, required: ['uses'] }, then: { $ref: '#/$defs/stage-evaluate' } },
      ],
    },
    'stage-train': {
      type: 'object',
      additionalProperties: false,
      required: ['uses', 'data', 'model'],
      properties: {
        uses: { const: 'train' },
        needs: { $ref: '#/$defs/needs' },
        data: { type: 'string' },
        epochs: { type: 'integer', minimum: 1 },
        batchSize: { type: 'integer', minimum: 1, maximum: 65536 },
        optimizer: { $ref: '#/$defs/optimizer' },
        model: { $ref: '#/$defs/model' },
      },
    },
    'stage-evaluate': {
      type: 'object',
      additionalProperties: false,
      required: ['uses', 'model', 'data'],
      properties: {
        uses: { const: 'evaluate' },
        needs: { $ref: '#/$defs/needs' },
        model: { type: 'string' },
        data: { type: 'string' },
        metrics: { type: 'array', minItems: 1, items: { enum: ['accuracy', 'loss', 'confusion'] } },
      },
    },
    needs: { type: 'array', items: { type: 'string' }, uniqueItems: true },
    optimizer: {
      oneOf: [
        { enum: ['adam', 'sgd', 'rmsprop'] },
        {
          type: 'object',
          minProperties: 1,
          maxProperties: 1,
          additionalProperties: false,
          properties: {
            adam: { $ref: '#/$defs/optimizer-options' },
            sgd: { $ref: '#/$defs/optimizer-options' },
            rmsprop: { $ref: '#/$defs/optimizer-options' },
          },
        },
      ],
    },
    'optimizer-options': {
      type: 'object',
      additionalProperties: false,
      properties: {
        learningRate: { type: 'number', exclusiveMinimum: 0 },
        momentum: { type: 'number', minimum: 0 },
      },
    },
    model: {
      type: 'object',
      additionalProperties: false,
      required: ['layers'],
      properties: {
        inputShape: { type: 'array', items: { type: 'integer', minimum: 1 } },
        layers: { type: 'array', minItems: 1, items: { $ref: '#/$defs/layer' } },
      },
    },
    layer: {
      type: 'object',
      required: ['type'],
      properties: { type: { enum: ['dense', 'dropout', 'conv2d'] } },
      allOf: [
        { if: { properties: { type: { const: 'dense' } }, required: ['type'] }, then: { $ref: '#/$defs/layer-dense' } },
        { if: { properties: { type: { const: 'dropout' } }, required: ['type'] }, then: { $ref: '#/$defs/layer-dropout' } },
        { if: { properties: { type: { const: 'conv2d' } }, required: ['type'] }, then: { $ref: '#/$defs/layer-conv2d' } },
      ],
    },
    'layer-dense': {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'units'],
      properties: {
        type: { const: 'dense' },
        units: { type: 'integer', minimum: 1 },
        activation: { enum: ['relu', 'softmax', 'sigmoid', 'linear'] },
      },
    },
    'layer-dropout': {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'rate'],
      properties: { type: { const: 'dropout' }, rate: { type: 'number', minimum: 0, exclusiveMaximum: 1 } },
    },
    'layer-conv2d': {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'filters', 'kernelSize'],
      properties: {
        type: { const: 'conv2d' },
        filters: { type: 'integer', minimum: 1 },
        kernelSize: {
          oneOf: [
            { type: 'integer', minimum: 1 },
            { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 2, maxItems: 2 },
          ],
        },
      },
    },
  },
} as const;

/** A valid pipeline file; tests edit single lines of it. Line numbers are in the comments of tests. */
export const validYaml = `name: mnist-distill
seed: 42
backend: cpu
data:
  digits:
    format: idx
    path: data/mnist
stages:
  teacher:
    uses: train
    data: digits
    epochs: 3
    batchSize: 64
    optimizer:
      adam:
        learningRate: 0.001
    model:
      inputShape: [784]
      layers:
        - type: dense
          units: 128
          activation: relu
        - type: dropout
          rate: 0.2
        - type: dense
          units: 10
          activation: softmax
  report:
    uses: evaluate
    needs: [teacher]
    model: teacher
    data: digits
    metrics: [accuracy, loss]
`;

/** validYaml with line `n` (1-based) replaced. */
export function withLine(n: number, replacement: string): string {
  const lines = validYaml.split('\n');
  lines[n - 1] = replacement;
  return lines.join('\n');
}
