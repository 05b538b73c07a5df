import { storeText } from './commands.js';
import { writeFile } from 'node:fs/promises';
import type { BackendChoice } from '../backend/select.js';
import { argoWorkflowYaml, awsEnvironment, compileArgoWorkflow } from '../engine/argo.js';
import { EXIT_OK } from '../errors.js';
import { loadPipeline } from '../spec/pipeline.js';
import { shellQuote } from '../util/text.js';

// `pipeline compile FILE --target argo [-o out.yaml]`: the policy is in engine/argo.ts; this reads
// the environment for it and writes the YAML.

export interface CompileArgs {
  file: string;
  set: string[];
  store?: string;
  target: 'argo';
  output?: string;
  image?: string;
  backend?: BackendChoice;
  retries: number;
  secret?: string;
}

export async function compileCommand(args: CompileArgs): Promise<number> {
  const pipeline = await loadPipeline(args.file, args.set);
  const store = storeText(args.store, pipeline);
  const aws = awsEnvironment(process.env);
  const warn = (text: string) => process.stderr.write(`warning: ${text}\n`);
  if (!store.includes('://')) {
    warn(
      `--store ${store} is a folder inside each step's container, so no step sees another's output: ` +
        'give every step one shared store, e.g. --store s3://bucket/prefix',
    );
  }
  if (aws.withheld.length) {
    warn(`${aws.withheld.join(', ')} not written into the workflow: steps get credentials from --secret ${args.secret ?? 'NAME'} or the node's role`);
  }
  const workflow = compileArgoWorkflow(pipeline, {
    store,
    image: args.image,
    backend: args.backend,
    retries: args.retries,
    env: aws.pass,
    secret: args.secret,
  });
  const command = ['pipeline', ...process.argv.slice(2)].map(shellQuote).join(' ');
  const yaml = argoWorkflowYaml(workflow, command);
  if (args.output) {
    await writeFile(args.output, yaml);
    process.stdout.write(`${args.output}: Argo Workflow "${workflow.metadata.generateName}" with ${pipeline.stages.size} steps; submit with \`argo submit ${shellQuote(args.output)}\`\n`);
  } else {
    process.stdout.write(yaml);
  }
  return EXIT_OK;
}
