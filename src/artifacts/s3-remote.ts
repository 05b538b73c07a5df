import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
  type ListObjectsV2CommandInput,
} from '@aws-sdk/client-s3';
import { InputError, IntegrityError, PipelineError } from '../errors.js';
import { mapLimit } from '../util/concurrency.js';
import { MANIFEST_FILE, sameOutput, serializeManifest, type Manifest } from './manifest.js';
import { assertSafeName, faultPoint, isSafeName, type StoredVersion } from './store.js';

// The remote half of a store on S3, or on anything speaking its protocol (MinIO, Ceph, R2, s3rver).
// The second layout we own besides store.ts's, under s3://<bucket>/<prefix>/:
//
//   .blobs/sha256/<ab>/<sha256>                 a file's bytes, named by their hash: written once,
//                                               shared by every version (and stage) holding them
//   <pipeline>/<stage>/v<N>/manifest.json       a version: the local store's manifest, byte for byte
//   <pipeline>/<stage>/.fingerprints/<fp>/v<N>  an empty index entry, so one LIST finds a fingerprint
//
// S3 has no rename, so the order of writes is the atomicity: blobs first, the manifest last, the
// index entry after it. A version is visible only through its manifest, so an upload that dies
// midway leaves unreferenced blobs, which the retry finds and skips. A version whose index entry is
// missing (died just after its manifest) is still found: lookups read the manifests of unindexed
// versions. Nothing is ever overwritten or deleted, so concurrent machines cannot corrupt the remote.
//
// Version numbers: the manifest is written with If-None-Match: * (honoured by S3 since 2024, MinIO
// and R2), so of two machines claiming vN one gets 412 and takes the next number. For servers that
// ignore the header (s3rver 3), a HEAD before the write and a read-back after it catch a claim lost
// to an earlier or later writer; two writers within the same round trip can still both believe
// they wrote vN there, and the one overwritten loses its version (its blobs stay, its local copy
// too, and `pipeline push` uploads it again).

const HEX64 = /^[0-9a-f]{64}$/;
const VERSION_KEY = /^v([1-9][0-9]*)\/manifest\.json$/;
const INDEX_KEY = /^\.fingerprints\/([0-9a-f]{64})\/v([1-9][0-9]*)$/;
/** Requests in flight per version: enough to hide S3's latency, few enough to bound memory. */
const CONCURRENCY = 4;
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const CLAIM_ATTEMPTS = 20;

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing "/"; "" for the bucket's root. */
  prefix: string;
}

export interface TransferCount {
  files: number;
  bytes: number;
}

export interface UploadResult {
  /** The version's number on the remote (the local one when it was free there). */
  version: number;
  /** False when the remote held this output already. */
  created: boolean;
  uploaded: TransferCount;
  /** Files whose bytes the remote held already (identical files are stored once). */
  present: TransferCount;
}

/**
 * A client configured from the standard AWS chain: endpoint (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL
 * or endpoint_url in ~/.aws/config), region (AWS_REGION, AWS_PROFILE's), credentials (AWS_ACCESS_KEY_ID
 * and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, instance roles).
 */
export function s3ClientFromEnvironment(): S3Client {
  // The SDK warns on every command that its releases after January 2027 need Node 22. This tool
  // runs on Node 20 (the product's platform) with the SDK version its lock file pins, so the
  // warning tells a user nothing they can act on; set the variable to "false" to see it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    // Path-style URLs (endpoint/bucket/key) work on AWS and on every S3-compatible server; the
    // default virtual-hosted style (bucket.endpoint/key) needs a DNS name per bucket, which
    // MinIO, s3rver or Ceph on host:port do not have.
    forcePathStyle: true,
    // The SDK's default CRC32 trailers (aws-chunked bodies) are stored verbatim, framing and all,
    // by servers that predate them (s3rver 3); every blob carries its sha256 anyway, sent as
    // x-amz-checksum-sha256 on upload and checked on download.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export class S3Remote {
  /** s3://bucket/prefix, for messages. */
  readonly url: string;
  private readonly bucket: string;
  private readonly base: string;

  constructor(location: S3Location, private readonly client: S3Client = s3ClientFromEnvironment()) {
    this.bucket = location.bucket;
    this.base = location.prefix ? `${location.prefix}/` : '';
    this.url = `s3://${location.bucket}${location.prefix ? `/${location.prefix}` : ''}`;
  }

  /** s3://bucket/key of an object, for messages. */
  describeKey(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  blobKey(sha256: string): string {
    return `${this.base}.blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  private stagePrefix(pipeline: string, stage: string): string {
    assertSafeName('pipeline', pipeline);
    assertSafeName('stage', stage);
    return `${this.base}${pipeline}/${stage}/`;
  }

  private manifestKey(pipeline: string, stage: string, version: number): string {
    return `${this.stagePrefix(pipeline, stage)}v${version}/${MANIFEST_FILE}`;
  }

  private versionUrl(pipeline: string, stage: string, version: number): string {
    return `${this.url}/${pipeline}/${stage}/v${version}`;
  }

  async listPipelines(): Promise<string[]> {
    // Blob keys (".blobs/...") sort before every name (names start with a letter or digit), so the
    // listing starts after them instead of reading through them.
    return this.listChildren(this.base, `${this.base}.blobs0`);
  }

  async listStages(pipeline: string): Promise<string[]> {
    assertSafeName('pipeline', pipeline);
    return this.listChildren(`${this.base}${pipeline}/`);
  }

  /** The published version numbers of a stage, and which fingerprint the index gives each. */
  async listStage(pipeline: string, stage: string): Promise<{ versions: number[]; indexed: Map<number, string> }> {
    const prefix = this.stagePrefix(pipeline, stage);
    const versions: number[] = [];
    const indexed = new Map<number, string>();
    for (const key of await this.listKeys({ Prefix: prefix })) {
      const rest = key.slice(prefix.length);
      const version = VERSION_KEY.exec(rest);
      if (version) versions.push(Number(version[1]));
      const index = INDEX_KEY.exec(rest);
      if (index) indexed.set(Number(index[2]), index[1]);
    }
    return { versions: versions.sort((a, b) => a - b), indexed };
  }

  async listVersions(pipeline: string, stage: string): Promise<StoredVersion[]> {
    const { versions } = await this.listStage(pipeline, stage);
    return mapLimit(versions, CONCURRENCY, (n) => this.openVersion(pipeline, stage, n));
  }

  /** One version by its manifest; undefined when the remote has no such version. */
  async openVersion(pipeline: string, stage: string, version: number): Promise<StoredVersion>;
  async openVersion(pipeline: string, stage: string, version: number, options: { missingOk: true }): Promise<StoredVersion | undefined>;
  async openVersion(pipeline: string, stage: string, version: number, options?: { missingOk: true }): Promise<StoredVersion | undefined> {
    const key = this.manifestKey(pipeline, stage, version);
    const text = await this.readText(key, 'reading the manifest', options?.missingOk);
    if (text === undefined) return undefined;
    const manifest = parseManifest(text, { pipeline, stage, version }, this.describeKey(key));
    const url = this.versionUrl(pipeline, stage, version);
    return { pipeline, stage, version, dir: url, manifest, remote: url };
  }

  /** The newest version with this fingerprint. */
  async findByFingerprint(pipeline: string, stage: string, fingerprint: string): Promise<StoredVersion | undefined> {
    return this.newest(pipeline, stage, fingerprint, (m) => m.fingerprint === fingerprint);
  }

  /** A version holding the same output as `manifest` (sameOutput), whatever its number. */
  async findSame(manifest: Manifest): Promise<StoredVersion | undefined> {
    return this.newest(manifest.pipeline, manifest.stage, manifest.fingerprint, (m) => sameOutput(m, manifest));
  }

  /** Reads only the manifests the index points at for `fingerprint`, and those of unindexed versions. */
  private async newest(pipeline: string, stage: string, fingerprint: string, accept: (m: Manifest) => boolean): Promise<StoredVersion | undefined> {
    const { versions, indexed } = await this.listStage(pipeline, stage);
    for (const n of versions.filter((v) => (indexed.get(v) ?? fingerprint) === fingerprint).reverse()) {
      const version = await this.openVersion(pipeline, stage, n, { missingOk: true });
      if (version && accept(version.manifest)) return version;
    }
    return undefined;
  }

  /**
   * Uploads a local version (files at `v.dir`): the blobs the remote lacks, then the manifest under
   * v.version when that number is free on the remote, else the next one, then its index entry.
   */
  async upload(v: StoredVersion): Promise<UploadResult> {
    const uploaded: TransferCount = { files: 0, bytes: 0 };
    const present: TransferCount = { files: 0, bytes: 0 };
    const same = await this.findSame(v.manifest);
    if (same) {
      for (const digest of Object.values(v.manifest.files)) count(present, digest.bytes);
      return { version: same.version, created: false, uploaded, present };
    }
    await mapLimit(Object.entries(v.manifest.files), CONCURRENCY, async ([file, digest]) => {
      const key = this.blobKey(digest.sha256);
      if (await this.exists(key)) return count(present, digest.bytes);
      const path = join(v.dir, file);
      // A buffer, not a stream: the SDK retries a failed PUT by sending the body again.
      const body = await readFile(path);
      const actual = createHash('sha256').update(body).digest('hex');
      if (actual !== digest.sha256) {
        throw new IntegrityError(`${path} was changed after it was stored (sha256 ${actual}, manifest ${digest.sha256}): not uploading it`);
      }
      await this.call(
        () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: body,
              ContentLength: body.length,
              ContentType: 'application/octet-stream',
              ChecksumSHA256: Buffer.from(digest.sha256, 'hex').toString('base64'),
            }),
          ),
        `uploading ${file} of ${label(v)} to`,
        key,
      );
      count(uploaded, digest.bytes);
    });
    await faultPoint('remote-before-manifest');
    const claimed = await this.claimVersion(v);
    if (claimed.created) {
      const index = `${this.stagePrefix(v.pipeline, v.stage)}.fingerprints/${v.manifest.fingerprint}/v${claimed.version}`;
      await this.call(() => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: index, Body: '', ContentLength: 0 })), 'indexing', index);
    }
    return { version: claimed.version, created: claimed.created, uploaded, present };
  }

  private async claimVersion(v: StoredVersion): Promise<{ version: number; created: boolean }> {
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const { versions } = await this.listStage(v.pipeline, v.stage);
      const version = attempt === 0 && !versions.includes(v.version) ? v.version : Math.max(0, ...versions) + 1;
      const key = this.manifestKey(v.pipeline, v.stage, version);
      const body = serializeManifest({ ...v.manifest, version });
      if (await this.exists(key)) continue;
      try {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json', IfNoneMatch: '*' }),
        );
      } catch (err) {
        // 412: another writer has this number; 409: a concurrent conditional write, retry.
        if (httpStatus(err) !== 412 && httpStatus(err) !== 409) throw this.failure(err, `writing the manifest of ${label(v)} to`, key);
        const same = await this.findSame(v.manifest);
        if (same) return { version: same.version, created: false };
        continue;
      }
      if ((await this.readText(key, 'reading back the manifest')) === body) return { version, created: true };
    }
    throw new PipelineError(
      'E_REMOTE',
      `could not claim a version number for ${label(v)} on ${this.url} in ${CLAIM_ATTEMPTS} attempts: ` +
        'other machines keep publishing this stage; run `pipeline push` again',
      1,
    );
  }

  /** Downloads a remote version's files into `dir`, each checked against its manifest as it streams. */
  async download(v: StoredVersion, dir: string): Promise<TransferCount> {
    const downloaded: TransferCount = { files: 0, bytes: 0 };
    await mapLimit(Object.entries(v.manifest.files), CONCURRENCY, async ([file, digest]) => {
      const key = this.blobKey(digest.sha256);
      const object = `${this.describeKey(key)} (${file} of ${label(v)})`;
      const response = await this.call(
        () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })),
        `downloading ${file} of ${label(v)} from`,
        key,
      );
      const target = join(dir, file);
      await mkdir(dirname(target), { recursive: true });
      const hash = createHash('sha256');
      let bytes = 0;
      const check = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          // A hostile or broken server could stream forever: stop at the first byte too many.
          if (bytes > digest.bytes) {
            callback(new IntegrityError(`${object} is longer than the ${digest.bytes} bytes its manifest lists (expected sha256 ${digest.sha256}): ${REFUSED}`));
            return;
          }
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      await pipeline(response.Body as Readable, check, createWriteStream(target, { flags: 'wx' }));
      const actual = hash.digest('hex');
      if (actual !== digest.sha256 || bytes !== digest.bytes) {
        throw new IntegrityError(
          `${object} does not match its manifest: expected sha256 ${digest.sha256} (${digest.bytes} bytes), ` +
            `got sha256 ${actual} (${bytes} bytes): ${REFUSED}`,
        );
      }
      count(downloaded, bytes);
    });
    return downloaded;
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw this.failure(err, 'looking for', key);
    }
  }

  private async readText(key: string, action: string, missingOk = false): Promise<string | undefined> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if ((response.ContentLength ?? 0) > MAX_MANIFEST_BYTES) {
        (response.Body as Readable).destroy();
        throw new IntegrityError(`${this.describeKey(key)} is ${response.ContentLength} bytes, not a manifest (at most ${MAX_MANIFEST_BYTES}): ${REFUSED}`);
      }
      return await response.Body!.transformToString('utf8');
    } catch (err) {
      if (missingOk && httpStatus(err) === 404) return undefined;
      throw this.failure(err, action, key);
    }
  }

  private async listKeys(input: Omit<ListObjectsV2CommandInput, 'Bucket'>): Promise<string[]> {
    const keys: string[] = [];
    await this.call(async () => {
      for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, ...input })) {
        for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      }
    }, 'listing', input.Prefix ?? '');
    return keys;
  }

  /**
   * The first path segments of the keys under `prefix`. Read from every key rather than asked for
   * with Delimiter: "/", which s3rver 3 answers wrongly for keys more than one level deeper.
   */
  private async listChildren(prefix: string, startAfter?: string): Promise<string[]> {
    const names = new Set<string>();
    for (const key of await this.listKeys({ Prefix: prefix, StartAfter: startAfter })) {
      const name = key.slice(prefix.length).split('/')[0];
      if (isSafeName(name)) names.add(name);
    }
    return [...names].sort();
  }

  private async call<T>(run: () => Promise<T>, action: string, key: string): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.failure(err, action, key);
    }
  }

  /** An SDK error as one of ours, naming the object and what to do about it. */
  private failure(err: unknown, action: string, key: string): Error {
    if (err instanceof PipelineError) return err;
    const e = err as Error & { code?: string; Code?: string };
    const where = this.describeKey(key);
    const endpoint = process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL;
    const server = endpoint ? `the S3 endpoint ${endpoint}` : 'AWS S3';
    const network = e.code ?? (e.cause as { code?: string } | undefined)?.code ?? '';
    if (e.name === 'NoSuchBucket') {
      return new InputError(`${action} ${where}: bucket "${this.bucket}" does not exist on ${server}: create it, or fix the store URL`);
    }
    if (/region is missing/i.test(e.message)) {
      return new InputError(`${action} ${where}: no AWS region is configured: set AWS_REGION (any region, e.g. us-east-1, for MinIO or s3rver)`);
    }
    if (e.name === 'CredentialsProviderError' || /could not load credentials/i.test(e.message)) {
      return new InputError(`${action} ${where}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`);
    }
    if (httpStatus(err) === 403 || ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(e.name)) {
      return new InputError(`${action} ${where}: ${server} refused the request (${e.name}): check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and their permissions on the bucket`);
    }
    if (/^(ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|EHOSTUNREACH)$/.test(network)) {
      return new PipelineError('E_REMOTE', `${action} ${where}: cannot reach ${server} (${network}): check AWS_ENDPOINT_URL and the network`, 1, { cause: err });
    }
    return new PipelineError('E_REMOTE', `${action} ${where} failed: ${e.name}: ${e.message}`, 1, { cause: err });
  }
}

const REFUSED = 'refusing to use it: delete the object, and the next push or run that produces this file uploads it again';

function label(v: { pipeline: string; stage: string; version: number }): string {
  return `${v.pipeline}/${v.stage}@v${v.version}`;
}

function count(total: TransferCount, bytes: number): void {
  total.files++;
  total.bytes += bytes;
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/**
 * A manifest read from a remote, checked before anything is trusted: the version it claims to be,
 * and file names that stay inside the version's folder (a hostile manifest must not write
 * ../../.bashrc on download).
 */
export function parseManifest(text: string, expected: { pipeline: string; stage: string; version: number }, where: string): Manifest {
  const refuse = (why: string): never => {
    throw new IntegrityError(`${where} is not a valid manifest (${why}): ${REFUSED}`);
  };
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (err) {
    return refuse(`not JSON: ${(err as Error).message}`);
  }
  if (typeof m !== 'object' || m === null || m.schemaVersion !== 1) return refuse('schemaVersion is not 1');
  for (const field of ['pipeline', 'stage', 'version'] as const) {
    if (m[field] !== expected[field]) refuse(`its ${field} is ${JSON.stringify(m[field])}, its key says ${JSON.stringify(expected[field])}`);
  }
  if (typeof m.fingerprint !== 'string' || !HEX64.test(m.fingerprint)) refuse('fingerprint is not a sha256');
  if (typeof m.files !== 'object' || m.files === null) refuse('no files');
  for (const [file, digest] of Object.entries(m.files)) {
    const parts = file.split('/');
    if (file === MANIFEST_FILE || parts.some((p) => p === '' || p === '.' || p === '..' || /[\\\0]/.test(p))) {
      refuse(`file name ${JSON.stringify(file)} would leave the version's folder`);
    }
    if (!HEX64.test(digest?.sha256) || !Number.isSafeInteger(digest?.bytes) || digest.bytes < 0) {
      refuse(`file ${JSON.stringify(file)} has no valid sha256 and size`);
    }
  }
  return m;
}
