import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { ServeError } from './status.js';

// Optional request authentication (TF Serving has none; it is meant to sit behind a proxy):
//
// - API keys: "Authorization: Bearer <key>" or "x-api-key: <key>", one of the keys in
//   --api-key-file (one per line).
// - HMAC-signed requests: x-timestamp (Unix seconds), x-nonce (16-128 of [A-Za-z0-9_-]) and
//   x-signature = hex HMAC-SHA256(key, METHOD \n PATH?QUERY \n TIMESTAMP \n NONCE \n hex SHA-256(body)),
//   with a key from --hmac-key-file. A timestamp off by more than the allowed skew is stale; a
//   nonce is accepted once while its timestamp is fresh (replays are refused).
//
// With both configured either one admits a request. Keys are compared in constant time, as
// digests, so neither their content nor their length leaks through timing.

export interface AuthOptions {
  apiKeys?: string[];
  hmacKeys?: string[];
  /** How far x-timestamp may be from the server's clock (default 300 s). */
  hmacMaxSkewSeconds?: number;
  /** Nonces remembered at once; beyond it signed requests get 503 until old ones expire. */
  maxNonces?: number;
}

export const DEFAULT_HMAC_SKEW_SECONDS = 300;
const NONCE = /^[A-Za-z0-9_-]{16,128}$/;

/** Keys from a file: one per line, blank lines and # comments ignored. */
export async function readKeyFile(path: string, option: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new InputError(`${option} ${path}: cannot read the key file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const keys = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (keys.length === 0) throw new InputError(`${option} ${path}: the file holds no key (one key per line; # starts a comment)`);
  const short = keys.findIndex((k) => k.length < 16);
  if (short >= 0) throw new InputError(`${option} ${path}: key ${short + 1} is shorter than 16 characters; use long random keys (openssl rand -hex 32)`);
  return keys;
}

/** The signature headers for a request, as a client computes them (tests, the bench and the README use it). */
export function signRequest(
  key: string,
  request: { method: string; path: string; body?: string | Buffer },
  now = Date.now(),
  nonce = randomBytes(16).toString('hex'),
): Record<string, string> {
  const timestamp = String(Math.floor(now / 1000));
  return { 'x-timestamp': timestamp, 'x-nonce': nonce, 'x-signature': hmacHex(key, request.method, request.path, timestamp, nonce, request.body ?? '') };
}

function hmacHex(key: string, method: string, path: string, timestamp: string, nonce: string, body: string | Buffer): string {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', key).update([method.toUpperCase(), path, timestamp, nonce, bodyHash].join('\n')).digest('hex');
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const unauthenticated = (message: string) => new ServeError('UNAUTHENTICATED', message);

export class Authenticator {
  private readonly apiKeys: Buffer[];
  private readonly hmacKeys: string[];
  private readonly skew: number;
  private readonly maxNonces: number;
  /** nonce -> when it may be forgotten (ms): by then its timestamp is stale anyway. */
  private readonly nonces = new Map<string, number>();

  constructor(options: AuthOptions) {
    this.apiKeys = (options.apiKeys ?? []).map(digest);
    this.hmacKeys = options.hmacKeys ?? [];
    this.skew = options.hmacMaxSkewSeconds ?? DEFAULT_HMAC_SKEW_SECONDS;
    this.maxNonces = options.maxNonces ?? 1_000_000;
  }

  get enabled(): boolean {
    return this.apiKeys.length > 0 || this.hmacKeys.length > 0;
  }

  get usesApiKeys(): boolean {
    return this.apiKeys.length > 0;
  }

  /**
   * Checks what can be checked before the body is read. Returns "hmac" when the signature
   * remains to be verified over the body (verifySignature), "ok" when admitted.
   */
  checkHeaders(headers: Record<string, string | string[] | undefined>, now = Date.now()): 'ok' | 'hmac' {
    if (!this.enabled) return 'ok';
    const auth = header(headers, 'authorization');
    const bearer = auth && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : undefined;
    const key = bearer ?? header(headers, 'x-api-key');
    const signed = header(headers, 'x-signature') !== undefined;
    if (key !== undefined && this.apiKeys.length) {
      const d = digest(key);
      // Every key is compared, so the time taken does not say which one matched.
      let ok = false;
      for (const k of this.apiKeys) ok = timingSafeEqual(d, k) || ok;
      if (ok) return 'ok';
      if (!signed || !this.hmacKeys.length) throw unauthenticated('invalid API key (Authorization: Bearer <key> or x-api-key: <key>, a key from --api-key-file)');
    }
    if (signed && this.hmacKeys.length) {
      this.checkFreshness(header(headers, 'x-timestamp'), header(headers, 'x-nonce'), now);
      return 'hmac';
    }
    const ways = [
      this.apiKeys.length ? 'an API key ("Authorization: Bearer <key>" or "x-api-key: <key>")' : '',
      this.hmacKeys.length ? 'an HMAC signature (x-signature, x-timestamp and x-nonce headers)' : '',
    ].filter(Boolean);
    throw unauthenticated(`this server requires ${ways.join(' or ')}`);
  }

  /** Verifies x-signature over method, path with query, timestamp, nonce and body, then spends the nonce. */
  verifySignature(method: string, path: string, headers: Record<string, string | string[] | undefined>, body: Buffer, now = Date.now()): void {
    const timestamp = header(headers, 'x-timestamp')!;
    const nonce = header(headers, 'x-nonce')!;
    const given = (header(headers, 'x-signature') ?? '').trim().replace(/^sha256=/i, '').toLowerCase();
    const givenBytes = /^[0-9a-f]{64}$/.test(given) ? Buffer.from(given, 'hex') : undefined;
    let ok = false;
    for (const key of this.hmacKeys) {
      const want = Buffer.from(hmacHex(key, method, path, timestamp, nonce, body), 'hex');
      ok = (givenBytes !== undefined && timingSafeEqual(givenBytes, want)) || ok;
    }
    if (!ok) {
      throw unauthenticated(
        'bad HMAC signature: x-signature must be hex HMAC-SHA256(key, METHOD\\nPATH?QUERY\\nx-timestamp\\nx-nonce\\nhex SHA-256(body)) with a key from --hmac-key-file',
      );
    }
    // Only a correctly signed request spends its nonce: others cannot burn a client's nonces.
    this.forgetExpired(now);
    if (this.nonces.has(nonce)) throw unauthenticated(`replayed request: nonce "${nonce}" was already used; send a fresh x-nonce with every request`);
    if (this.nonces.size >= this.maxNonces) {
      throw new ServeError('UNAVAILABLE', `too many signed requests within ${this.skew} s (${this.maxNonces} nonces held); retry shortly`);
    }
    this.nonces.set(nonce, (Number(timestamp) + this.skew + 1) * 1000);
  }

  private checkFreshness(timestamp: string | undefined, nonce: string | undefined, now: number): void {
    if (!timestamp || !/^[0-9]{1,12}$/.test(timestamp)) {
      throw unauthenticated('signed request without a valid x-timestamp header (Unix time in seconds)');
    }
    if (!nonce || !NONCE.test(nonce)) throw unauthenticated('signed request without a valid x-nonce header (16 to 128 characters of A-Z, a-z, 0-9, _ and -)');
    const offBy = Math.abs(now / 1000 - Number(timestamp));
    if (offBy > this.skew) {
      throw unauthenticated(
        `stale request: x-timestamp ${timestamp} is ${Math.round(offBy)} s from the server's clock (${Math.floor(now / 1000)}); at most ${this.skew} s is accepted`,
      );
    }
  }

  private forgetExpired(now: number): void {
    // Amortised: a full sweep only once the map has doubled since the last one.
    if (this.nonces.size < Math.max(1024, 2 * this.sweptAt) && this.nonces.size < this.maxNonces) return;
    for (const [n, until] of this.nonces) if (until <= now) this.nonces.delete(n);
    this.sweptAt = this.nonces.size;
  }

  private sweptAt = 0;
}
