import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { ROOT, fixture, tempDir } from '../helpers.js';

/**
 * The digits-compress fixture with only the stages a test needs (and changes to them), in a temp
 * folder with its own store: each test file trains only what it checks.
 */
export async function digitsWorkspace(stages: string[], change: Record<string, Record<string, unknown>> = {}) {
  const dir = await tempDir();
  const doc = parse(await readFile(fixture('digits-compress.yaml'), 'utf8'));
  doc.data.digits.path = join(ROOT, 'data', 'digits.csv.gz');
  doc.stages = Object.fromEntries(stages.map((s) => [s, { ...doc.stages[s], ...change[s] }]));
  const file = join(dir, 'pipeline.yaml');
  await writeFile(file, stringify(doc));
  return { dir, file, store: new LocalArtifactStore(join(dir, 'artifacts')) };
}
