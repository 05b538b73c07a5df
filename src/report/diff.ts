import type { Manifest, RunRecord, StageRunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore } from '../artifacts/store.js';
import { diffPaths, explainDifference } from '../engine/fingerprint.js';
import { formatNumber } from './terminal.js';

// `pipeline diff A B`: what changed between two runs of a pipeline. Parameters come from the run
// records (the --set overrides as typed) and from the stage manifests (the resolved config each
// version was built with, so a default that changed shows too); metrics are the stages' headline
// figures as the run records hold them.

export interface StageDiff {
  stage: string;
  kind: string;
  a?: StageRunRecord;
  b?: StageRunRecord;
  /** Resolved config leaves that differ, "path: old -> new". */
  config: string[];
  /** Other reasons the versions differ: input stages, data, seed, code. */
  inputs: string[];
  metrics: { metric: string; a?: unknown; b?: unknown; delta?: number }[];
}

export interface RunDiff {
  a: RunRecord;
  b: RunRecord;
  overrides: { key: string; a?: string; b?: string }[];
  stages: StageDiff[];
}

export async function diffRuns(store: ArtifactStore, a: RunRecord, b: RunRecord): Promise<RunDiff> {
  const names = [...new Set([...a.stages.map((s) => s.stage), ...b.stages.map((s) => s.stage)])];
  const stages: StageDiff[] = [];
  for (const name of names) {
    const sa = a.stages.find((s) => s.stage === name);
    const sb = b.stages.find((s) => s.stage === name);
    const diff: StageDiff = { stage: name, kind: (sb ?? sa)!.kind, a: sa, b: sb, config: [], inputs: [], metrics: [] };
    if (sa?.version !== undefined && sb?.version !== undefined && sa.version !== sb.version) {
      const [ma, mb] = await Promise.all([manifestOf(store, a.pipeline, sa), manifestOf(store, b.pipeline, sb)]);
      if (ma && mb) {
        diff.config = diffPaths(ma.config, mb.config);
        diff.inputs = explainDifference(
          { details: mb.fingerprintDetails, config: mb.config },
          { details: ma.fingerprintDetails, config: ma.config },
        ).filter((r) => !r.startsWith('config changed') && r !== 'stage kind or config changed');
      } else {
        diff.inputs = ['a version is no longer in the store: config not compared'];
      }
    }
    const keys = [...new Set([...Object.keys(sa?.metrics ?? {}), ...Object.keys(sb?.metrics ?? {})])];
    for (const metric of keys) {
      const va = sa?.metrics?.[metric];
      const vb = sb?.metrics?.[metric];
      diff.metrics.push({ metric, a: va, b: vb, ...(typeof va === 'number' && typeof vb === 'number' ? { delta: vb - va } : {}) });
    }
    stages.push(diff);
  }
  return { a, b, overrides: diffOverrides(a.overrides, b.overrides), stages };
}

async function manifestOf(store: ArtifactStore, pipeline: string, s: StageRunRecord): Promise<Manifest | undefined> {
  const found = (await store.listVersions(pipeline, s.stage)).find((v) => v.version === s.version);
  return found?.manifest;
}

/** `--set key=value` lists compared by key; the last one of a key wins, as when they were applied. */
function diffOverrides(a: string[], b: string[]): RunDiff['overrides'] {
  const byKey = (list: string[]) => new Map(list.map((o) => [o.split('=')[0], o.slice(o.indexOf('=') + 1)]));
  const [ma, mb] = [byKey(a), byKey(b)];
  return [...new Set([...ma.keys(), ...mb.keys()])]
    .filter((k) => ma.get(k) !== mb.get(k))
    .map((key) => ({ key, a: ma.get(key), b: mb.get(key) }));
}

export function formatRunDiff(d: RunDiff): string[] {
  const lines: string[] = [];
  const run = (r: RunRecord) =>
    `${r.id} ${r.status}, ${r.durationMs === undefined ? '-' : `${(r.durationMs / 1000).toFixed(1)}s`}, ${r.backend}, seed ${r.seed}`;
  lines.push(`pipeline ${d.b.pipeline}`, `  A ${run(d.a)}`, `  B ${run(d.b)}`);
  if (d.a.file !== d.b.file) lines.push(`  file: ${d.a.file} -> ${d.b.file}`);
  if (d.a.seed !== d.b.seed) lines.push(`  seed: ${d.a.seed} -> ${d.b.seed}`);
  lines.push('', d.overrides.length ? 'overrides (--set):' : 'overrides (--set): same');
  for (const o of d.overrides) {
    lines.push(o.a === undefined ? `  + ${o.key}=${o.b}` : o.b === undefined ? `  - ${o.key}=${o.a}` : `  ~ ${o.key}: ${o.a} -> ${o.b}`);
  }
  lines.push('', 'stages:');
  const version = (s?: StageRunRecord) => (s ? `${s.status}${s.version !== undefined ? ` v${s.version}` : ''}` : 'absent');
  for (const s of d.stages) {
    const same = s.a?.version !== undefined && s.a.version === s.b?.version;
    lines.push(`  ${s.stage} (${s.kind}): ${version(s.a)} -> ${version(s.b)}${same ? ' (same version)' : ''}`);
    for (const c of s.config) lines.push(`      config ${c}`);
    for (const r of s.inputs) lines.push(`      ${r}`);
  }
  const rows = d.stages.flatMap((s) =>
    s.metrics.map((m) => [
      s.stage,
      m.metric,
      m.a === undefined ? '-' : formatNumber(m.a),
      m.b === undefined ? '-' : formatNumber(m.b),
      m.delta === undefined ? '' : formatDelta(m.delta, Number.isInteger(m.a) && Number.isInteger(m.b)),
    ]),
  );
  lines.push('', rows.length ? 'metrics:' : 'metrics: none recorded');
  if (rows.length) lines.push(...table(['stage', 'metric', 'A', 'B', 'delta (B - A)'], rows).map((l) => `  ${l}`));
  return lines;
}

function formatDelta(delta: number, integers: boolean): string {
  if (delta === 0) return '=';
  const sign = delta > 0 ? '+' : '-';
  return `${sign}${integers ? Math.abs(delta).toLocaleString('en-US') : Math.abs(delta).toFixed(4)}`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [fmt(header), ...rows.map(fmt)];
}
