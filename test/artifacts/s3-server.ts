import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import type { Test } from 'uvu';
import { removeTempDirs, tempDir } from '../helpers.js';

// A real S3-protocol server on loopback for tests and benchmarks: s3rver on a free port, its
// objects in a temp folder (removed by removeTempDirs), one bucket created. Point code at it through
// the SDK's standard environment (`env`), as a user would point at MinIO, or use `client` to look
// at or tamper with objects. It counts the traffic it serves, and can fail chosen requests.

export interface Traffic {
  requests: number;
  /** Request bodies received (uploads), by Content-Length. */
  bytesIn: number;
  /** Response bodies sent (downloads, listings). */
  bytesOut: number;
  /** The same, per HTTP method. */
  byMethod: Record<string, { requests: number; bytesIn: number; bytesOut: number }>;
  /** Every request, in arrival order. */
  log: (RequestInfo & { bytesIn: number; bytesOut: number })[];
}

export interface RequestInfo {
  method: string;
  /** The object key, without the bucket. */
  key: string;
}

export interface S3TestServer {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  bucket: string;
  /** The folder s3rver keeps the objects in. */
  dataDir: string;
  /** AWS_* variables that point the SDK's default chain at this server (credentials included). */
  env: Record<string, string>;
  /** s3://<bucket>/<prefix> */
  storeUrl(prefix?: string): string;
  /** A client of this server, configured explicitly (not from the environment). */
  client: S3Client;
  /** What the server has served since it started or since resetTraffic(). */
  traffic: Traffic;
  resetTraffic(): void;
  /** Answers the requests `pick` selects with HTTP 500, until called without one. */
  failRequests(pick?: (request: RequestInfo) => boolean): void;
  close(): Promise<void>;
}

export interface S3ServerOptions {
  bucket?: string;
  /**
   * Honour If-None-Match: * on PUT, as S3 (since 2024), MinIO and R2 do; s3rver 3 ignores the
   * header, so without this a second write of a key silently replaces the first. Default true.
   */
  conditionalWrites?: boolean;
}

const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export async function startS3Server(options: S3ServerOptions = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? 'tfjs-pipeline-test';
  const dataDir = await tempDir('tfjs-pipeline-s3-');
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dataDir, configureBuckets: [{ name: bucket }] });
  const fresh = (): Traffic => ({ requests: 0, bytesIn: 0, bytesOut: 0, byMethod: {}, log: [] });
  let traffic = fresh();
  let failing: ((request: RequestInfo) => boolean) | undefined;
  let conditional: Promise<unknown> = Promise.resolve();

  const keyOf = (path: string): { bucket: string; key: string } => {
    const [name, ...rest] = path.slice(1).split('/');
    return { bucket: decodeURIComponent(name), key: rest.map(decodeURIComponent).join('/') };
  };

  // Koa composes `middleware` when the server starts, so these run before s3rver's own.
  server.middleware.unshift(async (ctx, next) => {
    const method = ctx.method;
    const counts = (traffic.byMethod[method] ??= { requests: 0, bytesIn: 0, bytesOut: 0 });
    const bytesIn = Number(ctx.get('content-length') || 0);
    const entry = { method, key: keyOf(ctx.path).key, bytesIn, bytesOut: 0 };
    traffic.log.push(entry);
    traffic.requests++;
    counts.requests++;
    traffic.bytesIn += bytesIn;
    counts.bytesIn += bytesIn;
    const res = ctx.res;
    const tally = (chunk: unknown) => {
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk instanceof Uint8Array ? chunk.length : 0;
      traffic.bytesOut += n;
      counts.bytesOut += n;
      entry.bytesOut += n;
    };
    const { write, end } = res;
    res.write = ((...args: Parameters<typeof write>) => (tally(args[0]), write.apply(res, args))) as typeof write;
    res.end = ((...args: Parameters<typeof end>) => (tally(args[0]), end.apply(res, args))) as typeof end;
    if (failing?.(entry)) {
      ctx.status = 500;
      ctx.type = 'application/xml';
      ctx.body = s3Error('InternalError', 'failed on purpose by the test');
      return;
    }
    await next();
  });

  if (options.conditionalWrites ?? true) {
    server.middleware.splice(1, 0, async (ctx, next) => {
      if (ctx.method !== 'PUT' || ctx.get('if-none-match') !== '*') return next();
      // One conditional write at a time, so the check and the write cannot interleave with another's.
      const turn = conditional.then(async () => {
        const { bucket: name, key } = keyOf(ctx.path);
        if (await server.store.existsObject(name, key)) {
          ctx.status = 412;
          ctx.type = 'application/xml';
          ctx.body = s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
          return;
        }
        await next();
      });
      conditional = turn.catch(() => undefined);
      await turn;
    });
  }

  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    credentials: CREDENTIALS,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    bucket,
    dataDir,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      // Empty, so a developer's own AWS_ENDPOINT_URL_S3 cannot take precedence.
      AWS_ENDPOINT_URL_S3: '',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    },
    storeUrl: (prefix = '') => `s3://${bucket}${prefix ? `/${prefix}` : ''}`,
    client,
    get traffic() {
      return traffic;
    },
    resetTraffic: () => {
      traffic = fresh();
    },
    failRequests: (pick) => {
      failing = pick;
    },
    close: async () => {
      client.destroy();
      await server.close();
    },
  };
}

function s3Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

/**
 * One server for a uvu suite, handed to `use` once started: its AWS_* settings go into
 * process.env, each test starts with no injected failures and zeroed traffic, and after the
 * suite the server closes and the temp folders go.
 */
export function useS3Server(suite: Test, use: (server: S3TestServer) => void): void {
  let server: S3TestServer;
  suite.before(async () => {
    server = await startS3Server();
    Object.assign(process.env, server.env);
    use(server);
  });
  suite.after(async () => {
    await server.close();
    await removeTempDirs();
  });
  suite.before.each(() => {
    server.failRequests(undefined);
    server.resetTraffic();
  });
}
