// The header read timeout runs from accept: a connection that never sends a byte, sends an HTTP/2
// preface but no stream, starts a head it never finishes, or starts a TLS handshake it never
// completes is closed after the timeout, on plaintext, PERMISSIVE (sniffing) and STRICT listeners.
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MtlsConfig, ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { proxyConfig } from './support/config.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa } from './support/test-ca.ts';

const TIMEOUT_MS = 400;
/** Generous: only catches a connection left open, never measures speed. */
const MARGIN_MS = 2500;

let app: TestServer;
const proxies: Proxy[] = [];

function withMtls(mode: MtlsConfig['mode']): ProxyConfig {
  const config = proxyConfig({});
  return { ...config, mtls: { mode }, version: `${config.version.slice(0, 40)}-${mode}` };
}

async function sidecar(mode: MtlsConfig['mode']): Promise<Proxy> {
  const ca = await createTestCa();
  const proxy = await Proxy.start(
    {
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
      appPort: app.port,
      accessLog: 'off',
      connections: { headersTimeoutMs: TIMEOUT_MS },
      identity: new MemoryIdentity(await ca.issue('default', 'reviews')),
    },
    withMtls(mode),
  );
  proxies.push(proxy);
  return proxy;
}

/** Connects, sends `send` (if any), then waits; resolves with how long until the proxy closed it and what it answered. */
function silentFor(port: number, send?: Buffer | string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = net.connect(port, '127.0.0.1', () => {
      if (send !== undefined) s.write(send);
    });
    let answer = '';
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(guard);
      resolve({ ms: Date.now() - started, answer });
    });
    const guard = setTimeout(() => {
      s.destroy();
      reject(new Error(`connection still open after ${TIMEOUT_MS + MARGIN_MS} ms`));
    }, TIMEOUT_MS + MARGIN_MS);
  });
}

function closedOnTime(r: { ms: number }, what: string): void {
  assert.ok(r.ms >= TIMEOUT_MS - 50, `${what}: closed after ${r.ms} ms, before the timeout`);
  assert.ok(r.ms <= TIMEOUT_MS + MARGIN_MS, `${what}: closed after ${r.ms} ms`);
}

/** The start of a TLS ClientHello record, never finished. */
const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00]);

test.before(async () => {
  app = await startHttp1('app');
});

test.after(async () => {
  await Promise.all(proxies.map((p) => p.stop(100)));
  await app.close();
});

test('plaintext listener (DISABLE, and the outbound side): silent, HTTP/2 preface only, and half a head are closed after the timeout', async () => {
  const proxy = await sidecar('DISABLE');
  for (const port of [proxy.inboundPort, proxy.outboundPort]) {
    const silent = await silentFor(port);
    closedOnTime(silent, 'silent');
    assert.is(silent.answer, '');
    closedOnTime(await silentFor(port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'h2 preface without a stream');
    const half = await silentFor(port, 'GET / HTTP/1.1\r\nhost: x\r\n');
    closedOnTime(half, 'half a head');
    assert.match(half.answer, /^HTTP\/1.1 408/, 'a started head gets 408, as Node answers');
  }
  // A request in time is unaffected.
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'app' } })).status, 200);
});

test('PERMISSIVE: silent, and a TLS handshake that never completes, are closed after the timeout', async () => {
  const proxy = await sidecar('PERMISSIVE');
  closedOnTime(await silentFor(proxy.inboundPort), 'silent');
  closedOnTime(await silentFor(proxy.inboundPort, PARTIAL_CLIENT_HELLO), 'partial ClientHello');
  closedOnTime(await silentFor(proxy.inboundPort, 'GET / HTTP/1.1\r\n'), 'half a plaintext head');
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'app' } })).status, 200);
});

test('STRICT: silent, and a TLS handshake that never completes, are closed after the timeout', async () => {
  const proxy = await sidecar('STRICT');
  const silent = await silentFor(proxy.inboundPort);
  closedOnTime(silent, 'silent');
  assert.is(silent.answer, '');
  closedOnTime(await silentFor(proxy.inboundPort, PARTIAL_CLIENT_HELLO), 'partial ClientHello');
  const text = (await request(proxy.adminPort, { path: '/stats/prometheus' })).body;
  assert.match(text, /^wasmesh_proxy_mtls_refused_connections_total\{reason="handshake_failed"\} 2$/m, 'stalled handshakes count as failed');
});

test.run();
