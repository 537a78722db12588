// DestinationRule tls SIMPLE and MUTUAL: the proxy originates TLS to a real TLS server, verifies it
// against caCertificates and its name, presents the client certificate for MUTUAL, re-reads the
// files when they change, and fails (503) with the reason instead of going plaintext.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClusterTlsConfig, UpstreamProtocol } from '../../mesh/src/proxy-config.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { request } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const NAME = 'api.example.test';
let dir: string;
let ca: TestCa;
let simpleServer: https.Server;
let mutualServer: https.Server;
let h2Server: http2.Http2SecureServer;
const proxies: Proxy[] = [];

const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
};

async function listen(server: https.Server | http2.Http2SecureServer): Promise<number> {
  if (!server.listening) await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** A proxy whose only route goes to `port` with `tls`; resolves with a function that calls it. */
async function via(port: number, tls: ClusterTlsConfig, protocol: UpstreamProtocol = 'http1'): Promise<() => Promise<{ status: number; body: string }>> {
  const name = `outbound|443||${NAME}`;
  const config = proxyConfig({
    virtualHosts: [{ name: 'api', domains: ['api'], routes: [forward('api', name)] }],
    clusters: [{ ...cluster(name, [{ port }], { protocol, host: NAME }), tls }],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
  proxies.push(proxy);
  return () => request(proxy.outboundPort, { path: '/', headers: { host: 'api' } });
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-tls-origination-'));
  ca = await createTestCa('origination root');
  const server = await ca.issueServer([NAME]);
  const answer = (tag: string) => (req: http.IncomingMessage, res: http.ServerResponse) =>
    res.end(JSON.stringify({ upstream: tag, client: (req.socket as TLSSocket).getPeerCertificate()?.subject?.CN ?? null }));
  simpleServer = https.createServer({ key: server.keyPem, cert: server.certPem }, answer('simple'));
  mutualServer = https.createServer({ key: server.keyPem, cert: server.certPem, ca: ca.rootPem, requestCert: true, rejectUnauthorized: true }, answer('mutual'));
  h2Server = http2.createSecureServer({ key: server.keyPem, cert: server.certPem }, (_req, res) => res.end(JSON.stringify({ upstream: 'h2' })));
});

test.after(async () => {
  await Promise.all(proxies.map((p) => p.stop(100)));
  for (const s of [simpleServer, mutualServer, h2Server]) {
    if (!s.listening) continue;
    if ('closeAllConnections' in s) s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  rmSync(dir, { recursive: true, force: true });
});

test('SIMPLE: TLS verified against caCertificates and the server name (sni); a wrong root or name is 503', async () => {
  const port = await listen(simpleServer);
  const caFile = file('ca.pem', ca.rootPem);
  const ok = await via(port, { mode: 'SIMPLE', subjectAltNames: [], caCertificates: caFile, sni: NAME });
  const res = await ok();
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'simple');
  // The cluster host is the name checked when no sni is given.
  assert.is((await (await via(port, { mode: 'SIMPLE', subjectAltNames: [], caCertificates: caFile }))()).status, 200);
  // The system roots do not know the test root.
  const systemRoots = await (await via(port, { mode: 'SIMPLE', subjectAltNames: [] }))();
  assert.is(systemRoots.status, 503);
  assert.match(systemRoots.body, /connection failure/);
  const wrongName = await (await via(port, { mode: 'SIMPLE', subjectAltNames: ['other.example.test'], caCertificates: caFile }))();
  assert.is(wrongName.status, 503);
  assert.match(wrongName.body, /matches none of other.example.test/);
  // insecureSkipVerify: no verification at all.
  assert.is((await (await via(port, { mode: 'SIMPLE', subjectAltNames: [], insecureSkipVerify: true }))()).status, 200);
});

test('SIMPLE over HTTP/2 (ALPN h2)', async () => {
  const port = await listen(h2Server);
  const call = await via(port, { mode: 'SIMPLE', subjectAltNames: [NAME], caCertificates: file('ca-h2.pem', ca.rootPem) }, 'http2');
  const res = await call();
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'h2');
});

test('MUTUAL: the client certificate from the files is presented; SIMPLE to the same server is refused', async () => {
  const port = await listen(mutualServer);
  const client = await ca.issueServer(['productpage.client']);
  const caFile = file('ca-m.pem', ca.rootPem);
  const mutual = await via(port, { mode: 'MUTUAL', subjectAltNames: [], caCertificates: caFile, clientCertificate: file('client.pem', client.certPem), privateKey: file('client-key.pem', client.keyPem) });
  const res = await mutual();
  assert.is(res.status, 200, res.body);
  assert.equal(JSON.parse(res.body), { upstream: 'mutual', client: 'productpage.client' });
  assert.is((await (await via(port, { mode: 'SIMPLE', subjectAltNames: [], caCertificates: caFile }))()).status, 503);
});

test('a missing file fails the request with its name; a changed file is picked up', async () => {
  const port = await listen(simpleServer);
  const missing = await (await via(port, { mode: 'SIMPLE', subjectAltNames: [], caCertificates: join(dir, 'nope.pem') }))();
  assert.is(missing.status, 503);
  assert.match(missing.body, `cannot read ${join(dir, 'nope.pem')}: ENOENT`);
  // The roots file first holds another root (refused), then the right one.
  const other = await createTestCa('unrelated root');
  const caFile = file('rotating.pem', other.rootPem);
  const call = await via(port, { mode: 'SIMPLE', subjectAltNames: [], caCertificates: caFile });
  assert.is((await call()).status, 503);
  file('rotating.pem', ca.rootPem);
  const deadline = Date.now() + 8000;
  let status = 0;
  while (Date.now() < deadline && (status = (await call()).status) !== 200) await new Promise((r) => setTimeout(r, 200));
  assert.is(status, 200, 'the new roots were read');
});

test.run();
