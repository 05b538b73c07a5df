import { CachedArtifactStore, fetchVersion, pullVersions, pushVersions, type VersionSelection, type VersionTransfer } from '../artifacts/cached-store.js';
import { S3Remote } from '../artifacts/s3-remote.js';
import { LocalArtifactStore } from '../artifacts/store.js';
import { chooseStoreSpec, localStoreRoot, parseStoreSpec, type StoreSpec } from '../artifacts/store-spec.js';
import { EXIT_OK, InputError } from '../errors.js';
import { formatBytes } from './gc.js';

// `pipeline push` and `pipeline pull`: the work is in artifacts/cached-store.ts; this picks the two
// stores and prints what moved and what was already there.

interface SyncArgs {
  store?: string;
  cache: string;
  remote?: string;
  pipeline?: string;
  /** STAGE or STAGE@vN. */
  stage?: string;
}

const print = (text = '') => process.stdout.write(`${text}\n`);

/** The remote: --remote, else an s3:// --store (or file store:); the local side: a folder --store, else --cache. */
function openStores(args: SyncArgs, fileStore?: StoreSpec): { local: LocalArtifactStore; remote: S3Remote } {
  const store = chooseStoreSpec(args.store, fileStore);
  const remote = args.remote !== undefined ? parseStoreSpec(args.remote, '--remote') : store;
  if (remote.kind !== 's3') {
    throw new InputError(
      args.remote !== undefined
        ? `--remote ${args.remote}: not an s3:// URL: write s3://bucket/prefix`
        : 'which remote? name it with --remote s3://bucket/prefix (or --store s3://bucket/prefix, with --cache the local store)',
    );
  }
  return { local: new LocalArtifactStore(localStoreRoot(store, args.cache)), remote: new S3Remote(remote) };
}

function selection(args: SyncArgs): VersionSelection {
  if (args.stage === undefined) return { pipeline: args.pipeline };
  const match = /^([^@]+)(?:@v?(\d+))?$/.exec(args.stage);
  if (!match) throw new InputError(`--stage ${args.stage}: expected STAGE or STAGE@vN`);
  return { pipeline: args.pipeline, stage: match[1], version: match[2] === undefined ? undefined : Number(match[2]) };
}

const files = (c: { files: number; bytes: number }) => `${c.files} file${c.files === 1 ? '' : 's'}, ${formatBytes(c.bytes)}`;

function summarize(verb: string, transfers: VersionTransfer[], where: string, already: string): void {
  const created = transfers.filter((t) => t.created);
  const total = (list: VersionTransfer[], pick: (t: VersionTransfer) => { files: number; bytes: number }) =>
    list.reduce((n, t) => ({ files: n.files + pick(t).files, bytes: n.bytes + pick(t).bytes }), { files: 0, bytes: 0 });
  const present = total(transfers, (t) => t.present);
  const versions = (n: number) => `${n} version${n === 1 ? '' : 's'}`;
  print(
    `${verb} ${versions(created.length)} ${where}: ${files(total(created, (t) => t.moved))}; ` +
      `${already}: ${versions(transfers.length - created.length)}, ${present.files} file${present.files === 1 ? '' : 's'}`,
  );
}

export async function pushCommand(args: SyncArgs): Promise<number> {
  const { local, remote } = openStores(args);
  const transfers = await pushVersions(local, remote, selection(args), (t) => {
    const name = `${t.pipeline}/${t.stage}@v${t.from}`;
    print(
      t.created
        ? `  uploaded ${name} as v${t.to}: ${files(t.moved)}${t.present.files ? ` (${files(t.present)} already there)` : ''}`
        : `  already there: ${name} (v${t.to})`,
    );
  });
  summarize('uploaded', transfers, `to ${remote.url}`, 'already there');
  return EXIT_OK;
}

export async function pullCommand(args: SyncArgs & { file?: string; set: string[] }): Promise<number> {
  const report = (t: VersionTransfer) => {
    const name = `${t.pipeline}/${t.stage}@v${t.from}`;
    print(t.created ? `  downloaded ${name} as v${t.to}: ${files(t.moved)}` : `  already here: ${name} (v${t.to})`);
  };
  if (args.file === undefined) {
    const { local, remote } = openStores(args);
    summarize('downloaded', await pullVersions(local, remote, selection(args), report), `from ${remote.url}`, 'already here');
    return EXIT_OK;
  }
  if (args.pipeline !== undefined || args.stage !== undefined) {
    throw new InputError('pull FILE takes the versions from the plan: leave out --pipeline and --stage');
  }
  // Loaded only here: a pipeline file brings in the stage kinds, and with them tfjs.
  const { loadPipeline } = await import('../spec/pipeline.js');
  const { planPipeline } = await import('../engine/run.js');
  const pipeline = await loadPipeline(args.file, args.set);
  const { local, remote } = openStores(args, pipeline.store);
  const release = await local.lock(pipeline.name);
  const transfers: VersionTransfer[] = [];
  try {
    for (const plan of await planPipeline(pipeline, { store: new CachedArtifactStore(local, remote) })) {
      if (!plan.cached) {
        print(`  ${plan.stage}: stored nowhere with this fingerprint (${plan.reason}): \`pipeline run\` builds it`);
      } else if (plan.cached.remote) {
        const { transfer } = await fetchVersion(local, remote, plan.cached);
        transfers.push(transfer);
        report(transfer);
      } else {
        print(`  already here: ${pipeline.name}/${plan.stage}@v${plan.cached.version}`);
      }
    }
  } finally {
    await release();
  }
  summarize('downloaded', transfers, `from ${remote.url}`, 'already here');
  return EXIT_OK;
}
