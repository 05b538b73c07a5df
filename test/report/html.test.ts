import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import type { RunRecord } from '../../src/artifacts/manifest.js';
import { runPipeline } from '../../src/engine/run.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { exists } from '../../src/util/fs.js';
import { digitsWorkspace } from '../compress/digits-workspace.js';
import { cli, removeTempDirs } from '../helpers.js';
import { launchChromium } from './browser.js';

// The report of a small real compression run (digits: train -> prune -> quantize -> evaluate, cpu
// backend), so it has every kind of chart: curves, confusion matrices, sparsity, weight
// histograms and the accuracy/size comparison. Opened from disk in headless Chromium.

test.after(removeTempDirs);

const ws = await digitsWorkspace(['mlp', 'pruned', 'small', 'check']);
const pipeline = await loadPipeline(ws.file);
const record = await runPipeline(pipeline, { store: ws.store, reporter: new TerminalReporter({ quiet: true }) });
const reportPath = ws.store.reportPath('digits-compress', record.id);

interface ChartState {
  id: string;
  type: string;
  rendered: string;
  caption: string;
  canvas: { width: number; height: number } | null;
  /** Saturated pixels: data marks (bars, lines, cells) are coloured; axes, grid and text are grey. */
  inked: number;
}

test('the run wrote its report beside its record, with the run and every stage in it', async () => {
  assert.is(reportPath, join(ws.store.root, 'digits-compress', 'runs', `${record.id}.html`));
  assert.ok(await exists(join(ws.store.root, 'digits-compress', 'runs', `${record.id}.json`)));
  const html = await readFile(reportPath, 'utf8');
  assert.match(html, `run ${record.id}`);
  for (const stage of ['mlp', 'pruned', 'small', 'check']) assert.match(html, `id="stage-${stage}"`);
  assert.not.match(html, /<script[^>]+src=/, 'a script is loaded from outside the file');
  assert.not.match(html, /<link[^>]+href=/, 'a stylesheet is loaded from outside the file');
});

test('in headless Chromium: offline, no console errors, and every chart drew its data', async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    const outside: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    page.on('request', (r) => !r.url().startsWith('file://') && outside.push(r.url()));
    await page.goto(pathToFileURL(reportPath).href, { waitUntil: 'load' });
    await page.waitForFunction(() => document.body.dataset.charts !== 'pending', { timeout: 60_000 });
    const charts: ChartState[] = await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('figure.chart')).map((figure) => {
        const canvas = figure.querySelector('canvas');
        let inked = 0;
        if (canvas && canvas.width && canvas.height) {
          const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          for (let i = 0; i < pixels.length; i += 4) {
            const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
            if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60) inked++;
          }
        }
        return {
          id: figure.id,
          type: figure.dataset.type ?? '',
          rendered: figure.dataset.rendered ?? '',
          caption: figure.querySelector('figcaption')?.textContent ?? '',
          canvas: canvas ? { width: canvas.width, height: canvas.height } : null,
          inked,
        };
      }),
    );
    assert.equal(errors, [], `console errors:\n${errors.join('\n')}`);
    assert.equal(outside, [], `requests that left file://: ${outside.join(', ')}`);
    assert.is(await page.evaluate(() => document.body.dataset.charts), 'done');
    for (const c of charts) {
      assert.is(c.rendered, 'true', `${c.id} (${c.caption}) did not render`);
      assert.ok(c.canvas && c.canvas.width > 100 && c.canvas.height > 100, `${c.id} (${c.caption}): no canvas of a chart's size`);
      assert.ok(c.inked > 100, `${c.id} (${c.caption}): only ${c.inked} coloured pixels, its data was not drawn`);
    }
    const count = (type: string, caption: RegExp) => charts.filter((c) => c.type === type && caption.test(c.caption)).length;
    // mlp and pruned trained: loss and accuracy curves each.
    assert.is(count('linechart', /^Loss per epoch/), 2);
    assert.is(count('linechart', /^Accuracy per epoch/), 2);
    // Every stage measured on the test split: mlp, pruned, small, and the evaluate stage.
    assert.is(count('confusionMatrix', /^Confusion matrix/), 4);
    assert.is(count('barchart', /^Sparsity per kernel/), 1);
    // pruned: the hidden kernel (logits is excluded); small: hidden and logits kernels (>= 1024 weights).
    assert.is(count('barchart', /^before \(mlp@v1\)/), 1);
    assert.is(count('barchart', /^after \(pruned\)/), 1);
    assert.is(count('barchart', /^before \(pruned@v1\)/), 2);
    assert.is(count('barchart', /^after \(small\)/), 2);
    assert.is(count('scatterplot', /^Test accuracy against gzipped weight size/), 1);
    assert.is(count('barchart', /^Gzipped weight size per stage/), 1);
    assert.is(charts.length, 17);

    const text = await page.evaluate(() => document.body.innerText);
    // The size and accuracy table lists the three models in run order, the pruned one smaller.
    assert.match(text, /mlp@v1\s+train[\s\S]*pruned@v1\s+prune[\s\S]*small@v1\s+quantize/);
    // Lineage and model summary are in (closed) details; their text is in the page.
    const hidden = await page.evaluate(() => Array.from(document.querySelectorAll('details')).map((d) => d.textContent).join('\n'));
    const manifest = (await ws.store.openVersion('digits-compress', 'mlp')).manifest;
    assert.match(hidden, manifest.inputs.data.digits.hash.slice(0, 16));
    assert.match(hidden, manifest.fingerprint);
    assert.match(hidden, /hidden\s*Dense\s*\(None, 128\)\s*8,320/);
  } finally {
    await browser.close();
  }
});

test('`pipeline report` rebuilds it: by id prefix, and latest with --open printing its file:// URL', async () => {
  const byId = await cli(['report', record.id.slice(0, 17), '--pipeline', 'digits-compress', '--store', ws.store.root]);
  assert.is(byId.code, 0, byId.stderr);
  assert.match(byId.stdout, `report of run digits-compress/${record.id}`);
  const open = await cli(['report', 'latest', '--open', '--store', ws.store.root]);
  assert.is(open.code, 0, open.stderr);
  assert.is(open.stdout.trim(), pathToFileURL(reportPath).href);
  assert.match(await readFile(reportPath, 'utf8'), `run ${record.id}`);
  const missing = await cli(['report', 'nosuchrun', '--store', ws.store.root]);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'no run "nosuchrun"');
});

test('a report that cannot be written is a warning; the run still succeeds', async () => {
  class NoReportStore extends LocalArtifactStore {
    override reportPath(): string {
      throw new Error('disk full');
    }
  }
  const warnings: string[] = [];
  let ended: [RunRecord, string, string | undefined] | undefined;
  const reporter = Object.assign(new TerminalReporter({ quiet: true }), {
    warning: (message: string) => warnings.push(message),
    runEnd: (r: RunRecord, path: string, report?: string) => (ended = [r, path, report]),
  });
  const again = await runPipeline(pipeline, { store: new NoReportStore(ws.store.root), reporter });
  assert.is(again.status, 'succeeded');
  assert.is(warnings.length, 1);
  assert.match(warnings[0], `the report of run ${again.id} could not be written: disk full`);
  assert.match(warnings[0], `pipeline report ${again.id}`);
  assert.is(ended?.[2], undefined);
});

test.run();
