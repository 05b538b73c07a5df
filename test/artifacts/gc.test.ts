import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage } from '../../src/artifacts/gc.js';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { runPipeline } from '../../src/engine/run.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { RecordingReporter, ROOT, cli, fixture, removeTempDirs, startCli, tempDir } from '../helpers.js';

// `pipeline gc`: five versions of each stage, the newest successful run back on v1; --keep 2 must
// remove v2 and v3 only (and crash leftovers), keep v4, v5 (newest) and v1 (in use), and leave a
// store the next run reuses. A pipeline that a run uses, or another gc holds, is skipped untouched.

const quiet = new TerminalReporter({ quiet: true });
test.after(removeTempDirs);

let dir: string;
let file: string;
let storeDir: string;
let store: LocalArtifactStore;

const versions = async (stage: string) => (await readdir(join(storeDir, 'iris', stage))).filter((n) => /^v\d+$/.test(n)).sort();
const run = async (sets: string[] = []) => runPipeline(await loadPipeline(file, sets), { store, reporter: quiet });

test.before(async () => {
  dir = await tempDir();
  file = join(dir, 'iris.yaml');
  storeDir = join(dir, 'artifacts');
  store = new LocalArtifactStore(storeDir);
  await writeFile(file, (await readFile(fixture('iris.yaml'), 'utf8')).replace('../../data/iris.csv', 'iris.csv').replace('epochs: 3', 'epochs: 1'));
  await copyFile(join(ROOT, 'data', 'iris.csv'), join(dir, 'iris.csv'));
  await run();
  for (const epochs of [2, 3, 4, 5]) await run([`net.epochs=${epochs}`]);
  const back = await run();
  assert.equal(back.stages.map((s) => `${s.stage}@v${s.version}:${s.status}`), ['net@v1:reused', 'check@v1:reused']);
  // What a crash leaves: a half-written version, and a run record's temporary file.
  await mkdir(join(storeDir, 'iris', 'net', '.tmp', 'v-crashed'), { recursive: true });
  await writeFile(join(storeDir, 'iris', 'net', '.tmp', 'v-crashed', 'model.json'), '{"half":');
  await writeFile(join(storeDir, 'iris', 'runs', '20260101T000000Z-abcdef.json.tmp-999999999-1'), '{');
});

test('--dry-run says what would go and removes nothing', async () => {
  const result = await cli(['gc', 'iris', '--keep', '2', '--dry-run', '--store', storeDir]);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, 'would remove net@v2');
  assert.match(result.stdout, 'would remove check@v3');
  assert.match(result.stdout, /would free .* \(6 items\)/);
  assert.equal(await versions('net'), ['v1', 'v2', 'v3', 'v4', 'v5']);
});

test('a pipeline that a run is using, or another gc holds, is skipped, untouched', async () => {
  const lease = await store.lockShared('iris', '20260101T000000Z-aaaaaa');
  try {
    const result = await cli(['gc', '--keep', '0', '--store', storeDir]);
    assert.is(result.code, 0, result.stderr);
    assert.match(result.stderr, `iris: skipped, nothing removed: another pipeline run (run 20260101T000000Z-aaaaaa, pid ${process.pid}`);
    assert.not.match(result.stdout, 'iris.lock', 'the held lock folder was taken for a pipeline');
    assert.not.ok((await readdir(storeDir)).includes('iris.lock.lock'), 'gc locked the lock folder');
    assert.equal(await versions('net'), ['v1', 'v2', 'v3', 'v4', 'v5']);
  } finally {
    await lease();
  }
  const gate = await store.lock('iris');
  try {
    const inProcess = await collectGarbage(store, 'iris', { keep: 0 });
    assert.match(inProcess.skipped ?? '', `another pipeline process (pipeline gc, pid ${process.pid}`);
    assert.equal(await versions('net'), ['v1', 'v2', 'v3', 'v4', 'v5']);
  } finally {
    await gate();
  }
});

test('--keep 2 removes the unused old versions and leftovers; keeps the newest two and the newest run\'s', async () => {
  const result = await cli(['gc', 'iris', '--keep', '2', '--store', storeDir]);
  assert.is(result.code, 0, result.stderr);
  for (const removed of ['net@v2', 'net@v3', 'check@v2', 'check@v3']) assert.match(result.stdout, `removed ${removed}`);
  assert.match(result.stdout, 'net@v1 (newest successful run)');
  assert.match(result.stdout, /freed .* \(6 items\)/);
  for (const stage of ['net', 'check']) assert.equal(await versions(stage), ['v1', 'v4', 'v5']);
  assert.equal(await readdir(join(storeDir, 'iris', 'net')), ['v1', 'v4', 'v5'], 'the crashed .tmp folder is left');
  assert.not.ok((await readdir(join(storeDir, 'iris', 'runs'))).some((n) => n.includes('.tmp-')));
  assert.is((await store.listRuns('iris')).length, 6, 'run records are history and stay');
});

test('the next run still works: reuses what was kept, rebuilds what was removed', async () => {
  const same = await run();
  assert.equal(same.stages.map((s) => `${s.stage}@v${s.version}:${s.status}`), ['net@v1:reused', 'check@v1:reused']);
  const newest = await run(['net.epochs=5']);
  assert.equal(newest.stages.map((s) => `${s.stage}@v${s.version}:${s.status}`), ['net@v5:reused', 'check@v5:reused']);
  const removed = await run(['net.epochs=2']);
  assert.equal(removed.stages.map((s) => `${s.stage}@v${s.version}:${s.status}`), ['net@v6:ran', 'check@v6:ran']);
});

const checkpointFolders = async () => readdir(join(storeDir, 'iris', 'net', '.checkpoints')).catch(() => [] as string[]);

test('checkpoints: a running process\'s is untouched; a resumable one is kept and reported; stale ones go', async () => {
  // A run training a new config, stopped (alive, holding the lock) right after its second checkpoint.
  const live = startCli(['run', file, '--store', storeDir, '--set', 'net.epochs=7'], { TFJS_PIPELINE_FAULT: 'after-checkpoint:2' });
  await live.waitFor(/fault point reached/);
  const [seven] = await checkpointFolders();
  const during = await cli(['gc', 'iris', '--keep', '0', '--store', storeDir]);
  assert.match(during.stderr, new RegExp(`iris: skipped, nothing removed: another pipeline run \\(run \\S+, pid ${live.child.pid} `));
  assert.equal(await checkpointFolders(), [seven]);
  live.child.kill('SIGKILL');
  await live.ended;

  // Killed: the next run of that config would resume it, so gc keeps it and says so.
  const after = await cli(['gc', 'iris', '--keep', '10', '--dry-run', '--store', storeDir]);
  assert.match(after.stdout, `kept checkpoint of net [${seven.slice(0, 12)}], epoch 2/7 (training): the next run of that config resumes from it`);

  // Killed between publishing and deleting its checkpoints: its result is stored, the checkpoint is stale.
  const publishing = startCli(['run', file, '--store', storeDir, '--set', 'net.epochs=7'], { TFJS_PIPELINE_FAULT: 'after-publish' });
  await publishing.waitFor(/fault point reached/);
  publishing.child.kill('SIGKILL');
  await publishing.ended;
  assert.match(publishing.output(), 'resuming from the checkpoint of epoch 2/7');
  const published = (await store.listVersions('iris', 'net')).at(-1)!;
  // Abandoned: a config interrupted after its first epoch, then another config run to the end.
  const stopping = new RecordingReporter({ stage: 'net', epochs: 1 });
  await runPipeline(await loadPipeline(file, ['net.epochs=8']), { store, reporter: stopping, stopRequested: () => stopping.stop }).catch(() => undefined);
  const eight = (await checkpointFolders()).find((f) => f !== seven)!;
  await run(['net.epochs=9']);
  const newest = (await store.listVersions('iris', 'net')).at(-1)!;

  const result = await cli(['gc', 'iris', '--keep', '10', '--store', storeDir]);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, `removed checkpoint of net [${seven.slice(0, 12)}], its result is stored as net@v${published.version}`);
  assert.match(result.stdout, `removed checkpoint of net [${eight.slice(0, 12)}], older than net@v${newest.version}: another config of the stage ran since`);
  assert.equal(await checkpointFolders(), []);
  assert.not.ok((await readdir(join(storeDir, 'iris', 'net'))).includes('.checkpoints'), 'the emptied .checkpoints folder stays');
});

test('bad usage: an unknown pipeline and a negative --keep exit 2 and create nothing', async () => {
  const unknown = await cli(['gc', 'nope', '--store', storeDir]);
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, 'no pipeline "nope" in');
  assert.not.ok((await readdir(storeDir)).includes('nope'), 'gc created the pipeline folder');
  const negative = await cli(['gc', '--keep', '-1', '--store', storeDir]);
  assert.is(negative.code, 2);
  assert.match(negative.stderr, '--keep -1: expected a whole number >= 0');
});

test.run();
