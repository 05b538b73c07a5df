import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { InterruptedError, planPipeline, runPipeline } from '../../src/engine/run.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { RecordingReporter, ROOT, fixture, removeTempDirs, tempDir } from '../helpers.js';

const quiet = new TerminalReporter({ quiet: true });

/** The iris fixture copied with its data into a temp folder, so a test may change the data. */
async function irisWorkspace(): Promise<{ dir: string; file: string; csv: string; store: LocalArtifactStore }> {
  const dir = await tempDir();
  const yaml = (await readFile(fixture('iris.yaml'), 'utf8')).replace('../../data/iris.csv', 'iris.csv');
  await writeFile(join(dir, 'iris.yaml'), yaml);
  await copyFile(join(ROOT, 'data', 'iris.csv'), join(dir, 'iris.csv'));
  return { dir, file: join(dir, 'iris.yaml'), csv: join(dir, 'iris.csv'), store: new LocalArtifactStore(join(dir, 'artifacts')) };
}

const statuses = (record: { stages: { stage: string; status: string; version?: number }[] }) =>
  Object.fromEntries(record.stages.map((s) => [s.stage, `${s.status}@v${s.version}`]));

test.after(removeTempDirs);

test('first run trains, second reuses every stage by fingerprint', async () => {
  const ws = await irisWorkspace();
  const first = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  assert.equal(statuses(first), { net: 'ran@v1', check: 'ran@v1' });
  const second = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  assert.equal(statuses(second), { net: 'reused@v1', check: 'reused@v1' });
  assert.is(second.status, 'succeeded');
  const runs = await ws.store.listRuns('iris');
  assert.is(runs.length, 2);
});

test('a config change (also through --set) reruns that stage and its dependents, and the plan says why', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  const changed = await loadPipeline(ws.file, ['net.epochs=2']);
  const plan = await planPipeline(changed, { store: ws.store });
  assert.is(plan[0].action, 'run');
  assert.match(plan[0].reason, 'config changed (epochs: 3 -> 2)');
  assert.is(plan[1].action, 'run');
  assert.match(plan[1].reason, 'input stage "net" will run');
  const record = await runPipeline(changed, { store: ws.store, reporter: quiet });
  assert.equal(statuses(record), { net: 'ran@v2', check: 'ran@v2' });
  assert.equal(record.overrides, ['net.epochs=2']);
});

test('a data change reruns the stages that read it', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  const csv = await readFile(ws.csv, 'utf8');
  await writeFile(ws.csv, csv.replace('5.1,3.5,1.4,0.2,0', '5.2,3.5,1.4,0.2,0'));
  const plan = await planPipeline(await loadPipeline(ws.file), { store: ws.store });
  assert.is(plan[0].action, 'run');
  assert.match(plan[0].reason, 'data "iris" changed');
});

test('--force reruns cached stages as new versions', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  const forced = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, force: true });
  assert.equal(statuses(forced), { net: 'ran@v2', check: 'ran@v2' });
});

test('a seeded cpu run reproduces bit for bit: same weight hashes in two stores', async () => {
  const a = await irisWorkspace();
  const b = await irisWorkspace();
  await runPipeline(await loadPipeline(a.file), { store: a.store, reporter: quiet });
  await runPipeline(await loadPipeline(b.file), { store: b.store, reporter: quiet });
  const [va, vb] = [await a.store.openVersion('iris', 'net'), await b.store.openVersion('iris', 'net')];
  assert.is(va.manifest.files['group1-shard1of1.bin'].sha256, vb.manifest.files['group1-shard1of1.bin'].sha256);
  assert.is(va.manifest.fingerprint, vb.manifest.fingerprint);
  // A different seed gives different weights: the hash above is not constant by construction.
  const c = await irisWorkspace();
  await runPipeline(await loadPipeline(c.file, ['seed=8']), { store: c.store, reporter: quiet });
  const vc = await c.store.openVersion('iris', 'net');
  assert.is.not(vc.manifest.files['group1-shard1of1.bin'].sha256, va.manifest.files['group1-shard1of1.bin'].sha256);
});

test('a flipped byte in a stored shard is refused, naming the file, and --force rebuilds', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  const shard = join(ws.store.root, 'iris', 'net', 'v1', 'group1-shard1of1.bin');
  const bytes = await readFile(shard);
  bytes[10] ^= 0xff;
  await writeFile(shard, bytes);
  try {
    await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
    assert.unreachable('tampered artifact was accepted');
  } catch (err) {
    assert.instance(err, Error);
    assert.match((err as Error).message, 'group1-shard1of1.bin was changed after it was stored');
    assert.match((err as Error).message, '--force');
  }
  const rebuilt = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, force: true });
  assert.equal(statuses(rebuilt), { net: 'ran@v2', check: 'ran@v2' });
});

test('stage metrics: test accuracy, per-class precision/recall/F1 and a confusion matrix', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file, ['net.epochs=40']), { store: ws.store, reporter: quiet });
  const check = await ws.store.openVersion('iris', 'check');
  const metrics = JSON.parse(await readFile(join(check.dir, 'metrics.json'), 'utf8'));
  assert.is(metrics.samples, 30);
  assert.ok(metrics.accuracy >= 0.85, `iris test accuracy ${metrics.accuracy} below 0.85`);
  assert.is(metrics.perClass.length, 3);
  assert.is(metrics.confusionMatrix.flat().reduce((a: number, b: number) => a + b, 0), 30);
  const diagonal = metrics.confusionMatrix.reduce((s: number, row: number[], i: number) => s + row[i], 0);
  assert.is(diagonal / 30, metrics.accuracy);
});

test('a stage can start from a tfjs model.json path, and editing that file invalidates the cache', async () => {
  const ws = await irisWorkspace();
  await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  const stored = await ws.store.openVersion('iris', 'net');
  for (const file of ['model.json', 'group1-shard1of1.bin']) await copyFile(join(stored.dir, file), join(ws.dir, file));
  const yaml = (await readFile(ws.file, 'utf8')).replace(/    model:\n      layers:\n(        - .*\n)+/, '    model: {path: model.json}\n');
  await writeFile(ws.file, yaml);
  const record = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  assert.equal(statuses(record), { net: 'ran@v2', check: 'ran@v2' });
  assert.is((await ws.store.openVersion('iris', 'net', 2)).manifest.metrics.parameters, stored.manifest.metrics.parameters);
  const shard = await readFile(join(ws.dir, 'group1-shard1of1.bin'));
  shard[0] ^= 1;
  await writeFile(join(ws.dir, 'group1-shard1of1.bin'), shard);
  const plan = await planPipeline(await loadPipeline(ws.file), { store: ws.store });
  assert.is(plan[0].action, 'run');
  assert.match(plan[0].reason, 'file group1-shard1of1.bin changed');
});

test('--only: a stage whose input is not stored fails with exit 2, naming the input and the command that makes it', async () => {
  const ws = await irisWorkspace();
  const pipeline = await loadPipeline(ws.file, ['net.epochs=2']);
  try {
    await runPipeline(pipeline, { store: ws.store, reporter: quiet, only: ['check'] });
    assert.unreachable('ran without its input');
  } catch (err) {
    assert.is((err as { exitCode?: number }).exitCode, 2);
    assert.match((err as Error).message, 'stage "net" (read by "check") has no version with fingerprint');
    assert.match((err as Error).message, `--only net --store ${ws.store.root} --set net.epochs=2\``);
  }
  assert.equal(await ws.store.listVersions('iris', 'check'), [], 'nothing was published');
});

test('--only runs the named stage alone and reuses its stored inputs; an unknown name is refused', async () => {
  const ws = await irisWorkspace();
  const first = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, only: ['net'] });
  assert.equal(statuses(first), { net: 'ran@v1' });
  assert.equal(first.only, ['net']);
  const second = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, only: ['check'] });
  assert.equal(statuses(second), { net: 'reused@v1', check: 'ran@v1' });
  // The same stage run again, as a retried Argo task would, is reused.
  const again = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, only: ['check'] });
  assert.equal(statuses(again), { net: 'reused@v1', check: 'reused@v1' });
  try {
    await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet, only: ['chek'] });
    assert.unreachable('an unknown stage was accepted');
  } catch (err) {
    assert.match((err as Error).message, 'has no stage "chek"; did you mean "check"? (stages: net, check)');
  }
});

test('two runs at once: the second waits for the stage the first is computing, then reuses it', async () => {
  const ws = await irisWorkspace();
  let secondPlanned!: () => void;
  const planned = new Promise<void>((resolve) => (secondPlanned = resolve));
  // The first run publishes only once the second has planned, so the second plans to run net too
  // and then has to wait for it.
  class HeldBack extends LocalArtifactStore {
    override async publish(...args: Parameters<LocalArtifactStore['publish']>) {
      await planned;
      return super.publish(...args);
    }
  }
  const info: string[] = [];
  class Watching extends TerminalReporter {
    override runStart(): void {
      secondPlanned();
    }
    override observerFor() {
      return { ...super.observerFor(), info: (m: string) => info.push(m) };
    }
  }
  let netStarted!: () => void;
  const started = new Promise<void>((resolve) => (netStarted = resolve));
  class Starting extends TerminalReporter {
    override stageStart(): void {
      netStarted();
    }
  }
  const first = runPipeline(await loadPipeline(ws.file), { store: new HeldBack(ws.store.root), reporter: new Starting({ quiet: true }) });
  await started; // the first run holds net's lock
  const second = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: new Watching({ quiet: true }) });
  const a = await first;
  assert.is(statuses(a).net, 'ran@v1');
  assert.is(statuses(second).net, 'reused@v1');
  assert.match(second.stages[0].reason!, `same fingerprint as v1, published meanwhile by run ${a.id}`);
  assert.ok(info.some((m) => m.startsWith(`waiting for run ${a.id}`)), info.join('\n'));
  // check is whichever run got there first: computed once, reused by the other.
  assert.equal([statuses(a).check, statuses(second).check].sort(), ['ran@v1', 'reused@v1']);
});

const SIX = ['net.epochs=6'];
const shard = async (store: LocalArtifactStore, version = 1) =>
  (await store.openVersion('iris', 'net', version)).manifest.files['group1-shard1of1.bin'].sha256;
const checkpointFiles = async (store: LocalArtifactStore) =>
  readdir(join(store.root, 'iris', 'net', '.checkpoints'), { recursive: true }).catch(() => [] as string[]);

test('Ctrl-C after epoch 2 keeps its checkpoint and says so; the rerun resumes from it to the uninterrupted weights', async () => {
  const straight = await irisWorkspace();
  await runPipeline(await loadPipeline(straight.file, SIX), { store: straight.store, reporter: quiet });
  assert.equal(await checkpointFiles(straight.store), [], 'checkpoints left after publishing');

  const ws = await irisWorkspace();
  const stopping = new RecordingReporter({ stage: 'net', epochs: 2 });
  const error = await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: stopping, stopRequested: () => stopping.stop }).catch((e) => e);
  assert.instance(error, InterruptedError);
  assert.is(error.exitCode, 130);
  assert.is(
    error.message,
    'interrupted during stage "net" after epoch 2/6 (training): nothing of it was published, its checkpoint is kept; ' +
      'run the same command again to resume from it (--no-resume starts over)',
  );
  assert.is((await ws.store.listVersions('iris', 'net')).length, 0);
  assert.is((await checkpointFiles(ws.store)).filter((f) => f.endsWith('training.ckpt')).length, 1);

  const resuming = new RecordingReporter();
  const record = await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: resuming });
  assert.ok(resuming.infos.some((l) => /^net: resuming from the checkpoint of epoch 2\/6 \(.*training\.ckpt\); --no-resume starts over$/.test(l)), resuming.infos.join('\n'));
  assert.is(await shard(ws.store), await shard(straight.store));
  assert.equal(record.stages[0].resumedFromEpoch, { training: 2 });
  assert.equal((await ws.store.openVersion('iris', 'net')).manifest.resumedFromEpoch, { training: 2 });
  assert.equal(await checkpointFiles(ws.store), []);
  const runs = await ws.store.listRuns('iris');
  assert.equal(runs.map((r) => r.status), ['interrupted', 'succeeded']);
});

test('--no-resume starts the stage over; a checkpoint torn or edited is warned about and training starts over', async () => {
  const ws = await irisWorkspace();
  const stopping = new RecordingReporter({ stage: 'net', epochs: 3 });
  await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: stopping, stopRequested: () => stopping.stop }).catch(() => undefined);
  const fresh = new RecordingReporter();
  const record = await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: fresh, resume: false });
  assert.not.ok(fresh.infos.some((l) => l.includes('resuming')), 'resumed despite resume: false');
  assert.is(record.stages[0].resumedFromEpoch, undefined);
  const expected = await shard(ws.store);

  const again = new RecordingReporter({ stage: 'net', epochs: 1 });
  await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: again, stopRequested: () => again.stop, force: true }).catch(() => undefined);
  const [file] = (await checkpointFiles(ws.store)).filter((f) => f.endsWith('training.ckpt'));
  const path = join(ws.store.root, 'iris', 'net', '.checkpoints', file);
  const bytes = await readFile(path);
  bytes[bytes.length - 3] ^= 0x40;
  await writeFile(path, bytes);
  const warned = new RecordingReporter();
  const rerun = await runPipeline(await loadPipeline(ws.file, SIX), { store: ws.store, reporter: warned, force: true });
  assert.is(warned.warnings.length, 1);
  assert.match(warned.warnings[0], /^checkpoint .*training\.ckpt cannot be resumed from: its sha256 does not match its contents .*; stage "net" trains from the start instead$/);
  assert.is(rerun.status, 'succeeded');
  assert.is(await shard(ws.store, 2), expected, 'a run started over differs from one never interrupted');
});

test.run();
