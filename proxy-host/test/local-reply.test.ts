// A filter's local reply, as a client of a running proxy receives it (Envoy's rules): a plain HTTP
// request gets an HTTP reply with the body and `content-type: text/plain`, even when the filter passed
// a gRPC status (as the AssemblyScript SDK's send_local_response invites); a gRPC request gets the
// trailers-only gRPC form. The harness answers alike (wasm/test/harness.test.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { localReplyWat } from '../../wasm/test/support/local-reply-filter.ts';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import type { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const ctx = {} as { dir: string; app: TestServer; proxies: Proxy[] };

test.before(async () => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-local-reply-'));
  ctx.app = await startHttp1('app');
  ctx.proxies = [];
});

test.after(async () => {
  await Promise.all(ctx.proxies.map((p) => p.stop(0)));
  await ctx.app.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

/** A proxy whose outbound filter answers every request with `spec`. */
async function proxyAnswering(name: string, spec: Parameters<typeof localReplyWat>[0]): Promise<Proxy> {
  const file = join(ctx.dir, `${name}.wasm`);
  writeFileSync(file, await wat2wasm(localReplyWat(spec)));
  const proxy = await startProxy(
    proxyConfig({
      virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
      clusters: [cluster('app', [{ port: ctx.app.port }])],
      outboundFilters: [filterBinding(name, file)],
    }),
  );
  ctx.proxies.push(proxy);
  return proxy;
}

/** One HTTP/2 (prior knowledge) request: the response headers, body and trailers. */
function h2Request(port: number, headers: http2.OutgoingHttpHeaders): Promise<{ headers: http2.IncomingHttpHeaders; body: string; trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request(headers, { endStream: true });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    let body = '';
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (body += d));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve({ headers: responseHeaders, body, trailers });
    });
  });
}

test('a plain HTTP request gets an HTTP reply with the body and text/plain, whatever gRPC status the filter passed', async () => {
  const proxy = await proxyAnswering('reject', { status: 401, body: 'missing x-api-key', grpcStatus: 16 });
  const before = ctx.app.received.length;
  const r = await request(proxy.outboundPort, { path: '/', headers: { host: 'app' } });
  assert.is(r.status, 401);
  assert.is(r.body, 'missing x-api-key');
  assert.is(r.headers['content-type'], 'text/plain');
  assert.is(r.headers['grpc-status'], undefined);
  assert.is(r.headers['grpc-message'], undefined);
  assert.is(ctx.app.received.length, before, 'the app saw nothing');
  const h2 = await h2Request(proxy.outboundPort, { ':method': 'GET', ':path': '/', ':authority': 'app' });
  assert.is(h2.headers[':status'], 401, 'over HTTP/2 too');
  assert.is(h2.headers['content-type'], 'text/plain');
  assert.is(h2.body, 'missing x-api-key');
});

test('a gRPC request gets the trailers-only gRPC form: grpc-status, grpc-message, application/grpc, no body', async () => {
  const proxy = await proxyAnswering('reject-grpc', { status: 401, body: 'missing x-api-key', grpcStatus: 16 });
  const r = await h2Request(proxy.outboundPort, { ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'app', 'content-type': 'application/grpc', te: 'trailers' });
  assert.is(r.headers[':status'], 401);
  assert.is(r.headers['content-type'], 'application/grpc');
  // The proxy's HTTP/2 writer ends the stream with a trailers frame; a gRPC client reads either.
  const status = { ...r.headers, ...r.trailers };
  assert.is(status['grpc-status'], '16');
  assert.is(status['grpc-message'], 'missing x-api-key');
  assert.is(r.body, '');
});

test('the filter’s own content-type stays; an empty reply gets none', async () => {
  const json = await proxyAnswering('json', { status: 429, body: '{"retry":true}', grpcStatus: -1, headers: [['content-type', 'application/json']] });
  const r = await request(json.outboundPort, { path: '/', headers: { host: 'app' } });
  assert.is(r.headers['content-type'], 'application/json');
  assert.is(r.body, '{"retry":true}');
  const empty = await proxyAnswering('empty', { status: 403, body: '', grpcStatus: 7 });
  const e = await request(empty.outboundPort, { path: '/', headers: { host: 'app' } });
  assert.is(e.status, 403);
  assert.is(e.headers['content-type'], undefined);
  assert.is(e.headers['grpc-status'], undefined);
});

test.run();
