import { open, rename, mkdir, readdir, stat } from 'node:fs/promises';
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
  await writeFileSynced(tmp, data);
  await rename(tmp, path);
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
