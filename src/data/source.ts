import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { InputError } from '../errors.js';
import { checkRegularFile, FileLimitError } from '../util/fs.js';
import { sha256 as sha256Hex } from '../util/hash.js';

// Reads a data file once: the same bytes feed the lineage hash and, decompressed, the parser.

// The async gunzip runs on libuv's thread pool, so decompressing several IDX files overlaps. Its
// default 16 KiB output chunks make it four times slower on the 47 MB MNIST images; 1 MiB does not.
const gunzipAsync = promisify(gunzip);
const GUNZIP_OPTIONS = { chunkSize: 1 << 20 };

export interface SourceFile {
  path: string;
  sha256: string;
  /** Size on disk (compressed, where the file is gzip). */
  bytes: number;
  /** The contents, decompressed when the file is gzip. */
  data: Buffer;
}

/** `path` as written in the pipeline file, resolved against that file's folder unless absolute. */
export function resolveDataPath(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/** Gzip is recognised by its magic bytes rather than the name, so a `.gz` that was already unpacked still reads. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Largest data file, on disk and decompressed: everything is held in memory as bytes and again as
 * float32 features, and Node cannot read a file over 2 GiB at once anyway. A gzip that inflates
 * past it (a "zip bomb", or a data set this tool cannot hold) is stopped as it inflates.
 */
export const MAX_DATA_BYTES = 2 ** 31 - 1;

const bytes = (n: number) => `${n.toLocaleString('en-US')} bytes`;

/** Refuses, before anything is read, a source that is not a regular file (a folder, a device, a pipe) or is too large. */
export async function checkSourceFile(path: string, what: string, maxBytes = MAX_DATA_BYTES): Promise<void> {
  try {
    await checkRegularFile(path, maxBytes);
  } catch (err) {
    if (!(err instanceof FileLimitError)) throw new InputError(fileErrorMessage(path, what, err), { cause: err });
    if (err.reason === 'not-a-file') {
      throw new InputError(
        err.found === 'a folder' ? `${path}: expected ${what} (a file), found a folder.` : `${path}: expected ${what}, found ${err.found}; name a regular file.`,
      );
    }
    throw new InputError(
      `${path}: ${what} is ${bytes(Number(err.found))}, over the ${bytes(maxBytes)} limit for a data file; ` +
        'use a subset of the data (the whole file is held in memory).',
    );
  }
}

export async function readSourceFile(path: string, what: string, options: { maxBytes?: number } = {}): Promise<SourceFile> {
  const maxBytes = options.maxBytes ?? MAX_DATA_BYTES;
  await checkSourceFile(path, what, maxBytes);
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (err) {
    throw new InputError(fileErrorMessage(path, what, err), { cause: err });
  }
  let data = raw;
  if (isGzip(raw)) {
    try {
      data = await gunzipAsync(raw, { ...GUNZIP_OPTIONS, maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new InputError(
          `${path}: ${what} decompresses to more than ${bytes(maxBytes)} (from ${raw.length.toLocaleString('en-US')} bytes of gzip); ` +
            'refused: a gzip bomb, or a data set too large to hold in memory: use a subset of it.',
          { cause: err },
        );
      }
      throw new InputError(
        `${path}: expected a complete gzip file, found one that does not decompress (${errorText(err)}); ` +
          `it is probably truncated or corrupt: fetch it again.`,
        { cause: err },
      );
    }
  }
  return { path, sha256: sha256Hex(raw), bytes: raw.length, data };
}

export function fileErrorMessage(path: string, what: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return `${path}: ${what} not found. Check the data set's path (relative paths start at the pipeline file's folder).`;
  if (code === 'EISDIR') return `${path}: expected ${what} (a file), found a folder.`;
  if (code === 'EACCES') return `${path}: ${what} is not readable (permission denied).`;
  return `${path}: could not read ${what}: ${errorText(err)}.`;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
