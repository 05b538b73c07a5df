// Optimizers and losses are written the same way in a pipeline file: a bare name (`adam`) or a
// mapping of one name to its parameters (`{adam: {learningRate: 0.001}}`).

type JsonSchema = Record<string, unknown>;

export type NamedChoice<Name extends string, Options> = Name | Partial<Record<Name, Options | null>>;

export function parseNamedChoice<Name extends string, Options>(
  spec: NamedChoice<Name, Options>,
): { name: Name; options: Partial<Options> } {
  if (typeof spec === 'string') return { name: spec, options: {} };
  const [name, options] = Object.entries(spec)[0] as [Name, Options | null];
  return { name, options: options ?? {} };
}

/** JSON Schema of a NamedChoice: `options[name]` lists each name's parameters. */
export function namedChoiceSchema(description: string, options: Record<string, Record<string, JsonSchema>>): JsonSchema {
  const names = Object.keys(options);
  return {
    description,
    oneOf: [
      { type: 'string', enum: names },
      {
        type: 'object',
        minProperties: 1,
        maxProperties: 1,
        properties: Object.fromEntries(
          names.map((n) => [n, { type: ['object', 'null'], properties: options[n], additionalProperties: false }]),
        ),
        additionalProperties: false,
      },
    ],
  };
}
