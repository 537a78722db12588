// The demo's token issuer: an ES256 key made at start, its JWKS served over HTTP on loopback (what a
// RequestAuthentication's jwksUri points at), and tokens signed with node:crypto. A demo tool, not
// an identity provider: no login, tokens for whoever the demo names.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export const DEMO_ISSUER = 'https://issuer.demo.wasmesh.local';
export const DEMO_AUDIENCE = 'bookinfo';

const b64url = (v: object | Buffer): string => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString('base64url');

export class DemoIssuer {
  readonly kid = 'demo-es256';
  readonly #privateKey: KeyObject;
  readonly #jwks: string;
  readonly #server: Server;
  port = 0;

  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#privateKey = privateKey;
    this.#jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: this.kid, alg: 'ES256', use: 'sig' }] });
    this.#server = createServer((req, res) => {
      if (req.url !== '/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(this.#jwks);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get jwksUri(): string {
    return `http://127.0.0.1:${this.port}/jwks.json`;
  }

  /** A token for `sub`, valid for `ttlSeconds`. */
  token(sub: string, ttlSeconds = 24 * 3600): string {
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64url({ alg: 'ES256', kid: this.kid, typ: 'JWT' })}.${b64url({ iss: DEMO_ISSUER, sub, aud: DEMO_AUDIENCE, iat: now, exp: now + ttlSeconds, groups: ['readers'] })}`;
    return `${input}.${b64url(sign('sha256', Buffer.from(input), { key: this.#privateKey, dsaEncoding: 'ieee-p1363' }))}`;
  }

  /** A token whose payload was changed after signing (sub "admin"): what an attacker would try. */
  forged(): string {
    const [header, , signature] = this.token('alice').split('.');
    const now = Math.floor(Date.now() / 1000);
    return `${header}.${b64url({ iss: DEMO_ISSUER, sub: 'admin', aud: DEMO_AUDIENCE, iat: now, exp: now + 3600 })}.${signature}`;
  }

  /** RequestAuthentication + AuthorizationPolicy: productpage's /api/* needs a valid token from this issuer. */
  documents(namespace: string): object[] {
    return [
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'RequestAuthentication',
        metadata: { name: 'productpage-jwt', namespace },
        spec: {
          selector: { matchLabels: { app: 'productpage' } },
          jwtRules: [{ issuer: DEMO_ISSUER, audiences: [DEMO_AUDIENCE], jwksUri: this.jwksUri, outputClaimToHeaders: [{ header: 'x-jwt-sub', claim: 'sub' }] }],
        },
      },
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'productpage-api-requires-jwt', namespace },
        spec: {
          selector: { matchLabels: { app: 'productpage' } },
          action: 'DENY',
          rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }], to: [{ operation: { paths: ['/api/*'] } }] }],
        },
      },
    ];
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
