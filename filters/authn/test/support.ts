// Shared by the authn filter tests: the built filter, signing keys and tokens minted with `jose`, and a
// JWKS server on loopback whose keys and availability a test can change.
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import { buildFilter } from '../../toolchain/build.ts';
import { FilterHarness, type HarnessOptions, type RunResult } from '../../../wasm/src/harness.ts';

export const FILTER_DIR = fileURLToPath(new URL('..', import.meta.url));

let built: Promise<{ wasmPath: string; bytes: Uint8Array }> | undefined;

/** Builds filters/authn (skipped when up to date). */
export function authnWasm(): Promise<{ wasmPath: string; bytes: Uint8Array }> {
  built ??= (async () => {
    const { wasmPath } = await buildFilter(FILTER_DIR, { quiet: true });
    return { wasmPath, bytes: new Uint8Array(await readFile(wasmPath)) };
  })();
  return built;
}

export const ISSUER = 'https://issuer.test';

export interface SigningKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  jwk: jose.JWK;
}

/** A fresh key pair for `alg` (RSA keys are 2048 bits unless `modulusLength` says otherwise). */
export async function signingKey(alg: string, kid = `${alg.toLowerCase()}-key`, modulusLength?: number): Promise<SigningKey> {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true, ...(modulusLength ? { modulusLength } : {}) });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey: privateKey as CryptoKey, jwk };
}

export function jwks(...keys: SigningKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.jwk) });
}

export interface MintOptions {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  /** Seconds from now; null: no exp. */
  expIn?: number | null;
  nbfIn?: number;
  iatIn?: number;
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
}

/** A token signed with `key` by jose. */
export async function mint(key: SigningKey, o: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: jose.JWTPayload = { iss: o.iss ?? ISSUER, sub: o.sub ?? 'alice', ...o.claims };
  if (o.aud !== undefined) payload.aud = o.aud;
  if (o.expIn !== null) payload.exp = now + (o.expIn ?? 3600);
  if (o.nbfIn !== undefined) payload.nbf = now + o.nbfIn;
  payload.iat = now + (o.iatIn ?? 0);
  return new jose.SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, ...o.header }).sign(key.privateKey);
}

/** An unsigned token (alg none), as jose makes it. */
export function unsecured(o: MintOptions = {}): string {
  return new jose.UnsecuredJWT({ iss: o.iss ?? ISSUER, sub: o.sub ?? 'alice', ...o.claims }).setIssuedAt().setExpirationTime('1h').encode();
}

export async function load(configuration: object, options: HarnessOptions = {}): Promise<FilterHarness> {
  const { bytes } = await authnWasm();
  return FilterHarness.load(bytes, { name: 'authn', rootId: 'authn', ...options, configuration });
}

export async function send(h: FilterHarness, headers: Record<string, string> = {}, path = '/api/v1/products'): Promise<RunResult> {
  return h.run({
    request: { headers: { ':method': 'GET', ':path': path, ':authority': 'productpage:9080', ':scheme': 'http', ...headers } },
    response: { headers: { ':status': '200' }, body: 'ok' },
  });
}

export function status(r: RunResult): number {
  return r.localResponse?.status ?? Number(r.response?.headers[':status']);
}

/** A JWKS endpoint on loopback: serve a set, fail, or count fetches. */
export class JwksServer {
  body = '{"keys":[]}';
  status = 200;
  fetches = 0;
  #server: Server;
  port = 0;

  constructor() {
    this.#server = createServer((req, res) => {
      this.fetches++;
      res.writeHead(this.status, { 'content-type': 'application/json' });
      res.end(this.status === 200 ? this.body : 'unavailable');
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  /** Stops answering at all (connections refused), as a JWKS host that is down. */
  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async restart(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(this.port, '127.0.0.1', resolve));
  }
}

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
