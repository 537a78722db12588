// npm run bench:jwt: what JWT verification costs per request, with cached keys, through the wasm
// runtime the proxy uses (the authn filter, the host's jws_verify), for ES256 and RS256 tokens,
// against the same filter on a request without a token (the path without authentication) and
// node:crypto's verify alone (the floor). Rounds alternate between the cases so the shared machine's
// noise hits them alike; ratios are from the same run. Writes its section of bench/RESULTS.md.
import os from 'node:os';
import { readFile } from 'node:fs/promises';
import { constants, createPublicKey, verify } from 'node:crypto';
import * as jose from 'jose';
import { Plugin, compileModule, MetricsRegistry, type HeaderList, type HttpStreamSink, type LocalResponse, type StreamInfo } from '../../../wasm/src/index.ts';
import { buildFilter } from '../../toolchain/build.ts';
import { writeResultsSection } from '../../../scripts/bench-results.ts';

const ROUNDS = Number(process.env.JWT_BENCH_ROUNDS ?? 5);
const REQUESTS = Number(process.env.JWT_BENCH_REQUESTS ?? 2000);
const ISSUER = 'https://issuer.bench';

class CountingSink implements HttpStreamSink {
  passed = 0;
  local = 0;
  requestHeaders(_h: HeaderList, _e: boolean): void {
    this.passed++;
  }
  requestData(): void {}
  requestTrailers(): void {}
  responseHeaders(): void {}
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(_r: LocalResponse): void {
    this.local++;
  }
  reset(): void {}
}

async function key(alg: string) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: alg, alg };
  const token = await new jose.SignJWT({ iss: ISSUER, sub: 'alice', aud: 'bench', groups: ['a', 'b'] })
    .setProtectedHeader({ alg, kid: alg })
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(privateKey);
  return { alg, jwk, token };
}

function headers(token?: string): HeaderList {
  const h = [':method', 'GET', ':path', '/api/v1/products', ':authority', 'productpage:9080', ':scheme', 'http', 'user-agent', 'bench', 'accept', '*/*'];
  if (token) h.push('authorization', `Bearer ${token}`);
  return h;
}

/** ns per request: one stream each, request headers through the filter. */
function runStreams(plugin: Plugin, list: HeaderList, n: number, info: StreamInfo): number {
  const sink = new CountingSink();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const s = plugin.createHttpStream(sink, Object.create(info) as StreamInfo);
    // A fresh list each time: the filter removes the token header from the list it is given.
    s.requestHeaders(list.slice(), true);
    s.finish();
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink.passed !== n) throw new Error(`only ${sink.passed} of ${n} requests passed (${sink.local} local replies): the bench would measure failures`);
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const { wasmPath } = await buildFilter(new URL('..', import.meta.url).pathname, { quiet: true });
  const es = await key('ES256');
  const rs = await key('RS256');
  const config = { rules: [{ issuer: ISSUER, audiences: ['bench'], jwks: JSON.stringify({ keys: [es.jwk, rs.jwk] }) }] };
  const compiled = await compileModule(new Uint8Array(await readFile(wasmPath)), { name: 'authn' });
  const metrics = new MetricsRegistry();
  const plugin = await Plugin.load(compiled, { name: 'authn', rootId: 'authn', configuration: config, logLevel: 'warn' }, { metrics, log: () => {} });
  const verified = () => metrics.snapshot().find((x) => x.name === 'authn_requests_total' && JSON.stringify(x).includes('verified'));
  const info: StreamInfo = { sourceAddress: '127.0.0.1:5000', destinationAddress: '127.0.0.1:9080', mtls: false };

  // node:crypto alone, keys imported once: the floor for the host's part.
  const floor = (t: { alg: string; jwk: jose.JWK; token: string }) => {
    const k = createPublicKey({ key: t.jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    const [h, p, s] = t.token.split('.');
    const input = Buffer.from(`${h}.${p}`);
    const sig = Buffer.from(s!, 'base64url');
    const opts = t.alg === 'ES256' ? { key: k, dsaEncoding: 'ieee-p1363' as const } : { key: k, padding: constants.RSA_PKCS1_PADDING };
    return () => {
      if (!verify('sha256', input, opts, sig)) throw new Error('floor: bad signature');
    };
  };
  const esFloor = floor(es);
  const rsFloor = floor(rs);
  const time = (fn: () => void, n: number) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Number(process.hrtime.bigint() - t0) / n;
  };

  const cases = {
    none: headers(),
    es256: headers(es.token),
    rs256: headers(rs.token),
  };
  // Warm-up: JIT, the host's key cache.
  for (const list of Object.values(cases)) runStreams(plugin, list, 300, info);
  const results: Record<string, number[]> = { none: [], es256: [], rs256: [], esFloor: [], rsFloor: [] };
  for (let r = 0; r < ROUNDS; r++) {
    results.none!.push(runStreams(plugin, cases.none, REQUESTS, info));
    results.es256!.push(runStreams(plugin, cases.es256, REQUESTS, info));
    results.rs256!.push(runStreams(plugin, cases.rs256, REQUESTS, info));
    results.esFloor!.push(time(esFloor, REQUESTS));
    results.rsFloor!.push(time(rsFloor, REQUESTS));
  }
  // Every token request must have been verified, or the figures would be of requests that were not.
  const expected = 2 * (300 + ROUNDS * REQUESTS);
  if (verified()?.value !== expected) throw new Error(`${String(verified()?.value)} requests verified, expected ${expected}`);
  await plugin.stop();
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<keyof typeof results, number>;
  const us = (ns: number) => (ns / 1000).toFixed(1);
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const rows = [
    ['no token (the path without authentication)', m.none, m.none, undefined],
    ['ES256 token, cached keys', m.es256, m.none, m.esFloor],
    ['RS256 (2048-bit) token, cached keys', m.rs256, m.none, m.rsFloor],
  ] as const;
  const table = rows
    .map(([what, ns, ref, fl]) => `| ${what} | ${us(ns)} | ${(ns / ref).toFixed(1)}x | ${fl === undefined ? '-' : `${us(fl)} (${((fl / ns) * 100).toFixed(0)} % of the request)`} |`)
    .join('\n');
  const text = `## JWT verification (npm run bench:jwt)

Machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, Node.js ${process.version}, load average ${load} while it ran.
Command: \`npm run bench:jwt\` (${ROUNDS} alternating rounds of ${REQUESTS} requests per case; medians).

The authn filter (filters/authn) in the wasm runtime the proxy uses, one stream per request, request
headers only (no proxy, no sockets). Keys inline, so cached in the guest and imported once in the host.

| request | µs per request | vs no token | node:crypto verify alone |
|---|---|---|---|
${table}

What verification adds per request: ES256 ${us(m.es256 - m.none)} µs, RS256 ${us(m.rs256 - m.none)} µs; the signature check itself
(node:crypto, the floor) is ${us(m.esFloor)} µs and ${us(m.rsFloor)} µs of that. The rest is the guest's work (splitting,
base64url, two JSON parses, claims) and the foreign call.
`;
  process.stdout.write(`${text}\n`);
  await writeResultsSection(text);
}

await main();
