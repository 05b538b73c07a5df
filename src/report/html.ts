import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore } from '../artifacts/store.js';
import { PipelineError } from '../errors.js';
import type { ClassificationMetrics } from '../train/metrics.js';
import type { EpochLogs } from '../train/progress.js';
import { writeFileAtomic } from '../util/fs.js';
import { collectReport, type ChainRow, type Metrics, type ReportData, type StageReport } from './report-data.js';
import type { WeightHistogram } from './weights.js';

// A run's report: one HTML file that opens from disk with no network (a CI artifact, an attachment).
// tfjs-vis's UMD bundle is inlined; it carries its own tfjs-core, vega and vega-lite, so nothing
// else has to load first. Tables are written here as static HTML; charts are descriptors that a
// short script hands to tfjs-vis, and each marks itself rendered (or failed) for the browser test.

/** Writes the report of `record` beside it in the store and returns its path. */
export async function writeRunReport(store: ArtifactStore, record: RunRecord): Promise<string> {
  const path = store.reportPath(record.pipeline, record.id);
  const html = renderReport(await collectReport(store, record), await tfjsVisBundle());
  await writeFileAtomic(path, html);
  return path;
}

interface ChartSpec {
  id: string;
  type: 'linechart' | 'barchart' | 'scatterplot' | 'confusionMatrix';
  data: unknown;
  opts: Record<string, unknown>;
}

let bundle: Promise<{ code: string; license: string }> | undefined;

function tfjsVisBundle(): Promise<{ code: string; license: string }> {
  bundle ??= (async () => {
    let dist: string;
    try {
      dist = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-vis/package.json')), 'dist');
    } catch {
      throw new PipelineError('E_REPORT', 'the report needs @tensorflow/tfjs-vis, which is not installed: run `npm ci`', 1);
    }
    const [code, license] = await Promise.all([
      readFile(join(dist, 'tfjs-vis.umd.min.js'), 'utf8'),
      readFile(join(dist, 'tfjs-vis.umd.min.js.LICENSE.txt'), 'utf8').catch(() => ''),
    ]);
    // Inside <script>, only "</script" ends the element early; "<\/script" means the same in JS.
    return { code: code.replace(/<\/(script)/gi, '<\\/$1'), license: license.replace(/<\/(script)/gi, '<\\/$1') };
  })();
  return bundle;
}

export function renderReport(data: ReportData, vis: { code: string; license: string }): string {
  const page = new Page();
  const { run } = data;
  const title = `${run.pipeline} · run ${run.id}`;
  const body = [
    header(data),
    nav(data),
    stagesSection(data),
    chainSection(page, data.chain),
    ...data.stages.map((s) => stageSection(page, s)),
    `<footer>Written by ${esc(data.tool)} at ${esc(data.generatedAt)}. Charts: tfjs-vis (inlined, works offline).</footer>`,
  ].join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body data-charts="pending">
${body}
<script type="application/json" id="report-charts">${jsonForScript(page.charts)}</script>
<script>${vis.license}</script>
<script>${vis.code}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/** Charts on the page, in order; each placeholder's id names its descriptor. */
class Page {
  readonly charts: ChartSpec[] = [];

  chart(type: ChartSpec['type'], caption: string, data: unknown, opts: Record<string, unknown>): string {
    const id = `chart-${this.charts.length + 1}`;
    this.charts.push({ id, type, data, opts: { fontSize: 11, ...opts } });
    return `<figure class="chart" id="${id}" data-type="${type}" data-rendered="pending"><figcaption>${esc(caption)}</figcaption><div class="draw"></div></figure>`;
  }
}

function header(data: ReportData): string {
  const r = data.run;
  const facts: [string, string][] = [
    ['file', r.file],
    ['started', r.startedAt],
    ['duration', r.durationMs === undefined ? '-' : seconds(r.durationMs)],
    ['backend', r.backend],
    ['seed', String(r.seed)],
    ['overrides', r.overrides.length ? r.overrides.join(' ') : 'none'],
    ['forced', r.force ? 'yes (--force)' : 'no'],
    ...(r.only ? [['only', r.only.join(', ')] as [string, string]] : []),
    ...(r.sweep ? [['sweep', r.sweep] as [string, string]] : []),
    ['host', `${r.host} (pid ${r.pid})`],
  ];
  return `<header>
<h1>${esc(r.pipeline)} <span class="status ${esc(r.status)}">${esc(r.status)}</span></h1>
<p class="sub">run ${esc(r.id)}</p>
<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${k === 'overrides' ? `<code>${esc(v)}</code>` : esc(v)}</dd>`).join('')}</dl>
${r.error ? `<p class="error">${esc(r.error)}</p>` : ''}
</header>`;
}

function nav(data: ReportData): string {
  const links = [
    '<a href="#stages">stages</a>',
    ...(data.chain.length ? ['<a href="#chain">accuracy and size</a>'] : []),
    ...data.stages.map((s) => `<a href="#${anchor(s.stage)}">${esc(s.stage)}</a>`),
  ];
  return `<nav>${links.join(' · ')}</nav>`;
}

function stagesSection(data: ReportData): string {
  const rows = data.stages.map((s) => [
    `<a href="#${anchor(s.stage)}">${esc(s.stage)}</a>`,
    esc(s.kind),
    `<span class="status ${esc(s.status)}">${esc(s.status)}</span>`,
    s.version === undefined ? '-' : `v${s.version}`,
    s.durationMs === undefined ? '-' : seconds(s.durationMs),
    esc(s.reason ?? ''),
    esc(headline(s.headline)),
  ]);
  return section('stages', 'Stages', table(['stage', 'kind', 'status', 'version', 'time', 'why', 'headline metrics'], rows, [3, 4]));
}

function chainSection(page: Page, chain: ChainRow[]): string {
  if (!chain.length) return '';
  const first = chain[0];
  const label = (r: ChainRow, i: number) => ordinal(i, chain.length, r.stage);
  const rows = chain.map((r) => [
    esc(`${r.stage}@v${r.version}`),
    esc(r.kind),
    r.accuracy === undefined ? '-' : fixed(r.accuracy),
    r.accuracy === undefined || first.accuracy === undefined ? '-' : points(r.accuracy - first.accuracy),
    int(r.parameters),
    percent(r.zeros),
    int(r.raw),
    int(r.gzip),
    `${(first.gzip / r.gzip).toFixed(1)}x`,
  ]);
  const accuracies = chain.map((r) => r.accuracy).filter((a): a is number => a !== undefined);
  const charts: string[] = [];
  if (accuracies.length) {
    const withAccuracy = chain.filter((r) => r.accuracy !== undefined);
    charts.push(
      page.chart(
        'scatterplot',
        'Test accuracy against gzipped weight size',
        { values: withAccuracy.map((r) => [{ x: r.gzip / 1024, y: r.accuracy }]), series: withAccuracy.map((r) => label(r, chain.indexOf(r))) },
        {
          width: 460,
          height: 280,
          xLabel: 'gzipped weights (KiB)',
          yLabel: 'test accuracy',
          xAxisDomain: [0, Math.max(...chain.map((r) => r.gzip / 1024)) * 1.1],
          yAxisDomain: padded(accuracies, { max: 1 }),
        },
      ),
    );
  }
  charts.push(
    page.chart('barchart', 'Gzipped weight size per stage (KiB)', chain.map((r, i) => ({ index: label(r, i), value: round(r.gzip / 1024) })), {
      width: 360,
      height: 280,
      yLabel: 'KiB (gzip -9)',
    }),
  );
  return section(
    'chain',
    'Accuracy and size across the stages',
    `<p>Each stage that writes a model, in run order. Sizes are of the weight shards: raw, and concatenated + gzip -9 (what a web server sends); the ratio is to <b>${esc(first.stage)}</b>.</p>
${table(['model', 'kind', 'test accuracy', `vs ${first.stage}`, 'parameters', 'zeros', 'raw bytes', 'gzip bytes', 'smaller'], rows, [2, 3, 4, 5, 6, 7, 8])}
<div class="row">${charts.join('')}</div>`,
  );
}

function stageSection(page: Page, s: StageReport): string {
  const parts: string[] = [];
  const version = s.version === undefined ? '' : ` v${s.version}`;
  parts.push(`<p><span class="status ${esc(s.status)}">${esc(s.status)}</span> ${esc(s.reason ?? '')}${s.durationMs !== undefined ? ` · ${seconds(s.durationMs)}` : ''}${s.where ? ` · <code>${esc(s.where)}</code>` : ''}</p>`);
  if (s.error) parts.push(`<p class="error">${esc(s.error)}</p>`);
  if (s.problem) parts.push(`<p class="error">details unavailable: ${esc(s.problem)}</p>`);
  if (Object.keys(s.headline).length) parts.push(`<p class="headline">${esc(headline(s.headline))}</p>`);
  if (s.published) parts.push(`<p>published to <code>${esc(s.published)}</code></p>`);
  if (s.history?.length) parts.push(curves(page, s));
  const m = s.metrics;
  if (m && s.kind === 'distill') parts.push(distillDetails(m));
  if (m && s.kind === 'prune') parts.push(pruneDetails(page, m));
  if (m && s.kind === 'quantize') parts.push(quantizeDetails(m));
  if (m && s.kind === 'export') parts.push(exportDetails(m));
  if (s.histograms) parts.push(histograms(page, s));
  if (s.evaluation) parts.push(evaluation(page, s.evaluation.title, s.evaluation.metrics));
  if (s.model) parts.push(modelSummary(s));
  if (s.manifest) parts.push(lineage(s));
  if (m) parts.push(`<details><summary>metrics.json</summary><pre>${esc(JSON.stringify(m, null, 2))}</pre></details>`);
  return section(anchor(s.stage), `${esc(s.stage)} <small>(${esc(s.kind)}${version})</small>`, parts.join('\n'), true);
}

function curves(page: Page, s: StageReport): string {
  const history = s.history!;
  const baseline = s.baselineHistory ?? [];
  const epochs = Math.max(history.length, baseline.length);
  const chartFor = (metric: 'loss' | 'accuracy') => {
    const candidates: [string, EpochLogs[], string][] = [
      ['train', history, metric],
      ['validation', history, `val_${metric}`],
      ['baseline validation', baseline, `val_${metric}`],
    ];
    const series = candidates
      .map(([name, logs, key]) => ({ name, ys: Array.from({ length: epochs }, (_, i) => finite(logs[i]?.[key])) }))
      .filter((c) => c.ys.some((y) => y !== null));
    if (!series.length) return '';
    const values = series.flatMap((c) => c.ys.filter((y): y is number => y !== null));
    // tfjs-vis's line chart puts point i at x = i: a leading null (dropped by vega-lite) makes x the epoch.
    const data = { values: series.map((c) => [null, ...c.ys].map((y, x) => ({ x, y }))), series: series.map((c) => c.name) };
    const caption =
      metric === 'loss' && s.kind === 'distill' ? 'Loss per epoch (train: the distillation loss; validation: cross-entropy on labels)' : `${metric === 'loss' ? 'Loss' : 'Accuracy'} per epoch`;
    // vega-lite maps the colour range onto the series names sorted, so the colours go in that order.
    const seriesColors = series.map((c) => c.name).sort().map((name) => SERIES_COLORS[name]);
    return page.chart('linechart', caption, data, {
      width: 420,
      height: 240,
      xLabel: 'epoch',
      yLabel: metric,
      seriesColors,
      yAxisDomain: padded(values, metric === 'accuracy' ? { max: 1 } : { min: 0 }),
    });
  };
  const best = s.metrics?.bestEpoch ?? s.metrics?.student?.bestEpoch ?? s.metrics?.keptEpoch;
  const note = best !== undefined ? `<p class="note">Kept epoch ${esc(String(best))} of ${history.length}.</p>` : '';
  return `<h3>Training</h3>${note}<div class="row">${chartFor('loss')}${chartFor('accuracy')}</div>`;
}

/** The same line has the same colour in every chart, whichever lines it shares the chart with. */
const SERIES_COLORS: Record<string, string> = { train: '#4c78a8', validation: '#f58518', 'baseline validation': '#54a24b' };

function distillDetails(m: Metrics): string {
  const rows = [
    ['student (distilled)', m.student],
    ['student on labels alone (baseline)', m.baseline],
    [`teacher ${m.teacher?.stage ? `(${m.teacher.stage}@v${m.teacher.version})` : ''}`, m.teacher],
  ]
    .filter(([, x]) => x?.test)
    .map(([name, x]) => [esc(name), fixed(x.test.accuracy), fixed(x.test.loss), fixed(x.test.macroF1), x.parameters === undefined ? '-' : int(x.parameters)]);
  const extra = [
    m.agreement !== undefined ? `top-1 agreement with the teacher ${fixed(m.agreement)}` : '',
    m.gain !== undefined ? `gain over the baseline ${points(m.gain)}` : '',
    m.distillation ? `temperature ${m.distillation.temperature}, alpha ${m.distillation.alpha}` : '',
  ].filter(Boolean);
  return `<h3>Distillation</h3>${table(['model', 'test accuracy', 'test loss', 'macro F1', 'parameters'], rows, [1, 2, 3, 4])}<p>${esc(extra.join('; '))}</p>`;
}

function pruneDetails(page: Page, m: Metrics): string {
  const layers = (m.sparsity?.layers ?? []) as { layer: string; type: string; weight: string; shape: number[]; elements: number; target: number; zeros: number; sparsity: number; excluded: boolean }[];
  const rows = layers.map((l) => [esc(l.layer), esc(l.type), esc(`[${l.shape.join(', ')}]`), int(l.elements), l.excluded ? 'excluded' : percent(l.target), int(l.zeros), percent(l.sparsity)]);
  const bars = layers.map((l, i) => ({ index: ordinal(i, layers.length, l.layer), value: round(l.sparsity) }));
  // The height includes the rotated layer names under the bars (autosize: fit).
  const chart = layers.length
    ? page.chart('barchart', 'Sparsity per kernel (fraction of zeros; excluded kernels stay at 0)', bars, {
        width: Math.max(240, 48 * layers.length),
        height: 330,
        yLabel: 'sparsity',
      })
    : '';
  const updates = ((m.schedule?.updates ?? []) as { step: number; sparsity: number }[]).map((u) => `step ${u.step}: ${percent(u.sparsity)}`).join(', ');
  const facts = [
    m.test ? `test accuracy ${fixed(m.test.before?.accuracy)} -> ${fixed(m.test.after?.accuracy)}` : '',
    m.size ? `gzipped weights ${int(m.size.before.gzip)} -> ${int(m.size.after.gzip)} bytes (${Number(m.size.gzipRatio).toFixed(2)}x)` : '',
    m.sparsity ? `sparsity of the pruned kernels ${percent(m.sparsity.prunedLayers)}, of the whole model ${percent(m.sparsity.model)}` : '',
  ].filter(Boolean);
  return `<h3>Pruning</h3><p>${esc(facts.join('; '))}</p>${updates ? `<p class="note">Mask updates (${esc(m.schedule.kind)} schedule, ${esc(String(m.schedule.stepsPerEpoch))} steps an epoch): ${esc(updates)}.</p>` : ''}
<div class="row">${chart}<div>${table(['layer', 'type', 'shape', 'elements', 'target', 'zeros', 'sparsity'], rows, [3, 4, 5, 6])}</div></div>`;
}

function quantizeDetails(m: Metrics): string {
  const tensors = (m.tensors ?? []) as { name: string; shape: number[]; encoding: string; scale?: number; maxAbsError: number; meanAbsError: number; zerosBefore: number; zerosKept: number }[];
  const rows = tensors.map((t) => [
    esc(t.name),
    esc(`[${t.shape.join(', ')}]`),
    esc(t.encoding),
    t.scale === undefined ? '-' : t.scale.toExponential(3),
    t.maxAbsError ? t.maxAbsError.toExponential(2) : '0',
    t.meanAbsError ? t.meanAbsError.toExponential(2) : '0',
    `${int(t.zerosKept)} of ${int(t.zerosBefore)}`,
  ]);
  const encodings = Object.entries(m.encodings ?? {}).filter(([, n]) => n).map(([e, n]) => `${n} ${e}`).join(', ');
  const facts = [
    m.test ? `test accuracy ${fixed(m.test.before?.accuracy)} -> ${fixed(m.test.after?.accuracy)}` : '',
    m.size ? `weights ${int(m.size.before.raw)} -> ${int(m.size.after.raw)} bytes raw, ${int(m.size.before.gzip)} -> ${int(m.size.after.gzip)} gzipped` : '',
    encodings ? `tensors: ${encodings}` : '',
  ].filter(Boolean);
  return `<h3>Quantization</h3><p>${esc(facts.join('; '))}</p>
<details><summary>per-tensor errors (${tensors.length} tensors)</summary>${table(['weight', 'shape', 'stored as', 'scale', 'max |error|', 'mean |error|', 'zeros kept'], rows, [3, 4, 5, 6])}</details>`;
}

function exportDetails(m: Metrics): string {
  const sizes = Object.entries((m.sizes ?? {}) as Record<string, number>).map(([f, b]) => [esc(f), int(b)]);
  const gate = ((m.gate ?? []) as { rule: string; value: number; passed: boolean }[]).map((g) => [esc(g.rule), fixed(g.value), g.passed ? 'passed' : '<b>missed</b>']);
  const checks = Object.entries((m.checks ?? {}) as Record<string, { samples: number; maxAbsDiff: number; argmaxAgreement: number }>).map(([f, c]) => [
    esc(f),
    int(c.samples),
    c.maxAbsDiff.toExponential(2),
    fixed(c.argmaxAgreement),
  ]);
  return `<h3>Export</h3><div class="row">
${sizes.length ? `<div><h4>Formats</h4>${table(['format', 'bytes'], sizes, [1])}</div>` : ''}
${gate.length ? `<div><h4>Gate (test split)</h4>${table(['rule', 'value', ''], gate, [1])}</div>` : ''}
${checks.length ? `<div><h4>Stock-loader check</h4>${table(['format', 'samples', 'max |diff|', 'argmax agreement'], checks, [1, 2, 3])}</div>` : ''}
</div>`;
}

function histograms(page: Page, s: StageReport): string {
  const h = s.histograms!;
  const what = s.kind === 'prune' ? 'pruned kernels' : 'quantized tensors';
  const blocks = h.weights.map((w) => {
    const side = (name: string, x: WeightHistogram['before']) =>
      page.chart(
        'barchart',
        `${name}: ${percent(x.zeros / Math.max(1, x.elements))} zeros (not drawn), range [${x.min.toPrecision(3)}, ${x.max.toPrecision(3)}]`,
        x.counts.map((count, i) => ({ index: round(w.start + (i + 0.5) * w.width, 4), value: count })),
        { width: 340, height: 170, xType: 'quantitative', xLabel: 'weight', yLabel: 'count' },
      );
    return `<h4><code>${esc(w.weight)}</code> [${esc(w.shape.join(', '))}]</h4><div class="row">${side(`before (${h.from})`, w.before)}${side(`after (${s.stage})`, w.after)}</div>`;
  });
  const more = h.omitted ? `<p class="note">${h.omitted} more not shown.</p>` : '';
  return `<h3>Weights before and after</h3><p class="note">Histograms of the ${what}' non-zero values, same bins on both sides.</p>${blocks.join('\n')}${more}`;
}

function evaluation(page: Page, title: string, m: ClassificationMetrics): string {
  const k = m.perClass.length;
  const size = Math.min(640, Math.max(240, 44 * k + 150));
  const chart = page.chart('confusionMatrix', `Confusion matrix, ${title} (rows: true class)`, {
    values: m.confusionMatrix,
    tickLabels: m.perClass.map((c) => c.class),
  }, { width: size, height: size, showTextOverlay: k <= 20, shadeDiagonal: false });
  const rows = m.perClass.map((c) => [esc(c.class), fixed(c.precision), fixed(c.recall), fixed(c.f1), int(c.support)]);
  return `<h3>Evaluation: ${esc(title)}</h3><p>accuracy ${fixed(m.accuracy)}, loss ${fixed(m.loss)}, macro F1 ${fixed(m.macroF1)} on ${int(m.samples)} samples</p>
<div class="row">${chart}<div>${table(['class', 'precision', 'recall', 'F1', 'support'], rows, [1, 2, 3, 4])}</div></div>`;
}

function modelSummary(s: StageReport): string {
  const model = s.model!;
  const rows = model.layers.map((l) => [esc(l.name), esc(l.type), esc(l.outputShape), int(l.params)]);
  const sizes = s.sizes ? `; weights ${int(s.sizes.raw)} bytes, ${int(s.sizes.gzip)} gzipped` : '';
  return `<details><summary>Model: ${model.layers.length} layers, ${int(model.parameters)} parameters (${int(model.trainable)} trainable)${sizes}</summary>
${table(['layer', 'type', 'output shape', 'params'], rows, [3])}</details>`;
}

function lineage(s: StageReport): string {
  const m = s.manifest!;
  const rows: string[][] = [
    ['fingerprint', `<code>${esc(m.fingerprint)}</code>`],
    ...Object.values(m.inputs.stages).map((i) => [`input stage`, `<a href="#${anchor(i.stage)}">${esc(i.stage)}</a>@v${i.version} <code>${esc(i.fingerprint.slice(0, 16))}</code>`]),
    ...Object.entries(m.inputs.data).map(([name, d]) => [
      `data ${esc(name)}`,
      `<code>${esc(d.hash.slice(0, 16))}</code> ${d.sources.map((src) => `${esc(src.path)} (sha256 ${esc(src.sha256.slice(0, 12))}, ${int(src.bytes)} bytes)`).join('<br>')}`,
    ]),
    ['made by run', `${esc(m.runId)} on ${esc(m.backend)}, seed ${m.seed}, ${esc(m.timings.startedAt)}, ${seconds(m.timings.durationMs)}`],
    ['libraries', esc(Object.entries(m.libraries).map(([k, v]) => `${k} ${v}`).join(', '))],
    ['files', `${m.fileCount} files, ${int(m.bytes)} bytes (sha256 of each in manifest.json)`],
  ];
  return `<details><summary>Lineage and config</summary>${table(['', ''], rows)}<pre>${esc(JSON.stringify(m.config, null, 2))}</pre></details>`;
}

// ---- small formatting helpers -------------------------------------------------------------

function section(id: string, title: string, content: string, stage = false): string {
  return `<section id="${esc(id)}"${stage ? ' class="stage"' : ''}><h2>${title}</h2>\n${content}\n</section>`;
}

function table(head: string[], rows: string[][], numeric: number[] = []): string {
  const cls = (i: number) => (numeric.includes(i) ? ' class="num"' : '');
  return `<table><thead><tr>${head.map((h, i) => `<th${cls(i)}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function headline(h: Record<string, unknown>): string {
  return Object.entries(h)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? (Number.isInteger(v) ? int(v) : v.toFixed(4)) : String(v)}`)
    .join(', ');
}

function padded(values: number[], clamp: { min?: number; max?: number } = {}): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 0.002, 1e-6);
  lo -= pad;
  hi += pad;
  if (clamp.min !== undefined) lo = Math.max(clamp.min, lo);
  if (clamp.max !== undefined) hi = Math.min(clamp.max, hi);
  return [round(lo, 4), round(hi, 4)];
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const round = (x: number, digits = 3) => Number(x.toPrecision(digits));
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const fixed = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : '-');
const percent = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-');
const points = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)} pt`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
/** Bar chart categories sort as text: zero-padded positions keep run or model order. */
const ordinal = (i: number, n: number, name: string) => `${String(i + 1).padStart(String(n).length, '0')}. ${name}`;
const anchor = (stage: string) => `stage-${stage.replace(/[^A-Za-z0-9_-]/g, '_')}`;

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON inside <script>: "<" escaped so no value can close the element. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

// Runs in the browser. Charts render one after another (vega-embed is async); each figure gets
// data-rendered="true" or "failed" and <body> data-charts="done", which the browser test waits for.
const PAGE_SCRIPT = `
(async () => {
  const charts = JSON.parse(document.getElementById('report-charts').textContent);
  let failed = 0;
  for (const c of charts) {
    const figure = document.getElementById(c.id);
    const draw = figure.querySelector('.draw');
    try {
      if (typeof tfvis === 'undefined') throw new Error('tfjs-vis did not load');
      await tfvis.render[c.type](draw, c.data, c.opts);
      figure.dataset.rendered = 'true';
    } catch (err) {
      failed++;
      figure.dataset.rendered = 'failed';
      draw.textContent = 'This chart could not be drawn: ' + (err && err.message ? err.message : err);
      console.error('report: chart ' + c.id + ' (' + c.type + ') failed:', err);
    }
  }
  document.body.dataset.charts = failed ? 'failed' : 'done';
})();
`;

const CSS = `
:root { --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --ok: #2f8132; --bad: #c0392b; --accent: #357edd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); margin: 0 auto; padding: 24px 32px 48px; max-width: 1280px; }
h1 { font-size: 24px; margin: 0; } h2 { font-size: 19px; margin: 0 0 8px; } h3 { font-size: 15px; margin: 18px 0 6px; } h4 { font-size: 13px; margin: 12px 0 4px; }
h2 small { color: var(--muted); font-weight: normal; }
.sub, .note, footer { color: var(--muted); } .note { font-size: 13px; }
header { border-bottom: 2px solid var(--line); padding-bottom: 12px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0 0; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; }
nav { margin: 12px 0 4px; font-size: 13px; } a { color: var(--accent); text-decoration: none; }
section { margin-top: 26px; } section.stage { border-top: 1px solid var(--line); padding-top: 14px; }
.status { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: var(--line); vertical-align: middle; font-weight: 600; }
.status.succeeded, .status.ran { background: #e3f9e5; color: var(--ok); } .status.reused { background: #e6f0ff; color: var(--accent); }
.status.failed, .status.interrupted { background: #fde8e8; color: var(--bad); }
.error { color: var(--bad); white-space: pre-wrap; } .headline { font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; }
figure.chart { margin: 6px 0; } figcaption { font-size: 12px; color: var(--muted); margin-bottom: 4px; max-width: 460px; }
pre { background: #f5f7fa; padding: 8px; overflow: auto; max-height: 420px; font-size: 12px; }
code { font-size: 12px; } details { margin: 8px 0; } summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 40px; font-size: 12px; }
`;
