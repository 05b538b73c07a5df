import { relative, sep } from 'node:path';
import { Document } from 'yaml';
import type { BackendChoice } from '../backend/select.js';
import { stagePlacement, type Pipeline } from '../spec/pipeline.js';
import { TOOL_VERSION } from '../version.js';

// `pipeline compile FILE --target argo`: the stage graph as an Argo Workflow. One DAG task per
// stage, with `dependencies` from the graph, each a container running `pipeline run FILE --only
// STAGE` against one shared store: a task reads its inputs from the store by fingerprint and
// publishes its output there, so Argo schedules and retries while the tool stays the only thing
// that knows about fingerprints and versions. A retried or resubmitted task finds its version in
// the store and reuses it.
//
// Kubernetes' IntOrString and Quantity are written as strings ("2", "1"), as Argo's published
// schema types them and its own examples do.

export const DEFAULT_IMAGE = `tfjs-pipeline:${TOOL_VERSION}`;
const GPU_RESOURCE = 'nvidia.com/gpu';
/** Exit status 2 is bad input (a wrong file, a missing input stage): no retry can fix it. */
const RETRY_EXPRESSION = 'lastRetry.exitCode != "2"';

export interface ArgoOptions {
  /** The image every step runs: the tool, with the pipeline file and its data at the same paths. */
  image?: string;
  /** The store every step reads and publishes to (--store): one that all pods share, e.g. s3://bucket/prefix. */
  store: string;
  /** --backend for every step, instead of the file's. */
  backend?: BackendChoice;
  /** Retries of a failed step (not of a bad-input exit); default 2. */
  retries?: number;
  /** Plain environment for every step (region, endpoint: never credentials). */
  env?: Record<string, string>;
  /** A Kubernetes Secret whose keys become every step's environment (credentials). */
  secret?: string;
  /** The directory the file path is made relative to; default: the current one. */
  cwd?: string;
}

// The subset of Argo's Workflow that we write.
interface Container {
  image: string;
  command: string[];
  args: string[];
  env?: { name: string; value: string }[];
  envFrom?: { secretRef: { name: string; optional: boolean } }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface Template {
  name: string;
  dag?: { tasks: { name: string; template: string; dependencies?: string[] }[] };
  container?: Container;
  retryStrategy?: { limit: string; retryPolicy: string; expression: string; backoff: { duration: string; factor: string } };
  tolerations?: { key: string; operator: string; effect: string }[];
}
export interface ArgoWorkflow {
  apiVersion: 'argoproj.io/v1alpha1';
  kind: 'Workflow';
  metadata: { generateName: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: { entrypoint: string; templates: Template[] };
}

export function compileArgoWorkflow(pipeline: Pipeline, options: ArgoOptions): ArgoWorkflow {
  const names = argoNames(pipeline.graph.order);
  const entry = uniqueName('pipeline', new Set(names.values()));
  const file = (relative(options.cwd ?? process.cwd(), pipeline.file) || pipeline.file).split(sep).join('/');
  const env = Object.entries(options.env ?? {}).map(([name, value]) => ({ name, value }));
  const templates: Template[] = pipeline.graph.order.map((name) => {
    const stage = pipeline.stages.get(name)!;
    const { gpus, backend: stepBackend } = stagePlacement(stage, pipeline.backend, options.backend);
    const args = [
      'run', file, '--only', name, '--store', options.store,
      ...(stepBackend ? ['--backend', stepBackend] : []),
      ...pipeline.overrides.flatMap((o) => ['--set', o]),
    ];
    const requests: Record<string, string> = {};
    if (stage.resources?.cpu !== undefined) requests.cpu = String(stage.resources.cpu);
    if (stage.resources?.memory !== undefined) requests.memory = String(stage.resources.memory);
    const limits: Record<string, string> = gpus ? { [GPU_RESOURCE]: String(gpus) } : {};
    const resources = {
      ...(Object.keys(requests).length ? { requests } : {}),
      ...(Object.keys(limits).length ? { limits } : {}),
    };
    return {
      name: names.get(name)!,
      retryStrategy: {
        limit: String(options.retries ?? 2),
        retryPolicy: 'Always',
        expression: RETRY_EXPRESSION,
        backoff: { duration: '30s', factor: '2' },
      },
      container: {
        image: options.image ?? DEFAULT_IMAGE,
        command: ['npx', 'pipeline'],
        args,
        ...(env.length ? { env } : {}),
        ...(options.secret ? { envFrom: [{ secretRef: { name: options.secret, optional: true } }] } : {}),
        ...(Object.keys(resources).length ? { resources } : {}),
      },
      // GPU nodes are usually tainted so that only pods asking for a GPU land there.
      ...(gpus ? { tolerations: [{ key: GPU_RESOURCE, operator: 'Exists', effect: 'NoSchedule' }] } : {}),
    };
  });
  const tasks = pipeline.graph.order.map((name) => {
    const deps = pipeline.stages.get(name)!.deps.map((d) => names.get(d)!);
    return { name: names.get(name)!, template: names.get(name)!, ...(deps.length ? { dependencies: deps } : {}) };
  });
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Workflow',
    metadata: {
      generateName: `${kubernetesName(pipeline.name).slice(0, 50)}-`,
      // A label value ends in a letter or digit.
      labels: { 'tfjs-pipeline/pipeline': kubernetesName(pipeline.name).slice(0, 63).replace(/[^a-z0-9]+$/, '') },
      annotations: { 'tfjs-pipeline/file': file, 'tfjs-pipeline/version': TOOL_VERSION },
    },
    spec: { entrypoint: entry, templates: [{ name: entry, dag: { tasks } }, ...templates] },
  };
}

/** The workflow as YAML, with a header saying where it came from and how to submit it. */
export function argoWorkflowYaml(workflow: ArgoWorkflow, command: string): string {
  // Steps share their env list; written out in each, not as a YAML alias, for readers of the file.
  const doc = new Document(workflow, { aliasDuplicateObjects: false });
  doc.commentBefore = ` Generated by \`${command}\` (tfjs-pipeline ${TOOL_VERSION}); submit with \`argo submit <this file>\`.`;
  return doc.toString({ lineWidth: 0 });
}

/**
 * Argo names (templates, tasks) are letters, digits and "-"; stage names may also hold "_". Each
 * stage gets its name with "_" as "-", and a suffix where two would collide.
 */
function argoNames(stages: string[]): Map<string, string> {
  const taken = new Set<string>();
  const names = new Map<string, string>();
  for (const stage of stages) {
    const name = uniqueName(kubernetesName(stage), taken);
    taken.add(name);
    names.set(stage, name);
  }
  return names;
}

function kubernetesName(name: string): string {
  return name.replace(/_/g, '-').toLowerCase();
}

function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
  return name;
}

/**
 * The AWS_* variables a step is given in plain text: where the store is (region, endpoint, S3
 * options). Credentials, profiles and paths to files of this machine are `withheld`: a Kubernetes
 * Secret (or the node's role) supplies what a step needs of those.
 */
export function awsEnvironment(env: NodeJS.ProcessEnv): { pass: Record<string, string>; withheld: string[] } {
  const pass: Record<string, string> = {};
  const withheld: string[] = [];
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!name.startsWith('AWS_') || value === undefined) continue;
    if (/^AWS_(REGION|DEFAULT_REGION|ENDPOINT_URL|ENDPOINT_URL_S3|S3_[A-Z_]+|USE_FIPS_ENDPOINT|USE_DUALSTACK_ENDPOINT|RETRY_MODE|MAX_ATTEMPTS)$/.test(name)) {
      pass[name] = value;
    } else {
      withheld.push(name);
    }
  }
  return { pass, withheld };
}
