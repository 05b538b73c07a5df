// The in-memory shape every loader produces: features as one flat Float32Array per split
// (row-major, `featureShape` per sample) and integer class labels, so the train loop can stage a
// whole split on the device at once.

export interface DataSplit {
  /** count * product(featureShape) values, already normalised. */
  x: Float32Array;
  /** Class index per sample, 0 <= y < classes.length. */
  y: Int32Array;
  count: number;
}

/**
 * Constants a model needs at inference time to see inputs as it saw them in training, one per
 * feature position. Where a feature was constant in training, std is 1 and max is min + 1, so the
 * plain formulas (x - mean) / std and (x - min) / (max - min) are always safe to apply.
 */
export type Preprocessing =
  | { kind: 'none' }
  | { kind: 'scale'; scale: number }
  | { kind: 'minmax'; min: number[]; max: number[] }
  | { kind: 'standard'; mean: number[]; std: number[] };

export interface LoadedDataset {
  name: string;
  featureShape: number[];
  /** Label names in class-index order (the label encoding). */
  classes: string[];
  train: DataSplit;
  validation: DataSplit;
  test: DataSplit;
  preprocessing: Preprocessing;
  /** sha256 over the source files' bytes and the data set's resolved config (and seed). */
  hash: string;
  /** Files read, for lineage: path and sha256 of each. */
  sources: { path: string; sha256: string; bytes: number }[];
}

export type SplitSize = number; // < 1: a fraction; >= 1: a count of samples

export type Normalize = 'none' | 'minmax' | 'standard' | { scale: number };

export type MissingPolicy = 'error' | 'drop' | 'mean' | 'zero';

export interface CsvDataSpec {
  format: 'csv';
  /** Relative to the pipeline file's folder. `.gz` is decompressed. */
  path: string;
  /** First row holds column names (default true). Without it columns are named by index: "0", "1", ... */
  header?: boolean;
  /** Rows to skip before the header or the data (sklearn's files start with a summary row). */
  skipRows?: number;
  delimiter?: string;
  /** Label column, by name or 0-based index. */
  label: string | number;
  /** Feature columns by name or index; default: every column but the label. */
  features?: (string | number)[];
  /** Label names in class order; default: the sorted distinct label values. */
  classes?: string[];
  /** Reshape each sample's features, e.g. [8, 8, 1] for an image stored as a row. */
  shape?: number[];
  normalize?: Normalize;
  missing?: MissingPolicy;
  split?: { validation?: SplitSize; test?: SplitSize };
  /** Keep only this many rows (a seeded random subset), for quick runs and tests. */
  limit?: number;
}

export interface IdxDataSpec {
  format: 'idx';
  /** Folder with the four IDX files (gzip or not), relative to the pipeline file's folder or absolute. */
  path: string;
  files?: { trainImages?: string; trainLabels?: string; testImages?: string; testLabels?: string };
  classes?: string[];
  normalize?: Normalize;
  /** Validation is taken from the training files; the test split is the test files. */
  split?: { validation?: SplitSize };
  /** Seeded random subsets, e.g. {train: 2000, test: 500}: small real data for tests. */
  subset?: { train?: number; test?: number };
}

export type DataSpec = CsvDataSpec | IdxDataSpec;
