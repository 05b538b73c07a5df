import { lstat, open, rename, mkdir, readdir, rm, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, join } from 'node:path';

/** Writes a file and fsyncs it, so a rename that publishes it never exposes unflushed bytes. */
export async function writeFileSynced(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes to a temporary sibling and renames it into place: readers see the old or the new file, never half of one. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFileSynced(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    // On a full disk the partial temporary would hold on to the space that is missing.
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Every regular file under `dir`, as paths relative to it with forward slashes, sorted. */
export async function listFilesRecursive(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...(await listFilesRecursive(dir, rel)));
    else if (entry.isFile()) files.push(rel);
  }
  return files.sort();
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Why readFileLimited refused a path: callers word the message for what the file was meant to be. */
export class FileLimitError extends Error {
  constructor(
    readonly reason: 'not-a-file' | 'too-big',
    readonly path: string,
    /** too-big: the size found; not-a-file: what the path is instead ("a folder", "a device or pipe"). */
    readonly found: number | string,
  ) {
    super(reason === 'too-big' ? `${path} is ${found} bytes` : `${path} is ${found}, not a regular file`);
    this.name = 'FileLimitError';
  }
}

export function describeNonFile(s: Stats): string {
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a named pipe';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** Throws FileLimitError unless `path` is a regular file (symlinks followed) of at most `maxBytes`. */
export async function checkRegularFile(path: string, maxBytes = Number.POSITIVE_INFINITY): Promise<Stats> {
  const s = await stat(path);
  if (!s.isFile()) throw new FileLimitError('not-a-file', path, describeNonFile(s));
  if (s.size > maxBytes) throw new FileLimitError('too-big', path, s.size);
  return s;
}

/**
 * Reads a user's file, refusing before reading anything what would never end or would not fit:
 * /dev/zero and named pipes (a read that never finishes, or an open that blocks), and files over
 * `maxBytes`. Reads at most maxBytes + 1 bytes, so a file that grows meanwhile is caught too.
 */
export async function readFileLimited(path: string, maxBytes: number): Promise<Buffer> {
  // stat before open: opening a named pipe blocks until some writer opens it.
  await checkRegularFile(path, maxBytes);
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const buf = Buffer.alloc(Math.min(size, maxBytes) + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw new FileLimitError('too-big', path, Math.max(size, length));
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** Bytes of the regular files at or under `path` (symlinks not followed, so nothing outside is counted). */
export async function diskUsage(path: string): Promise<number> {
  const s = await lstat(path);
  if (!s.isDirectory()) return s.isFile() ? s.size : 0;
  let total = 0;
  for (const name of await readdir(path)) total += await diskUsage(join(path, name));
  return total;
}
