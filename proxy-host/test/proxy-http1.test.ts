// The data path over HTTP/1.1 with real servers on loopback: routing by authority, splits, header
// handling, local replies, timeouts, upstream failures, inbound forwarding, admin.
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import type { Proxy } from '../src/proxy.ts';

let reviewsV1: TestServer;
let reviewsV2: TestServer;
let ratings: TestServer;
let slow: TestServer;
let app: TestServer;
let proxy: Proxy;

test.before(async () => {
  reviewsV1 = await startHttp1('reviews-v1');
  reviewsV2 = await startHttp1('reviews-v2');
  ratings = await startHttp1('ratings');
  app = await startHttp1('app');
  slow = await startHttp1('slow', (_req, res) => {
    const t = setTimeout(() => res.end('late'), 2000);
    res.on('close', () => clearTimeout(t));
  });
  const config = proxyConfig({
    clusters: [
      cluster('outbound|9080|v1|reviews', [{ port: reviewsV1.port }]),
      cluster('outbound|9080|v2|reviews', [{ port: reviewsV2.port }]),
      cluster('outbound|9080||ratings', [{ port: ratings.port }]),
      cluster('outbound|9080||slow', [{ port: slow.port }]),
      cluster('outbound|9080||dead', [{ port: 1 }]),
      cluster('outbound|9080||empty', []),
    ],
    virtualHosts: [
      {
        name: 'reviews',
        domains: ['reviews', 'reviews:9080'],
        routes: [
          {
            name: 'reviews/jason',
            match: [{ headers: { 'end-user': { exact: 'jason' } } }],
            action: { kind: 'forward', destinations: [{ cluster: 'outbound|9080|v2|reviews', weight: 100 }], timeoutMs: 0 },
            requestHeaders: { set: { 'x-route': 'jason' } },
            responseHeaders: { add: { 'x-served-by': 'mesh' }, remove: ['x-upstream-secret'] },
          },
          {
            name: 'reviews/split',
            match: [],
            action: {
              kind: 'forward',
              destinations: [
                { cluster: 'outbound|9080|v1|reviews', weight: 90 },
                { cluster: 'outbound|9080|v2|reviews', weight: 10 },
              ],
              timeoutMs: 0,
            },
          },
        ],
      },
      {
        name: 'ratings',
        domains: ['ratings'],
        routes: [
          { name: 'ratings/redirect', match: [{ uri: { exact: '/old' } }], action: { kind: 'redirect', uri: '/new', status: 301 } },
          { name: 'ratings/direct', match: [{ uri: { prefix: '/health' } }], action: { kind: 'direct', status: 200, body: 'healthy' } },
          { name: 'ratings/rewrite', match: [{ uri: { prefix: '/v1/' } }], action: { kind: 'forward', destinations: [{ cluster: 'outbound|9080||ratings', weight: 100 }], rewriteUri: '/api/', timeoutMs: 0 } },
          forward('ratings/default', 'outbound|9080||ratings'),
        ],
      },
      { name: 'slow', domains: ['slow'], routes: [forward('slow/default', 'outbound|9080||slow', {}, 200)] },
      { name: 'dead', domains: ['dead'], routes: [forward('dead/default', 'outbound|9080||dead')] },
      { name: 'empty', domains: ['empty'], routes: [forward('empty/default', 'outbound|9080||empty')] },
    ],
  });
  proxy = await startProxy(config, app.port);
});

test.after(async () => {
  await proxy.stop(100);
  await Promise.all([reviewsV1, reviewsV2, ratings, slow, app].map((s) => s.close()));
});

test('routes by Host and strips hop-by-hop headers, adds x-forwarded-* and x-request-id', async () => {
  const r = await request(proxy.outboundPort, { path: '/ratings/1', headers: { host: 'ratings', connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'x-forwarded-for': '10.0.0.1' } });
  assert.is(r.status, 200);
  const seen = JSON.parse(r.body);
  assert.is(seen.upstream, 'ratings');
  assert.is(seen.url, '/ratings/1');
  assert.is(seen.headers['x-hop'], undefined, 'headers named in Connection are dropped');
  assert.is(seen.headers['keep-alive'], undefined);
  assert.is(seen.headers['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
  assert.is(seen.headers['x-forwarded-proto'], 'http');
  assert.match(seen.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  assert.is(seen.headers.host, 'ratings');
});

test('keeps an x-request-id the client sent', async () => {
  const r = await request(proxy.outboundPort, { headers: { host: 'ratings', 'x-request-id': 'abc-123' } });
  assert.is(JSON.parse(r.body).headers['x-request-id'], 'abc-123');
});

test('header match routes one user to v2 with request and response header operations', async () => {
  const r = await request(proxy.outboundPort, { headers: { host: 'reviews:9080', 'end-user': 'jason' } });
  assert.is(r.headers['x-upstream'], 'reviews-v2');
  assert.is(JSON.parse(r.body).headers['x-route'], 'jason');
  assert.is(r.headers['x-served-by'], 'mesh');
});

test('a 90/10 split holds over many requests', async () => {
  const counts: Record<string, number> = {};
  const n = 400;
  for (let i = 0; i < n; i++) {
    const r = await request(proxy.outboundPort, { headers: { host: 'reviews' } });
    const u = String(r.headers['x-upstream']);
    counts[u] = (counts[u] ?? 0) + 1;
  }
  const v2 = (counts['reviews-v2'] ?? 0) / n;
  // Binomial(400, 0.1): sd 1.5 points; 5 sd either side.
  assert.ok(v2 > 0.025 && v2 < 0.175, `v2 share ${v2}`);
  assert.is((counts['reviews-v1'] ?? 0) + (counts['reviews-v2'] ?? 0), n);
});

test('redirect, direct response and prefix rewrite', async () => {
  const redirect = await request(proxy.outboundPort, { path: '/old?x=1', headers: { host: 'ratings' } });
  assert.is(redirect.status, 301);
  assert.is(redirect.headers.location, 'http://ratings/new?x=1');
  const direct = await request(proxy.outboundPort, { path: '/health', headers: { host: 'ratings' } });
  assert.is(direct.status, 200);
  assert.is(direct.body, 'healthy');
  const rewritten = await request(proxy.outboundPort, { path: '/v1/items?id=3', headers: { host: 'ratings' } });
  assert.is(JSON.parse(rewritten.body).url, '/api/items?id=3');
});

test('unknown host is 404 (NR); no endpoints 503 (UH); refused connection 503 (UF)', async () => {
  const nr = await request(proxy.outboundPort, { headers: { host: 'nowhere' } });
  assert.is(nr.status, 404);
  const uh = await request(proxy.outboundPort, { headers: { host: 'empty' } });
  assert.is(uh.status, 503);
  assert.match(uh.body, 'no healthy upstream');
  const uf = await request(proxy.outboundPort, { headers: { host: 'dead' } });
  assert.is(uf.status, 503);
  assert.match(uf.body, 'upstream connect error');
});

test('route timeout answers 504 and cancels the upstream request', async () => {
  const started = Date.now();
  const r = await request(proxy.outboundPort, { headers: { host: 'slow' } });
  assert.is(r.status, 504);
  assert.ok(Date.now() - started < 1500, 'answered at the timeout, not when the upstream finished');
});

test('request bodies stream through, large ones too', async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 'x');
  const r = await request(proxy.outboundPort, { method: 'POST', path: '/upload', headers: { host: 'ratings', 'content-type': 'text/plain' }, body: big });
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body).body.length, big.length);
});

function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let out = '';
    socket.on('data', (c) => {
      out += c.toString();
      if (/\r\n\r\n/.test(out) && (/content-length: 0\r\n/i.test(out) || out.includes('"upstream"'))) socket.end();
    });
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('raw exchange timed out')));
  });
}

test('chunked request bodies stream through; a malformed request is answered 400', async () => {
  const chunked = await rawExchange(
    proxy.outboundPort,
    'POST /chunked HTTP/1.1\r\nhost: ratings\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  );
  assert.match(chunked, /^HTTP\/1\.1 200/);
  assert.match(chunked, '"body":"hello world"');
  const bad = await rawExchange(proxy.outboundPort, 'GARBAGE / NOT-HTTP\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400/);
});

test('Expect: 100-continue is answered by the proxy and the body goes up once', async () => {
  const { stdout } = await promisify(execFile)('curl', ['-s', '-m', '5', '-H', 'host: ratings', '-H', 'expect: 100-continue', '--data-binary', 'x'.repeat(2048), `http://127.0.0.1:${proxy.outboundPort}/continue`]);
  const seen = JSON.parse(stdout);
  assert.is(seen.body.length, 2048);
  assert.is(seen.headers.expect, undefined);
});

test('inbound listener forwards to the local app', async () => {
  const r = await request(proxy.inboundPort, { path: '/local', headers: { host: 'test.default' } });
  assert.is(JSON.parse(r.body).upstream, 'app');
  assert.is(JSON.parse(r.body).url, '/local');
});

test('admin: prometheus stats, config dump, clusters, ready', async () => {
  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.is(stats.status, 200);
  assert.match(stats.body, /wasmesh_proxy_requests_total\{direction="outbound"\} \d+/);
  assert.match(stats.body, /wasmesh_proxy_responses_total\{direction="outbound",response_code_class="5xx"\} [1-9]/);
  const dump = JSON.parse((await request(proxy.adminPort, { path: '/config_dump' })).body);
  assert.is(dump.status.version, proxy.config.version);
  const clusters = JSON.parse((await request(proxy.adminPort, { path: '/clusters' })).body);
  assert.ok(clusters.some((c: { name: string }) => c.name === 'outbound|9080|v1|reviews'));
  assert.is((await request(proxy.adminPort, { path: '/ready' })).status, 200);
});

test.run();
