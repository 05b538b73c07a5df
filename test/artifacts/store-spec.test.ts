import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CachedArtifactStore } from '../../src/artifacts/cached-store.js';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { chooseStoreSpec, openArtifactStore, parseStoreSpec } from '../../src/artifacts/store-spec.js';
import { InputError } from '../../src/errors.js';

test('a folder is a local store, relative to the folder it was written in', () => {
  assert.equal(parseStoreSpec('artifacts', '--store', '/work/p'), { kind: 'local', path: '/work/p/artifacts' });
  assert.equal(parseStoreSpec('/abs/store', '--store', '/work/p'), { kind: 'local', path: '/abs/store' });
});

test('s3://bucket/prefix is a remote store; a trailing slash or no prefix is fine', () => {
  assert.equal(parseStoreSpec('s3://ml-cache/team/pipelines/', '--store'), {
    kind: 's3',
    bucket: 'ml-cache',
    prefix: 'team/pipelines',
    url: 's3://ml-cache/team/pipelines',
  });
  assert.equal(parseStoreSpec('s3://my.bucket-1', '--store'), { kind: 's3', bucket: 'my.bucket-1', prefix: '', url: 's3://my.bucket-1' });
});

test('bad store URLs are refused, naming where they came from, what is wrong and the fix', () => {
  const cases: [string, string][] = [
    ['s3://My_Bucket/x', '--store: "s3://My_Bucket/x": "My_Bucket" is not an S3 bucket name (3 to 63 lowercase letters'],
    ['s3://', '--store: "s3://": no bucket'],
    ['s3://ab', '"ab" is not an S3 bucket name'],
    ['s3://192.168.1.1/x', '"192.168.1.1" is not an S3 bucket name'],
    ['s3://bucket//x', 'an empty part in the prefix'],
    ['s3://bucket/a/../b', '".." in the prefix'],
    ['s3://bucket/x?versionId=1', 'has no query or fragment'],
    ['gs://bucket/x', 'gs:// stores are not supported: give a folder or s3://bucket/prefix'],
    ['', 'the store is empty'],
  ];
  for (const [spec, message] of cases) {
    try {
      parseStoreSpec(spec, '--store');
      assert.unreachable(`${spec} was accepted`);
    } catch (err) {
      assert.instance(err, InputError, spec);
      assert.match((err as Error).message, message, spec);
    }
  }
});

test('--store wins over the file; the file over the default folder "artifacts"', () => {
  const file = parseStoreSpec('s3://from-file/x', 'file');
  assert.equal(chooseStoreSpec('s3://from-cli/y', file), parseStoreSpec('s3://from-cli/y', '--store'));
  assert.equal(chooseStoreSpec(undefined, file), file);
  assert.equal(chooseStoreSpec(undefined), { kind: 'local', path: join(process.cwd(), 'artifacts') });
});

test('an s3 store opens as the remote with the --cache folder in front of it', async () => {
  const local = await openArtifactStore(parseStoreSpec('/tmp/x', '--store'));
  assert.instance(local, LocalArtifactStore);
  const cached = await openArtifactStore(parseStoreSpec('s3://bucket/p', '--store'), '/tmp/cache');
  assert.instance(cached, CachedArtifactStore);
  assert.is(cached.root, '/tmp/cache');
  assert.is((cached as CachedArtifactStore).remote.url, 's3://bucket/p');
});

test.run();
