// HTTP/2 (cleartext prior knowledge, and TLS with ALPN) and gRPC through the proxy, with real
// @grpc/grpc-js clients and servers: unary and every streaming kind, metadata and status codes.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createListener } from '../src/listener/listener.ts';
import type { Proxy } from '../src/proxy.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, startHttp2, type TestServer } from './support/servers.ts';

const packageDef = protoLoader.loadSync(new URL('./fixtures/greeter.proto', import.meta.url).pathname, { keepCase: true });
const proto = grpc.loadPackageDefinition(packageDef) as unknown as { wasmesh: { test: { Greeter: grpc.ServiceClientConstructor } } };
const Greeter = proto.wasmesh.test.Greeter;

let h2up: TestServer;
let h1up: TestServer;
let grpcServer: grpc.Server;
let grpcPort = 0;
let proxy: Proxy;

test.before(async () => {
  h2up = await startHttp2('h2-upstream');
  h1up = await startHttp1('h1-upstream');
  grpcServer = new grpc.Server();
  grpcServer.addService(Greeter.service, {
    SayHello(call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      if (call.request.name === 'missing') return cb({ code: grpc.status.NOT_FOUND, details: 'no such person' });
      const md = new grpc.Metadata();
      md.set('x-greeter', 'v1');
      call.sendMetadata(md);
      cb(null, { message: `hello ${call.request.name} (${call.metadata.get('x-caller')[0] ?? 'anonymous'})` });
    },
    Countdown(call: grpc.ServerWritableStream<{ name: string; count: number }, unknown>) {
      for (let i = call.request.count; i > 0; i--) call.write({ message: `${call.request.name} ${i}` });
      const trailer = new grpc.Metadata();
      trailer.set('x-done', 'yes');
      call.end(trailer);
    },
    Collect(call: grpc.ServerReadableStream<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const names: string[] = [];
      call.on('data', (m: { name: string }) => names.push(m.name));
      call.on('end', () => cb(null, { message: names.join('+') }));
    },
    Chat(call: grpc.ServerDuplexStream<{ name: string }, unknown>) {
      call.on('data', (m: { name: string }) => call.write({ message: `echo ${m.name}` }));
      call.on('end', () => call.end());
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  proxy = await startProxy(
    proxyConfig({
      clusters: [
        cluster('outbound|80||h2', [{ port: h2up.port }], { protocol: 'http2' }),
        cluster('outbound|80||h1', [{ port: h1up.port }]),
        cluster('outbound|50051||greeter', [{ port: grpcPort }], { protocol: 'grpc' }),
      ],
      virtualHosts: [
        { name: 'h2', domains: ['h2'], routes: [forward('h2', 'outbound|80||h2')] },
        { name: 'h1', domains: ['h1'], routes: [forward('h1', 'outbound|80||h1')] },
        { name: 'greeter', domains: ['greeter', 'greeter:50051'], routes: [forward('greeter', 'outbound|50051||greeter')] },
      ],
    }),
    grpcPort,
  );
});

test.after(async () => {
  await proxy.stop(100);
  await Promise.all([h2up.close(), h1up.close()]);
  grpcServer.forceShutdown();
});

function h2request(port: number, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request(headers, { endStream: body === undefined });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (responseHeaders = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ headers: responseHeaders, body: Buffer.concat(chunks).toString() });
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

test('HTTP/2 prior knowledge on the outbound port, to an HTTP/2 upstream and to an HTTP/1.1 upstream', async () => {
  const toH2 = await h2request(proxy.outboundPort, { ':path': '/a', ':authority': 'h2', ':method': 'POST' }, 'payload');
  assert.is(toH2.headers[':status'], 200);
  const seen = JSON.parse(toH2.body);
  assert.is(seen.upstream, 'h2-upstream');
  assert.is(seen.body, 'payload');
  assert.is(seen.headers[':authority'], 'h2');
  const toH1 = await h2request(proxy.outboundPort, { ':path': '/b', ':authority': 'h1' });
  assert.is(JSON.parse(toH1.body).upstream, 'h1-upstream');
  assert.is(JSON.parse(toH1.body).headers.host, 'h1');
  // And plain HTTP/1.1 on the same port still works.
  const plain = await request(proxy.outboundPort, { headers: { host: 'h2' } });
  assert.is(JSON.parse(plain.body).upstream, 'h2-upstream');
});

function client(): InstanceType<typeof Greeter> {
  return new Greeter(`127.0.0.1:${proxy.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'greeter' });
}

test('gRPC unary through the outbound listener: message, metadata both ways, error status', async () => {
  const c = client();
  try {
    const md = new grpc.Metadata();
    md.set('x-caller', 'productpage');
    let initial: grpc.Metadata | undefined;
    const reply = await new Promise<{ message: string }>((resolve, reject) => {
      const call = c.SayHello({ name: 'jason' }, md, (err: grpc.ServiceError | null, r: { message: string }) => (err ? reject(err) : resolve(r)));
      call.on('metadata', (m: grpc.Metadata) => (initial = m));
    });
    assert.is(reply.message, 'hello jason (productpage)');
    assert.equal(initial?.get('x-greeter'), ['v1']);
    const err = await new Promise<grpc.ServiceError>((resolve) => c.SayHello({ name: 'missing' }, (e: grpc.ServiceError) => resolve(e)));
    assert.is(err.code, grpc.status.NOT_FOUND);
    assert.is(err.details, 'no such person');
  } finally {
    c.close();
  }
});

test('gRPC server streaming keeps trailers; client streaming and bidi streaming work', async () => {
  const c = client();
  try {
    const messages: string[] = [];
    let trailer: grpc.Metadata | undefined;
    await new Promise<void>((resolve, reject) => {
      const call = c.Countdown({ name: 'launch', count: 3 });
      call.on('data', (m: { message: string }) => messages.push(m.message));
      call.on('status', (s: grpc.StatusObject) => (trailer = s.metadata));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    assert.equal(messages, ['launch 3', 'launch 2', 'launch 1']);
    assert.equal(trailer?.get('x-done'), ['yes']);

    const collected = await new Promise<{ message: string }>((resolve, reject) => {
      const call = c.Collect((err: grpc.ServiceError | null, r: { message: string }) => (err ? reject(err) : resolve(r)));
      for (const name of ['a', 'b', 'c']) call.write({ name });
      call.end();
    });
    assert.is(collected.message, 'a+b+c');

    const echoes = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = c.Chat();
      call.on('data', (m: { message: string }) => {
        got.push(m.message);
        if (got.length < 3) call.write({ name: `n${got.length}` });
        else call.end();
      });
      call.on('end', () => resolve(got));
      call.on('error', reject);
      call.write({ name: 'n0' });
    });
    assert.equal(echoes, ['echo n0', 'echo n1', 'echo n2']);
  } finally {
    c.close();
  }
});

test('gRPC through the inbound listener to the local app, and a route miss as a gRPC status', async () => {
  const inbound = new Greeter(`127.0.0.1:${proxy.inboundPort}`, grpc.credentials.createInsecure());
  const unknown = new Greeter(`127.0.0.1:${proxy.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'nowhere' });
  try {
    const reply = await new Promise<{ message: string }>((resolve, reject) =>
      inbound.SayHello({ name: 'inbound' }, (err: grpc.ServiceError | null, r: { message: string }) => (err ? reject(err) : resolve(r))),
    );
    assert.is(reply.message, 'hello inbound (anonymous)');
    const err = await new Promise<grpc.ServiceError>((resolve) => unknown.SayHello({ name: 'x' }, (e: grpc.ServiceError) => resolve(e)));
    assert.is(err.code, grpc.status.UNIMPLEMENTED, 'no route: 404 maps to UNIMPLEMENTED');
  } finally {
    inbound.close();
    unknown.close();
  }
});

test('an HTTP/2 upstream that refuses connections is a connection failure (503 UF), not a reset', async () => {
  const refused = await startProxy(
    proxyConfig({ clusters: [cluster('outbound|80||gone', [{ port: 1 }], { protocol: 'http2' })], virtualHosts: [{ name: 'gone', domains: ['gone'], routes: [forward('gone', 'outbound|80||gone')] }] }),
  );
  try {
    const r = await request(refused.outboundPort, { headers: { host: 'gone' } });
    assert.is(r.status, 503);
    assert.match(r.body, 'connection failure');
    const stats = (await request(refused.adminPort, { path: '/stats/prometheus' })).body;
    assert.match(stats, /wasmesh_proxy_upstream_failures_total\{cluster="outbound\|80\|\|gone",response_flag="UF"\} 1/);
  } finally {
    await refused.stop(100);
  }
});

test('TLS listener negotiates h2 and http/1.1 by ALPN', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'));
    const listener = await createListener({
      host: '127.0.0.1',
      port: 0,
      tls: { key, cert },
      onRequest: (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${req.httpVersion} ${(req.socket as { alpnProtocol?: string }).alpnProtocol ?? ''}`);
      },
    });
    try {
      const viaH2 = await new Promise<string>((resolve, reject) => {
        const s = http2.connect(`https://localhost:${listener.port}`, { ca: cert });
        s.on('error', reject);
        const r = s.request({ ':path': '/' });
        let body = '';
        r.on('data', (c: Buffer) => (body += c));
        r.on('end', () => {
          s.close();
          resolve(body);
        });
        r.end();
      });
      assert.is(viaH2, '2.0 h2');
      // curl runs as its own process (asynchronously: the server is in this one).
      const { stdout } = await promisify(execFile)('curl', ['-s', '-m', '5', '--http1.1', '--cacert', join(dir, 'cert.pem'), `https://localhost:${listener.port}/`]);
      assert.is(stdout, '1.1 http/1.1');
    } finally {
      listener.destroy();
      await listener.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
