import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { manifestDraft, removeTempDirs, tempDir } from '../helpers.js';

// publish() from several writers at once, as concurrent runs do: version numbers are never taken
// twice nor lost, a version with the same fingerprint is reused rather than duplicated, and no
// temporary folder is left behind.

test.after(removeTempDirs);

const fp = (n: number) => n.toString(16).padStart(64, '0');

async function storeDir(): Promise<{ store: LocalArtifactStore; stageDir: string }> {
  const root = await tempDir();
  return { store: new LocalArtifactStore(root), stageDir: join(root, 'p', 's') };
}

test('writers publishing at once get distinct versions, each manifest naming its own number', async () => {
  const { store, stageDir } = await storeDir();
  // Every writer finishes only when all have started, so all pick their number from the same listing.
  let started = 0;
  let go!: () => void;
  const allStarted = new Promise<void>((resolve) => (go = resolve));
  const published = await Promise.all(
    [1, 2, 3, 4, 5, 6].map((n) =>
      store.publish('p', 's', async (dir) => {
        await writeFile(join(dir, 'out.txt'), `writer ${n}`);
        if (++started === 6) go();
        await allStarted;
        return manifestDraft(fp(n));
      }),
    ),
  );
  assert.equal(published.map((v) => v.version).sort(), [1, 2, 3, 4, 5, 6]);
  for (const v of await store.listVersions('p', 's')) {
    assert.is(v.manifest.version, v.version);
    assert.is(v.manifest.fingerprint, published.find((p) => p.version === v.version)!.manifest.fingerprint);
  }
  assert.equal((await readdir(stageDir)).sort(), ['v1', 'v2', 'v3', 'v4', 'v5', 'v6']);
});

test('a version with the same fingerprint published meanwhile is returned instead of a duplicate; duplicate: true adds one', async () => {
  const { store, stageDir } = await storeDir();
  let first;
  const second = await store.publish('p', 's', async (dir) => {
    // Another writer publishes the same fingerprint while this one computes.
    first = await store.publish('p', 's', async (d) => (await writeFile(join(d, 'out.txt'), 'a'), manifestDraft(fp(7))));
    await writeFile(join(dir, 'out.txt'), 'b');
    return manifestDraft(fp(7));
  });
  assert.is(second.version, 1);
  assert.equal(second.manifest, first!.manifest);
  assert.equal(await readdir(stageDir), ['v1']);
  const forced = await store.publish('p', 's', async (d) => (await writeFile(join(d, 'out.txt'), 'c'), manifestDraft(fp(7))), { duplicate: true });
  assert.is(forced.version, 2);
});

test("a dead writer's half version is removed by the next publish; a live writer's is left alone", async () => {
  const { store, stageDir } = await storeDir();
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
  const dead = join(stageDir, '.tmp', `v-${host}-999999999-abcdef`);
  const live = join(stageDir, '.tmp', `v-${host}-${process.pid}-ghijkl`);
  const elsewhere = join(stageDir, '.tmp', 'v-other-host-999999999-mnopqr');
  for (const dir of [dead, live, elsewhere]) await mkdir(dir, { recursive: true });
  await store.publish('p', 's', async (d) => (await writeFile(join(d, 'out.txt'), 'x'), manifestDraft(fp(1))));
  assert.equal((await readdir(join(stageDir, '.tmp'))).sort(), [`v-${host}-${process.pid}-ghijkl`, 'v-other-host-999999999-mnopqr'].sort());
});

test('reserved stage names are refused', async () => {
  const { store } = await storeDir();
  for (const name of ['runs', 'sweeps']) {
    try {
      await store.listVersions('p', name);
      assert.unreachable(`stage "${name}" was accepted`);
    } catch (err) {
      assert.match((err as Error).message, `stage name "${name}" is reserved`);
    }
  }
});

test.run();
