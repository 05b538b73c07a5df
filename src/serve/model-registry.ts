import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { MANIFEST_FILE } from '../artifacts/manifest.js';
import { listFilesRecursive } from '../util/fs.js';
import type { Servable } from './servable.js';
import { quote, ServeError } from './status.js';

// Which model versions are served, following TensorFlow Serving's file-system source and
// availability-preserving policy:
//
//   <base>/<model>/<N>/   N a decimal integer; anything else (.tmp-* folders) is ignored
//   <base>/<N>/           also accepted: <base> is then one model's base path, as TF Serving's
//                         --model_base_path (named by --model-name, else the folder's name)
//
// Each poll lists the folders, asks the version policy which versions should be loaded
// ("aspired": the newest N, all, or specific numbers), loads those newest first and unloads the
// rest, but never takes a model's last AVAILABLE version away before a replacement is AVAILABLE.
// A version is loaded only once its manifest.json exists and every file matches it; one that
// fails is reported END with the error and skipped by the policy (the previous version keeps
// serving) until its files change. Request paths never become file paths: a request names a
// model that this registry found on disk, or gets a 404.

export type VersionPolicy = { kind: 'latest'; numVersions: number } | { kind: 'all' } | { kind: 'specific'; versions: number[] };
export type VersionState = 'START' | 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END';

export interface VersionStatus {
  version: number;
  state: VersionState;
  /** TensorFlow's error code name: OK unless a load failed. */
  code: string;
  message: string;
}

export interface RegistryEvent {
  kind: 'loading' | 'loaded' | 'load-failed' | 'waiting' | 'unloading' | 'unloaded' | 'scan-error';
  model?: string;
  version?: number;
  message: string;
}

export interface RegistryOptions {
  base: string;
  /** Serve only these models (root layout), or the name of the one model (base path layout). */
  modelNames?: string[];
  policy: VersionPolicy;
  /** 0: no polling (refresh() by hand). */
  pollSeconds: number;
  /** Version labels: model name (or "*" for every model) -> label -> version. */
  labels?: Record<string, Record<string, number>>;
  load: (model: string, version: number, dir: string) => Promise<Servable>;
  onEvent?: (event: RegistryEvent) => void;
}

export interface Lease {
  servable: Servable;
  release(): void;
}

export interface VersionRequest {
  version?: number;
  label?: string;
}

const VERSION_DIR = /^(0|[1-9][0-9]{0,15})$/;
/** A name from a request, cut for messages. */
const shown = (name: string) => (name.length > 100 ? `${name.slice(0, 100)}...` : name);
const MODEL_DIR = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

interface OnDisk {
  dir: string;
  hasManifest: boolean;
}

interface VersionEntry {
  version: number;
  dir: string;
  state: VersionState;
  code: string;
  message: string;
  servable?: Servable;
  refs: number;
  onDisk: boolean;
  /** Set when a load failed: the files' sizes and times then, so a change triggers a retry. */
  failedFiles?: string;
}

export function describePolicy(p: VersionPolicy): string {
  if (p.kind === 'latest') return p.numVersions === 1 ? 'latest' : `latest ${p.numVersions}`;
  if (p.kind === 'all') return 'all';
  return `specific ${p.versions.join(',')}`;
}

function aspiredVersions(policy: VersionPolicy, eligible: number[]): number[] {
  const sorted = [...eligible].sort((a, b) => b - a);
  if (policy.kind === 'latest') return sorted.slice(0, policy.numVersions);
  if (policy.kind === 'all') return sorted;
  return sorted.filter((v) => policy.versions.includes(v));
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

/** Sizes and modification times of every file: changes when anyone writes into the folder. */
async function filesFingerprint(dir: string): Promise<string> {
  try {
    const files = await listFilesRecursive(dir);
    const parts = await Promise.all(files.map(async (f) => stat(join(dir, f)).then((s) => `${f}:${s.size}:${s.mtimeMs}`, () => `${f}:gone`)));
    return parts.join('|');
  } catch {
    return 'unreadable';
  }
}

export class ModelRegistry {
  private readonly models = new Map<string, Map<number, VersionEntry>>();
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private scanned = false;
  private lastScanError = '';
  /** Model (or "*") -> label -> version, in Maps: request text never indexes a plain object. */
  private readonly labels: Map<string, Map<string, number>>;

  constructor(private readonly options: RegistryOptions) {
    this.labels = new Map(Object.entries(options.labels ?? {}).map(([model, l]) => [model, new Map(Object.entries(l))]));
  }

  get base(): string {
    return this.options.base;
  }

  /** First scan (loads what the policy wants), then polling. */
  async start(): Promise<void> {
    await this.refresh();
    this.schedulePoll();
  }

  /** One scan and reconciliation; calls queue behind each other, so after it resolves the disk as of the call is reflected. */
  refresh(): Promise<void> {
    const run = this.chain.then(() => (this.closed ? undefined : this.scan()));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** True once the first scan is done and some version is AVAILABLE. */
  ready(): boolean {
    return this.scanned && this.versionStates().some((v) => v.state === 'AVAILABLE');
  }

  modelNames(): string[] {
    return [...this.models.keys()].filter((m) => this.models.get(m)!.size > 0).sort();
  }

  versionStates(): { model: string; version: number; state: VersionState }[] {
    return [...this.models].flatMap(([model, versions]) => [...versions.values()].map((e) => ({ model, version: e.version, state: e.state })));
  }

  /** TF Serving's GetModelStatus: every version the server tracks, newest first. */
  status(model: string, request: VersionRequest = {}): VersionStatus[] {
    const versions = this.models.get(model);
    const version = request.label !== undefined ? this.labelVersion(model, request.label) : request.version;
    if (!versions || versions.size === 0) {
      throw new ServeError('NOT_FOUND', `Could not find any versions of model ${shown(model)}${this.servedHint(model)}`);
    }
    const pick = version === undefined ? [...versions.values()] : [versions.get(version)].filter((e): e is VersionEntry => !!e);
    if (pick.length === 0) {
      throw new ServeError('NOT_FOUND', `Could not find version ${version} of model ${shown(model)} (versions: ${[...versions.keys()].sort((a, b) => b - a).join(', ')})`);
    }
    return pick.sort((a, b) => b.version - a.version).map((e) => ({ version: e.version, state: e.state, code: e.code, message: e.message }));
  }

  /**
   * The servable for a request, held until release(): a version being unloaded finishes its
   * in-flight requests first. No version: the newest AVAILABLE one.
   */
  acquire(model: string, request: VersionRequest = {}): Lease {
    const versions = this.models.get(model);
    const version = request.label !== undefined ? this.labelVersion(model, request.label) : request.version;
    let entry: VersionEntry | undefined;
    if (version === undefined) {
      for (const e of versions?.values() ?? []) if (e.state === 'AVAILABLE' && (!entry || e.version > entry.version)) entry = e;
    } else {
      entry = versions?.get(version);
      if (entry?.state !== 'AVAILABLE') entry = undefined;
    }
    if (!entry?.servable) {
      const spec = version === undefined ? `Latest(${shown(model)})` : `Specific(${shown(model)}, ${version})`;
      const known = version === undefined ? undefined : versions?.get(version);
      const why = !versions?.size
        ? this.servedHint(model)
        : known
          ? `; version ${version} is ${known.state}${known.message ? `: ${known.message}` : ''}`
          : version === undefined
            ? '; no version of it is AVAILABLE yet (GET /v1/models/<name> shows each version\'s state)'
            : `; it has versions ${[...versions.keys()].sort((a, b) => b - a).join(', ')}`;
      throw new ServeError('NOT_FOUND', `Servable not found for request: ${spec}${why}`);
    }
    const held = entry;
    held.refs++;
    let released = false;
    return {
      servable: held.servable!,
      release: () => {
        if (released) return;
        released = true;
        held.refs--;
        if (held.refs === 0 && held.state === 'UNLOADING') this.finishUnload(model, held);
      },
    };
  }

  /** Stops polling and unloads everything (call after the HTTP server has drained). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.chain;
    for (const [model, versions] of this.models) {
      for (const e of versions.values()) {
        e.servable?.dispose();
        e.servable = undefined;
        e.state = 'END';
      }
      versions.clear();
      this.models.delete(model);
    }
  }

  private labelVersion(model: string, label: string): number {
    const version = this.labels.get(model)?.get(label) ?? this.labels.get('*')?.get(label);
    if (version === undefined) {
      const known = [...new Set([...(this.labels.get('*')?.keys() ?? []), ...(this.labels.get(model)?.keys() ?? [])])];
      throw new ServeError(
        'INVALID_ARGUMENT',
        `Unrecognized servable version label: ${shown(label)}` +
          (known.length ? ` (labels of model ${shown(model)}: ${known.join(', ')})` : ' (no labels are configured: --version-label LABEL=VERSION)'),
      );
    }
    return version;
  }

  private servedHint(model: string): string {
    const served = this.modelNames().filter((m) => m !== model);
    return `; no model ${quote(model, 60)} is served from ${this.options.base}${served.length ? ` (models: ${served.join(', ')})` : ''}`;
  }

  private schedulePoll(): void {
    if (this.closed || !(this.options.pollSeconds > 0)) return;
    this.timer = setTimeout(() => {
      this.refresh()
        .catch((err) => this.emit({ kind: 'scan-error', message: `polling ${this.options.base} failed: ${(err as Error).message}` }))
        .finally(() => this.schedulePoll());
    }, this.options.pollSeconds * 1000);
  }

  private emit(event: RegistryEvent): void {
    this.options.onEvent?.(event);
  }

  private async scan(): Promise<void> {
    let found: Map<string, Map<number, OnDisk>>;
    try {
      found = await this.discover();
      this.lastScanError = '';
    } catch (err) {
      // Keep serving what is loaded; say so once, not at every poll.
      const message = `cannot list ${this.options.base}: ${(err as Error).message}; serving what is loaded`;
      if (message !== this.lastScanError) this.emit({ kind: 'scan-error', message });
      this.lastScanError = message;
      return;
    }
    for (const model of new Set([...found.keys(), ...this.models.keys()])) {
      if (this.closed) return;
      await this.reconcile(model, found.get(model) ?? new Map());
    }
    this.scanned = true;
  }

  private async discover(): Promise<Map<string, Map<number, OnDisk>>> {
    const base = this.options.base;
    const names = await readdir(base);
    const found = new Map<string, Map<number, OnDisk>>();
    if (names.some((n) => VERSION_DIR.test(n))) {
      if ((this.options.modelNames?.length ?? 0) > 1) {
        throw new Error(`it holds version folders, so it is one model's base path: give it one --model-name, not ${this.options.modelNames!.length}`);
      }
      found.set(this.options.modelNames?.[0] ?? basename(base), await this.versionsIn(base));
      return found;
    }
    for (const name of names.sort()) {
      if (!MODEL_DIR.test(name) || (this.options.modelNames && !this.options.modelNames.includes(name))) continue;
      const dir = join(base, name);
      if (await isDirectory(dir)) found.set(name, await this.versionsIn(dir));
    }
    return found;
  }

  private async versionsIn(modelDir: string): Promise<Map<number, OnDisk>> {
    const versions = new Map<number, OnDisk>();
    for (const name of await readdir(modelDir).catch(() => [] as string[])) {
      if (!VERSION_DIR.test(name)) continue;
      const dir = join(modelDir, name);
      if (!(await isDirectory(dir))) continue;
      versions.set(Number(name), { dir, hasManifest: await stat(join(dir, MANIFEST_FILE)).then((s) => s.isFile(), () => false) });
    }
    return versions;
  }

  private async reconcile(model: string, onDisk: Map<number, OnDisk>): Promise<void> {
    let versions = this.models.get(model);
    if (!versions) {
      versions = new Map();
      this.models.set(model, versions);
    }
    for (const e of [...versions.values()]) {
      const disk = onDisk.get(e.version);
      e.onDisk = !!disk;
      if (!disk && (e.state === 'START' || e.state === 'END')) versions.delete(e.version);
      // A failed version whose files changed (a copy finished, a fix) gets a fresh start.
      else if (disk && e.failedFiles !== undefined && (await filesFingerprint(disk.dir)) !== e.failedFiles) versions.delete(e.version);
    }

    let aspired: number[] = [];
    for (let failed = true; failed; ) {
      failed = false;
      const eligible = [...onDisk.keys()].filter((v) => versions.get(v)?.failedFiles === undefined);
      aspired = aspiredVersions(this.options.policy, eligible);
      for (const v of aspired) {
        if (this.closed) return;
        const disk = onDisk.get(v)!;
        let e = versions.get(v);
        if (!e) {
          e = { version: v, dir: disk.dir, state: 'START', code: 'OK', message: '', refs: 0, onDisk: true };
          versions.set(v, e);
        }
        if (e.state === 'UNLOADING') {
          // Wanted again before its last request finished: keep it.
          e.state = 'AVAILABLE';
          continue;
        }
        if (e.state === 'AVAILABLE' || e.state === 'LOADING') continue;
        if (!disk.hasManifest) {
          if (!e.message) {
            e.message = `waiting for ${MANIFEST_FILE}: a version is loaded once its manifest exists and every file matches it`;
            this.emit({ kind: 'waiting', model, version: v, message: `${model} version ${v}: no ${MANIFEST_FILE} yet, not loaded` });
          }
          continue;
        }
        if (!(await this.load(model, e))) failed = true;
      }
    }

    // A folder waiting for its manifest that the policy no longer wants is not tracked (as in TF Serving).
    for (const e of [...versions.values()]) if (e.state === 'START' && !aspired.includes(e.version)) versions.delete(e.version);

    const replacementAvailable = aspired.some((v) => versions.get(v)?.state === 'AVAILABLE');
    for (const e of [...versions.values()]) {
      if (e.state !== 'AVAILABLE' || aspired.includes(e.version)) continue;
      // Availability preserving: the last AVAILABLE version stays until another one is, unless
      // nothing on disk could replace it.
      if (replacementAvailable || aspired.length === 0) {
        e.state = 'UNLOADING';
        this.emit({ kind: 'unloading', model, version: e.version, message: `${model} version ${e.version}: unloading${e.refs ? ` after ${e.refs} in-flight requests` : ''}` });
        if (e.refs === 0) this.finishUnload(model, e);
      }
    }
    if (versions.size === 0 && !onDisk.size) this.models.delete(model);
  }

  private async load(model: string, e: VersionEntry): Promise<boolean> {
    e.state = 'LOADING';
    e.code = 'OK';
    e.message = '';
    this.emit({ kind: 'loading', model, version: e.version, message: `${model} version ${e.version}: loading ${e.dir}` });
    // Taken before verifying: a write that lands during or after the attempt changes it, so the
    // version is tried again at the next poll.
    const filesBefore = await filesFingerprint(e.dir);
    const started = performance.now();
    try {
      e.servable = await this.options.load(model, e.version, e.dir);
      e.state = 'AVAILABLE';
      const ms = Math.round(performance.now() - started);
      this.emit({ kind: 'loaded', model, version: e.version, message: `${model} version ${e.version}: AVAILABLE (verified and loaded in ${ms} ms)` });
      return true;
    } catch (err) {
      e.state = 'END';
      e.code = err instanceof ServeError ? err.code : 'UNKNOWN';
      e.message = (err as Error).message;
      e.failedFiles = filesBefore;
      this.emit({ kind: 'load-failed', model, version: e.version, message: `${model} version ${e.version} (${e.dir}): not served: ${e.message}` });
      return false;
    }
  }

  private finishUnload(model: string, e: VersionEntry): void {
    e.servable?.dispose();
    e.servable = undefined;
    e.state = 'END';
    this.emit({ kind: 'unloaded', model, version: e.version, message: `${model} version ${e.version}: unloaded` });
    const versions = this.models.get(model);
    if (versions && !e.onDisk) versions.delete(e.version);
  }
}
