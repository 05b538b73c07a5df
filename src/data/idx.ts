import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import type { IdxDataSpec } from './types.js';

// IDX (the MNIST format): a 4-byte magic number 0x0000 TT NN (TT: element type, 0x08 for uint8;
// NN: number of dimensions), NN big-endian uint32 sizes, then the elements row-major.

export type IdxRole = 'trainImages' | 'trainLabels' | 'testImages' | 'testLabels';
export const IDX_ROLES: IdxRole[] = ['trainImages', 'trainLabels', 'testImages', 'testLabels'];

export const DEFAULT_IDX_FILES: Record<IdxRole, string> = {
  trainImages: 'train-images-idx3-ubyte.gz',
  trainLabels: 'train-labels-idx1-ubyte.gz',
  testImages: 't10k-images-idx3-ubyte.gz',
  testLabels: 't10k-labels-idx1-ubyte.gz',
};

const FASHION_DIR = '/usr/share/datasets/fashion-mnist';
const UINT8 = 0x08;

export interface IdxArray {
  dims: number[];
  /** The elements, a view into the decompressed file (no copy). */
  data: Uint8Array;
}

/** Checks magic, dimensions and length; `ndims` is 1 for labels and 3 for images. */
export function parseIdx(buf: Uint8Array, file: string, ndims: 1 | 3): IdxArray {
  const expectedMagic = (UINT8 << 8) | ndims;
  const kind = ndims === 1 ? 'IDX labels: uint8, 1-D' : 'IDX images: uint8, 3-D';
  if (buf.length < 4) {
    throw new InputError(`${file}: expected an IDX file (${kind}), found only ${buf.length} bytes, too few for its header; fetch the file again.`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    const other = ndims === 1 ? 0x803 : 0x801;
    const hint =
      magic === other
        ? ` That is the magic of ${ndims === 1 ? 'an image' : 'a label'} file: the files option likely swaps images and labels.`
        : ' The file is not IDX, or not uint8 IDX of that rank; check that the path names the right file.';
    throw new InputError(`${file}: expected IDX magic number ${hex(expectedMagic)} (${kind}), found ${hex(magic)}.${hint}`);
  }
  const headerBytes = 4 + 4 * ndims;
  if (buf.length < headerBytes) {
    throw new InputError(`${file}: truncated: expected a ${headerBytes}-byte IDX header, found ${buf.length} bytes; fetch the file again.`);
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const elements = dims.reduce((a, b) => a * b, 1);
  const expected = headerBytes + elements;
  if (buf.length !== expected) {
    const found = buf.length < expected ? `only ${buf.length} bytes: it is truncated` : `${buf.length} bytes: ${buf.length - expected} more than that`;
    throw new InputError(
      `${file}: its header declares ${dims.join(' x ')} uint8 values, so expected ${expected} bytes (decompressed), ` +
        `found ${found}; fetch the file again.`,
    );
  }
  return { dims, data: buf.subarray(headerBytes) };
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/**
 * Where each of the four files is. A default name ending in .gz also matches the same name
 * without it (some mirrors ship them unpacked); a name given in `files` is taken as written.
 */
export async function resolveIdxFiles(dir: string, spec: IdxDataSpec, dataset: string): Promise<Record<IdxRole, string>> {
  const out = {} as Record<IdxRole, string>;
  const missing: string[] = [];
  for (const role of IDX_ROLES) {
    const given = spec.files?.[role];
    const candidates = given !== undefined ? [given] : [DEFAULT_IDX_FILES[role], DEFAULT_IDX_FILES[role].replace(/\.gz$/, '')];
    let found: string | undefined;
    for (const name of candidates) {
      const path = join(dir, name);
      if (await isFile(path)) {
        found = path;
        break;
      }
    }
    if (found) out[role] = found;
    else missing.push(`${role}: ${candidates.join(' or ')}`);
  }
  if (missing.length > 0) throw await missingFilesError(dir, missing, dataset);
  return out;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function missingFilesError(dir: string, missing: string[], dataset: string): Promise<InputError> {
  let present: string;
  try {
    const names = (await readdir(dir)).sort();
    present = names.length === 0 ? 'the folder is empty' : `the folder holds ${names.slice(0, 12).join(', ')}${names.length > 12 ? ', ...' : ''}`;
  } catch {
    present = 'the folder does not exist';
  }
  const fashion =
    dir === FASHION_DIR || dir.startsWith(`${FASHION_DIR}/`)
      ? ` On Debian and Ubuntu, \`apt-get install dataset-fashion-mnist\` installs the Fashion-MNIST files in ${FASHION_DIR}.`
      : '';
  return new InputError(
    `data set "${dataset}": expected the IDX files in ${dir}, but ${missing.length === 1 ? 'one is' : `${missing.length} are`} missing ` +
      `(${missing.join('; ')}); ${present}. Set path to the folder that holds them, or name them with files.` +
      `{trainImages, trainLabels, testImages, testLabels}.${fashion}`,
  );
}
