import { InputError } from '../errors.js';
import { createRng } from '../random.js';
import { parseCsv } from './csv.js';
import { canonicalJson, sha256File, sha256 as sha256Hex } from '../util/hash.js';
import { IDX_ROLES, parseIdx, resolveIdxFiles, type IdxRole } from './idx.js';
import { applyPreprocessingInPlace, checkNormalize, featureSizeOf, fitPreprocessing } from './normalize.js';
import { checkSourceFile, fileErrorMessage, readSourceFile, resolveDataPath, type SourceFile } from './source.js';
import { compose, gather, resolveSplitSize, seededSplit, seededSubset } from './split.js';
import type { CsvDataSpec, DataSpec, DataSplit, IdxDataSpec, LoadedDataset, Normalize } from './types.js';

export { applyPreprocessing } from './normalize.js';

export interface LoadOptions {
  /** The pipeline file's folder: relative data paths start here. */
  baseDir: string;
  seed: number;
}

export type DataSource = LoadedDataset['sources'][number];

// Bump when a change to the loaders changes what the same files and spec produce, so that stages
// fingerprinted against the old loader run again.
const LOADER_VERSION = 1;

const CSV_DEFAULTS = { header: true, skipRows: 0, delimiter: ',', normalize: 'none' as Normalize, missing: 'error' };
const CSV_SPLIT_DEFAULTS = { validation: 0.1, test: 0.2 };
const IDX_DEFAULTS = { normalize: { scale: 255 } as Normalize };
const IDX_SPLIT_DEFAULTS = { validation: 0.1 };

/**
 * Fingerprints a data set without parsing it: the sha256 of each source file's bytes, the spec
 * with its defaults filled in, the data set's name (it seeds the split) and the seed.
 */
export async function hashDataSource(
  name: string,
  spec: DataSpec,
  options: LoadOptions,
): Promise<{ hash: string; sources: DataSource[] }> {
  const files = await sourcePaths(name, spec, options.baseDir);
  const sources: DataSource[] = [];
  for (const path of files) {
    // Hashing streams the file: /dev/zero or a named pipe here would never finish.
    await checkSourceFile(path, `a source file of data set "${name}"`);
    try {
      sources.push({ path, ...(await sha256File(path)) });
    } catch (err) {
      throw new InputError(fileErrorMessage(path, `a source file of data set "${name}"`, err), { cause: err });
    }
  }
  return { hash: combineHash(name, spec, options.seed, sources), sources };
}

export async function loadDataset(name: string, spec: DataSpec, options: LoadOptions): Promise<LoadedDataset> {
  checkSpec(name, spec);
  if (spec.format === 'csv') return loadCsv(name, spec, options);
  return loadIdx(name, spec, options);
}

function checkSpec(name: string, spec: DataSpec): void {
  const format = (spec as { format?: unknown }).format;
  if (format !== 'csv' && format !== 'idx') {
    throw new InputError(`data set "${name}": format is ${JSON.stringify(format)}; expected "csv" or "idx".`);
  }
  if (typeof spec.path !== 'string' || spec.path === '') {
    throw new InputError(
      `data set "${name}": path is ${JSON.stringify(spec.path)}; expected the ${format === 'csv' ? 'CSV file' : 'folder of IDX files'} ` +
        `(relative to the pipeline file's folder, or absolute).`,
    );
  }
}

async function sourcePaths(name: string, spec: DataSpec, baseDir: string): Promise<string[]> {
  checkSpec(name, spec);
  const path = resolveDataPath(spec.path, baseDir);
  if (spec.format === 'csv') return [path];
  const files = await resolveIdxFiles(path, spec, name);
  return IDX_ROLES.map((role) => files[role]);
}

/**
 * The path is left out: the file's bytes already pin the data, and a project moved to another
 * folder should keep its fingerprints. Which file plays which role is kept by the sources' order.
 */
function hashableSpec(spec: DataSpec): Record<string, unknown> {
  const { path: _path, ...rest } = spec;
  if (rest.format === 'csv') {
    return { ...CSV_DEFAULTS, ...rest, split: { ...CSV_SPLIT_DEFAULTS, ...rest.split } };
  }
  const { files: _files, ...idx } = rest;
  return { ...IDX_DEFAULTS, ...idx, split: { ...IDX_SPLIT_DEFAULTS, ...idx.split } };
}

function combineHash(name: string, spec: DataSpec, seed: number, sources: DataSource[]): string {
  return sha256Hex(
    canonicalJson({
      loader: LOADER_VERSION,
      name,
      seed,
      spec: hashableSpec(spec),
      sources: sources.map((s) => ({ sha256: s.sha256, bytes: s.bytes })),
    }),
  );
}

function lineage(file: SourceFile): DataSource {
  return { path: file.path, sha256: file.sha256, bytes: file.bytes };
}

async function loadCsv(name: string, spec: CsvDataSpec, options: LoadOptions): Promise<LoadedDataset> {
  const normalize = spec.normalize ?? CSV_DEFAULTS.normalize;
  checkNormalize(normalize, name);
  const path = resolveDataPath(spec.path, options.baseDir);
  const file = await readSourceFile(path, `the CSV file of data set "${name}"`);
  const table = await parseCsv(file.data, path, spec, name);
  const featureCount = table.featureColumns.length;
  const featureShape = resolveShape(spec.shape, featureCount, path, name);

  let rows: Int32Array = Int32Array.from({ length: table.count }, (_, i) => i);
  if (spec.limit !== undefined) {
    const dropNote = table.dropped > 0 ? ` (after missing: drop left out ${table.dropped})` : '';
    rows = seededSubset(table.count, spec.limit, createRng(options.seed, `subset:${name}`), `limit${dropNote}`, name);
  }
  const total = rows.length;
  const sizes = {
    validation: resolveSplitSize(spec.split?.validation, CSV_SPLIT_DEFAULTS.validation, total, 'split.validation', name),
    test: resolveSplitSize(spec.split?.test, CSV_SPLIT_DEFAULTS.test, total, 'split.test', name),
  };
  const split = seededSplit(total, sizes, createRng(options.seed, `split:${name}`), name);
  const take = (indices: Int32Array): DataSplit => gather(table.x, table.y, featureCount, compose(rows, indices));
  const sources = [lineage(file)];
  return finish(name, spec, options, featureShape, table.classes, normalize, take(split.train), take(split.validation), take(split.test), sources);
}

function resolveShape(shape: number[] | undefined, featureCount: number, file: string, dataset: string): number[] {
  if (shape === undefined) return [featureCount];
  if (!Array.isArray(shape) || shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new InputError(`data set "${dataset}": shape is ${JSON.stringify(shape)}; expected a list of whole numbers >= 1, e.g. [8, 8, 1].`);
  }
  const product = featureSizeOf(shape);
  if (product !== featureCount) {
    throw new InputError(
      `${file}: shape ${JSON.stringify(shape)} holds ${product} values per sample, but the data set has ${featureCount} feature column${featureCount === 1 ? '' : 's'}; ` +
        `set shape to dimensions whose product is ${featureCount}, or change features.`,
    );
  }
  return [...shape];
}

async function loadIdx(name: string, spec: IdxDataSpec, options: LoadOptions): Promise<LoadedDataset> {
  const normalize = spec.normalize ?? IDX_DEFAULTS.normalize;
  checkNormalize(normalize, name);
  const dir = resolveDataPath(spec.path, options.baseDir);
  const paths = await resolveIdxFiles(dir, spec, name);
  const files = await Promise.all(IDX_ROLES.map((role) => readSourceFile(paths[role], `IDX file ${role} of data set "${name}"`)));
  const fileOf = (role: IdxRole): SourceFile => files[IDX_ROLES.indexOf(role)];

  const trainImages = parseIdx(fileOf('trainImages').data, paths.trainImages, 3);
  const trainLabels = parseIdx(fileOf('trainLabels').data, paths.trainLabels, 1);
  const testImages = parseIdx(fileOf('testImages').data, paths.testImages, 3);
  const testLabels = parseIdx(fileOf('testLabels').data, paths.testLabels, 1);
  for (const [images, labels, imagesPath, labelsPath] of [
    [trainImages, trainLabels, paths.trainImages, paths.trainLabels],
    [testImages, testLabels, paths.testImages, paths.testLabels],
  ] as const) {
    if (images.dims[0] !== labels.dims[0]) {
      throw new InputError(
        `${labelsPath}: expected one label per image of ${imagesPath} (${images.dims[0]}), found ${labels.dims[0]} labels; ` +
          `the two files do not belong together.`,
      );
    }
  }
  const [, rowsN, colsN] = trainImages.dims;
  if (testImages.dims[1] !== rowsN || testImages.dims[2] !== colsN) {
    throw new InputError(
      `${paths.testImages}: expected ${rowsN} x ${colsN} images like ${paths.trainImages}, found ${testImages.dims[1]} x ${testImages.dims[2]}.`,
    );
  }
  const classes = idxClasses(spec.classes, [
    [trainLabels.data, paths.trainLabels],
    [testLabels.data, paths.testLabels],
  ], name);

  const featureShape = [rowsN, colsN, 1];
  const featureSize = rowsN * colsN;
  // Subsets are drawn over whole files (before the validation split), so a subset of 2000 is the
  // same 2000 images whatever the validation size.
  const trainPool =
    spec.subset?.train !== undefined
      ? seededSubset(trainImages.dims[0], spec.subset.train, createRng(options.seed, `subset:${name}:train`), 'subset.train', name)
      : Int32Array.from({ length: trainImages.dims[0] }, (_, i) => i);
  const testRows =
    spec.subset?.test !== undefined
      ? seededSubset(testImages.dims[0], spec.subset.test, createRng(options.seed, `subset:${name}:test`), 'subset.test', name)
      : Int32Array.from({ length: testImages.dims[0] }, (_, i) => i);
  const validation = resolveSplitSize(spec.split?.validation, IDX_SPLIT_DEFAULTS.validation, trainPool.length, 'split.validation', name);
  const split = seededSplit(trainPool.length, { validation, test: 0 }, createRng(options.seed, `split:${name}`), name);

  const train = gather(trainImages.data, trainLabels.data, featureSize, compose(trainPool, split.train));
  const val = gather(trainImages.data, trainLabels.data, featureSize, compose(trainPool, split.validation));
  const test = gather(testImages.data, testLabels.data, featureSize, testRows);
  return finish(name, spec, options, featureShape, classes, normalize, train, val, test, files.map(lineage));
}

function idxClasses(given: string[] | undefined, labelFiles: [Uint8Array, string][], dataset: string): string[] {
  let max = 0;
  let maxFile = labelFiles[0][1];
  let maxAt = 0;
  for (const [labels, file] of labelFiles) {
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] > max) [max, maxFile, maxAt] = [labels[i], file, i];
    }
  }
  if (given === undefined) return Array.from({ length: max + 1 }, (_, i) => String(i));
  if (!Array.isArray(given) || given.length === 0 || given.some((c) => typeof c !== 'string')) {
    throw new InputError(`data set "${dataset}": classes is ${JSON.stringify(given)}; expected a list of label names, one per class index.`);
  }
  if (max >= given.length) {
    throw new InputError(
      `${maxFile}: label ${maxAt} (0-based) is ${max}, but classes names only ${given.length} classes (0..${given.length - 1}); ` +
        `add the missing names to classes in data set "${dataset}".`,
    );
  }
  return [...given];
}

function finish(
  name: string,
  spec: DataSpec,
  options: LoadOptions,
  featureShape: number[],
  classes: string[],
  normalize: Normalize,
  train: DataSplit,
  validation: DataSplit,
  test: DataSplit,
  sources: DataSource[],
): LoadedDataset {
  const featureSize = featureSizeOf(featureShape);
  const preprocessing = fitPreprocessing(normalize, train.x, featureSize, name);
  for (const part of [train, validation, test]) applyPreprocessingInPlace(part.x, featureSize, preprocessing);
  return {
    name,
    featureShape,
    classes,
    train,
    validation,
    test,
    preprocessing,
    hash: combineHash(name, spec, options.seed, sources),
    sources,
  };
}
