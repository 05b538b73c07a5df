import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pipelineSchema } from '../../src/spec/schema.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { registerAllStageKinds } from '../../src/stages/register-all.js';
import { ROOT } from '../helpers.js';

test('the published pipelines/pipeline.schema.json is the schema the code validates with', async () => {
  registerAllStageKinds();
  const published = JSON.parse(await readFile(join(ROOT, 'pipelines', 'pipeline.schema.json'), 'utf8'));
  assert.equal(published, JSON.parse(JSON.stringify(pipelineSchema())), 'run `npm run schema` to refresh it');
});

test('every example pipeline in pipelines/ validates', async () => {
  const files = (await readdir(join(ROOT, 'pipelines'))).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 1);
  for (const file of files) await loadPipeline(join(ROOT, 'pipelines', file));
});

test.run();
