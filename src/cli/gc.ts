import { collectGarbage, type GcItem } from '../artifacts/gc.js';
import { LocalArtifactStore } from '../artifacts/store.js';
import { chooseStoreSpec, localStoreRoot } from '../artifacts/store-spec.js';
import { EXIT_OK, InputError } from '../errors.js';

// `pipeline gc [PIPELINE] [--keep N] [--dry-run]`: the policy is in artifacts/gc.ts; this prints it.

export interface GcArgs {
  store?: string;
  cache: string;
  pipeline?: string;
  keep: number;
  dryRun: boolean;
}

const print = (text = '') => process.stdout.write(`${text}\n`);

export async function gcCommand(args: GcArgs): Promise<number> {
  if (!Number.isSafeInteger(args.keep) || args.keep < 0) {
    throw new InputError(`--keep ${args.keep}: expected a whole number >= 0 (the newest versions kept per stage)`);
  }
  // With an s3:// store, its local cache: the remote only ever grows.
  const store = new LocalArtifactStore(localStoreRoot(chooseStoreSpec(args.store), args.cache));
  const stored = await store.listPipelines();
  let names = stored;
  if (args.pipeline !== undefined) {
    // A file is read only for its name; loading the spec module pulls in tfjs, so only then.
    const name = /\.(ya?ml|json)$/.test(args.pipeline)
      ? (await (await import('../spec/pipeline.js')).loadPipeline(args.pipeline)).name
      : args.pipeline;
    // Checked before locking: taking the lock would create the pipeline's folder.
    if (!stored.includes(name)) {
      throw new InputError(
        `no pipeline "${name}" in ${store.describe(store.root)} (pipelines: ${stored.join(', ') || 'none'}); check the name or --store`,
      );
    }
    names = [name];
  }
  const verb = args.dryRun ? 'would remove' : 'removed';
  let freed = 0;
  let count = 0;
  for (const name of names) {
    const result = await collectGarbage(store, name, { keep: args.keep, dryRun: args.dryRun });
    if (result.skipped) {
      process.stderr.write(`${name}: skipped, nothing removed: ${result.skipped}\n`);
      continue;
    }
    const pinned = result.pinnedBy ? ` and every version run ${result.pinnedBy} (the newest successful) used` : '';
    print(`${name}: keeping the newest ${args.keep} version${args.keep === 1 ? '' : 's'} of each stage${pinned}`);
    for (const item of result.removed) print(`  ${verb} ${label(store, item)}  ${formatBytes(item.bytes)}`);
    const kept = result.kept.map((k) => `${k.stage}@v${k.version}${k.why === 'pinned' ? ' (newest successful run)' : ''}`);
    print(`  kept ${kept.length ? kept.join(', ') : 'no versions'}`);
    for (const item of result.keptCheckpoints) print(`  kept ${label(store, item)}`);
    freed += result.removed.reduce((n, i) => n + i.bytes, 0);
    count += result.removed.length;
  }
  print(`${args.dryRun ? 'would free' : 'freed'} ${formatBytes(freed)} (${count} item${count === 1 ? '' : 's'})`);
  return EXIT_OK;
}

function label(store: LocalArtifactStore, item: GcItem): string {
  if (item.checkpoint) return `checkpoint of ${item.stage} [${item.checkpoint.fingerprint.slice(0, 12)}], ${item.checkpoint.why}`;
  return item.stage === undefined ? `${store.describe(item.path)} (left by a crashed write)` : `${item.stage}@v${item.version}`;
}

export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n.toLocaleString('en-US')} bytes` : `${value.toFixed(1)} ${units[unit]} (${n.toLocaleString('en-US')} bytes)`;
}
