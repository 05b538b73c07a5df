import { dirname, resolve } from 'node:path';
import { parseStoreSpec, storeSpecProblem, type StoreSpec } from '../artifacts/store-spec.js';
import type { BackendChoice } from '../backend/select.js';
import type { DataSpec } from '../data/types.js';
import { buildStageGraph, type StageGraph } from '../engine/graph.js';
import { getStageKind } from '../stages/registry.js';
import { registerAllStageKinds } from '../stages/register-all.js';
import type { StageKind } from '../stages/types.js';
import { SpecError, type Diagnostic } from './diagnostics.js';
import type { SpecDocument } from './document.js';
import { loadSpec } from './load.js';
import { pipelineSchema } from './schema.js';

// The one entry point from a pipeline file to a checked, typed pipeline: parse (positions kept),
// apply --set, validate against the schema, resolve each stage's defaults, then check the graph
// (dangling references, cycles). Every problem found becomes a diagnostic with file:line:col.

export interface ResolvedStage {
  name: string;
  kind: StageKind;
  /** Options with defaults filled in (what the fingerprint covers). */
  config: Record<string, unknown>;
  deps: string[];
  data: string[];
  /** `resources:` as written: what a cluster step of this stage asks for (engine/argo.ts). */
  resources?: StageResources;
}

/** Backends that need a GPU: a stage on one goes to a GPU machine (an Argo GPU step, the gpu queue). */
export const GPU_BACKENDS: readonly BackendChoice[] = ['webgpu', 'tensorflow-gpu'];

export interface StagePlacement {
  /** GPUs the stage asks for: its `resources.gpu`, else 1 on a GPU backend. */
  gpus: number;
  /** The --backend a machine runs it with: undefined for the file's (or the given) one. */
  backend?: BackendChoice;
}

/**
 * Where a stage runs, for executors that place stages on machines (Argo, the queue). A CPU stage of
 * a GPU pipeline (`resources: {gpu: 0}`) runs on `auto`: its machine cannot load the GPU backend.
 */
export function stagePlacement(stage: ResolvedStage, fileBackend: BackendChoice, backend?: BackendChoice): StagePlacement {
  const chosen = backend ?? fileBackend;
  const gpus = stage.resources?.gpu ?? (GPU_BACKENDS.includes(chosen) ? 1 : 0);
  return { gpus, backend: gpus === 0 && GPU_BACKENDS.includes(chosen) ? 'auto' : backend };
}

/** Where a result is computed does not change it, so these stay out of the fingerprint. */
export interface StageResources {
  gpu?: number;
  cpu?: number | string;
  memory?: number | string;
}

export interface Pipeline {
  file: string;
  baseDir: string;
  name: string;
  seed: number;
  backend: BackendChoice;
  /** The file's `store:`, when it has one (--store wins over it). */
  store?: StoreSpec;
  data: Record<string, DataSpec>;
  stages: Map<string, ResolvedStage>;
  graph: StageGraph;
  overrides: string[];
  doc: SpecDocument;
}

interface RawPipeline {
  name: string;
  seed?: number;
  backend?: BackendChoice;
  store?: string;
  data?: Record<string, DataSpec>;
  stages: Record<string, { uses: string; description?: string; resources?: StageResources } & Record<string, unknown>>;
}

/**
 * `text`, when given, is the file's content read elsewhere (a queue worker gets it in the job):
 * relative paths in it still resolve against `file`'s folder.
 */
export async function loadPipeline(file: string, sets: string[] = [], text?: string): Promise<Pipeline> {
  registerAllStageKinds();
  const doc = await loadSpec(file, { schema: pipelineSchema(), sets, text });
  const raw = doc.data as RawPipeline;
  const storeProblem = raw.store === undefined ? undefined : storeSpecProblem(raw.store);
  if (storeProblem) throw new SpecError([{ ...doc.positionOf(['store']), path: 'store', message: storeProblem }], doc.file);
  const data = raw.data ?? {};
  const stages = new Map<string, ResolvedStage>();
  const dataOf = (name: string, seen = new Set<string>()): string | undefined => {
    const stage = raw.stages[name];
    if (!stage || seen.has(name)) return undefined;
    seen.add(name);
    if (typeof stage.data === 'string') return stage.data;
    const upstream = stage.from ?? stage.teacher;
    return typeof upstream === 'string' ? dataOf(upstream, seen) : undefined;
  };
  for (const [name, stage] of Object.entries(raw.stages)) {
    const { uses, description: _description, resources, ...options } = stage;
    const kind = getStageKind(uses);
    const config = kind.resolve(options, { pipeline: raw.name, dataOf });
    const inputs = kind.inputs(config);
    stages.set(name, { name, kind, config, deps: inputs.stages, data: inputs.data, ...(resources ? { resources } : {}) });
  }
  const { graph, problems } = buildStageGraph([...stages.values()], Object.keys(data));
  if (!graph) {
    const diagnostics: Diagnostic[] = problems.map((p) => {
      const raw_ = raw.stages[p.stage];
      const key = Object.keys(raw_).find((k) => raw_[k] === p.reference) ?? 'uses';
      const path = ['stages', p.stage, key];
      return { ...doc.positionOf(path), path: path.join('.'), message: p.message };
    });
    throw new SpecError(diagnostics, doc.file);
  }
  const baseDir = dirname(resolve(doc.file));
  return {
    file: doc.file,
    baseDir,
    name: raw.name,
    seed: raw.seed ?? 42,
    backend: raw.backend ?? 'auto',
    store: raw.store === undefined ? undefined : parseStoreSpec(raw.store, `${doc.file}: store`, baseDir),
    data,
    stages,
    graph,
    overrides: doc.overrides,
    doc,
  };
}
