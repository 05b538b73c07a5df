import type * as tf from '@tensorflow/tfjs';
import type { StoredVersion } from '../artifacts/store.js';
import type { BackendSelection } from '../backend/select.js';
import type { LoadedDataset } from '../data/types.js';
import type { CheckpointSlot } from '../train/checkpoint.js';
import type { TrainingObserver } from '../train/progress.js';

// One interface for every stage kind (train, evaluate, distill, ...): each file under src/stages/
// exports one StageKind, and register-all.ts registers them. The engine knows nothing else of a kind.

export type JsonSchema = Record<string, unknown>;

export interface StageInputs {
  /** Upstream stages whose outputs this stage reads. */
  stages: string[];
  /** Data sets (keys of the pipeline's `data`) this stage reads. */
  data: string[];
}

/** A model-producing upstream stage as a downstream stage sees it. */
export interface StageInput {
  version: StoredVersion;
  loadModel(): Promise<tf.LayersModel>;
  /** The stage's metrics.json. */
  metrics: Record<string, unknown>;
}

export interface StageContext {
  pipeline: string;
  stage: string;
  seed: number;
  /** The pipeline file's folder: relative paths in options start here. */
  baseDir: string;
  backend: BackendSelection;
  /** The (temporary) folder that becomes this stage's version when run returns. */
  outDir: string;
  data(name: string): Promise<LoadedDataset>;
  input(stage: string): Promise<StageInput>;
  observer: TrainingObserver;
  /** True once the user asked to stop (Ctrl-C); long loops check it between batches. */
  shouldStop(): boolean;
  /**
   * Where a training loop of the stage keeps its epoch checkpoint (`name`: which loop, e.g. distill's
   * "baseline" and "student"), resumed by the next run of the same stage config.
   */
  checkpoint(name: string): CheckpointSlot;
}

export interface StageResult {
  /** Written to metrics.json. */
  metrics: Record<string, unknown>;
  /** A few numbers for the run record and the summary line, e.g. {test_accuracy: 0.97}. */
  headline: Record<string, number>;
}

/** What a kind's publish step gets: where the store is, and a place to say what it did. */
export interface PublishContext {
  pipeline: string;
  stage: string;
  storeRoot: string;
  baseDir: string;
  observer: TrainingObserver;
}

/** What the engine can tell a kind about the rest of the pipeline when it resolves defaults. */
export interface ResolveContext {
  /** The pipeline's name. */
  pipeline: string;
  /** The data set a stage trained on, following `from` links upstream. */
  dataOf(stage: string): string | undefined;
}

export interface StageKind<Options extends Record<string, unknown> = Record<string, unknown>> {
  kind: string;
  description: string;
  /** JSON Schema properties of the options besides `uses`; required keys. */
  options: Record<string, JsonSchema>;
  required: string[];
  /** Options with every default filled in: what the fingerprint covers and the manifest records. */
  resolve(options: Options, ctx: ResolveContext): Options;
  inputs(resolved: Options): StageInputs;
  /**
   * Files outside the store the stage reads (e.g. a starting model.json and its shards), absolute.
   * Their contents go into the fingerprint, so editing such a file invalidates the cached output.
   */
  externalFiles?(resolved: Options, baseDir: string): Promise<string[]>;
  run(ctx: StageContext, resolved: Options): Promise<StageResult>;
  /**
   * After the version is in the store, run now or reused from the cache: copies it where its
   * consumers look (export: TensorFlow Serving's layout). Idempotent; returns where it went.
   */
  publish?(version: StoredVersion, resolved: Options, ctx: PublishContext): Promise<string>;
}
