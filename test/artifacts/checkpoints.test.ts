import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore, type Checkpoint } from '../../src/artifacts/store.js';
import { IntegrityError, PipelineError, StorageError } from '../../src/errors.js';
import { removeTempDirs, tempDir } from '../helpers.js';

// The store's side of checkpoints: one file per training loop under the stage config's folder,
// replaced whole, refused when torn or edited. (Resuming from them: test/train/checkpoint.test.ts,
// test/engine/run.test.ts; kills mid-write: test/e2e/resume.test.ts.)

test.after(removeTempDirs);

const FP = 'f'.repeat(64);
const checkpoint = (epoch: number, bytes = 1000): Checkpoint => ({
  epoch,
  epochs: 5,
  meta: { history: [{ epoch, loss: 0.5 }] },
  data: Uint8Array.from({ length: bytes }, (_, i) => (i * 7 + epoch) % 256),
});

async function area() {
  const store = new LocalArtifactStore(await tempDir());
  return { store, area: store.checkpoints('p', 's', FP) };
}

test('a checkpoint reads back as written, under <stage>/.checkpoints/<fingerprint>/<loop>.ckpt, and a write replaces it', async () => {
  const { store, area: a } = await area();
  assert.is(await a.read('training'), undefined);
  await a.write('training', checkpoint(1));
  await a.write('training', checkpoint(2));
  assert.is(a.path('training'), join(store.root, 'p', 's', '.checkpoints', FP, 'training.ckpt'));
  const back = await a.read('training');
  assert.equal([back?.epoch, back?.epochs, back?.meta], [2, 5, { history: [{ epoch: 2, loss: 0.5 }] }]);
  assert.equal(Array.from(back!.data), Array.from(checkpoint(2).data));
  assert.equal(await readdir(a.dir), ['training.ckpt'], 'a temporary file was left');
  await a.clear();
  assert.equal(await readdir(join(store.root, 'p', 's')), [], 'the emptied .checkpoints folder stays');
});

test('a torn checkpoint and an edited one are refused, saying which and why', async () => {
  const { area: a } = await area();
  await a.write('training', checkpoint(3));
  const bytes = await readFile(a.path('training'));
  await writeFile(a.path('training'), bytes.subarray(0, bytes.length - 100));
  const torn = await a.read('training').catch((e) => e);
  assert.instance(torn, IntegrityError);
  assert.match(torn.message, /^checkpoint .*training\.ckpt cannot be resumed from: it holds \d+ bytes where its header says \d+ \(a torn write\)$/);
  bytes[bytes.length - 1] ^= 1;
  await writeFile(a.path('training'), bytes);
  assert.match((await a.read('training').catch((e) => e)).message, 'its sha256 does not match its contents');
  await writeFile(a.path('training'), 'not a checkpoint');
  assert.match((await a.read('training').catch((e) => e)).message, 'not a tfjs-pipeline checkpoint');
});

test('the half-written temporary file a kill leaves is never read; gc lists it once its writer is gone', async () => {
  const { store, area: a } = await area();
  await a.write('training', checkpoint(1));
  await writeFile(join(a.dir, 'training.ckpt.tmp-999999999-1'), (await readFile(a.path('training'))).subarray(0, 50));
  assert.is((await a.read('training'))?.epoch, 1);
  const inventory = await store.inventory('p');
  assert.equal(inventory.leftovers.map((l) => l.path), [join(a.dir, 'training.ckpt.tmp-999999999-1')]);
  assert.equal(inventory.checkpoints.map((c) => [c.stage, c.fingerprint, c.loops]), [['s', FP, [{ name: 'training', epoch: 1, epochs: 5 }]]]);
  await store.discard(inventory.leftovers[0].path);
  await store.discard(inventory.checkpoints[0].path);
  assert.equal(await readdir(join(store.root, 'p', 's')), []);
});

test('names that are not a fingerprint or a loop name never reach the file system', async () => {
  const { store, area: a } = await area();
  assert.throws(() => store.checkpoints('p', 's', '../../etc'), (e: Error) => e instanceof PipelineError && /not a stage fingerprint/.test(e.message));
  assert.throws(() => a.path('../x'), /not a checkpoint name/);
  const outside = await store.discard(join(store.root, 'p', 's', '.checkpoints', 'x')).catch((e) => e);
  assert.match(outside.message, 'refusing to discard');
});

test('a store path that is a file: a StorageError naming it, exit 2', async () => {
  const dir = await tempDir();
  await writeFile(join(dir, 'store'), 'a file');
  const store = new LocalArtifactStore(join(dir, 'store'));
  const error = await store.lock('p').catch((e) => e);
  assert.instance(error, StorageError);
  assert.is(error.exitCode, 2);
  assert.match(error.message, `the artifact store ${join(dir, 'store')} cannot be used: ${join(dir, 'store')} is a file, not a folder`);
  assert.match(error.message, 'pass --store with a folder');
});

test.run();
