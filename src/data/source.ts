import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { InputError } from '../errors.js';
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

export async function readSourceFile(path: string, what: string): Promise<SourceFile> {
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (err) {
    throw new InputError(fileErrorMessage(path, what, err), { cause: err });
  }
  let data = raw;
  if (isGzip(raw)) {
    try {
      data = await gunzipAsync(raw, GUNZIP_OPTIONS);
    } catch (err) {
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
