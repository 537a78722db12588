// npm run bench:mtls: what mTLS costs between two wasmesh sidecars. (1) Connection rate: new
// connections per second to a server sidecar's inbound listener, each opened, used for one request and
// closed: with mTLS (STRICT, a client certificate, full handshake every time) versus plaintext
// (DISABLE). (2) Throughput of the pair outbound -> inbound -> app over keep-alive connections, with
// ISTIO_MUTUAL + STRICT versus plaintext, with autocannon. Both modes in the same run. A benchmark, not
// a test: it prints a table and writes it into bench/RESULTS.md (its own section; every other section
// of the file is kept, scripts/bench-results.ts).
//
// Processes: the app, the server sidecar and the client sidecar each in their own child, autocannon in
// another; this file is all of them (modes below). Certificates: a throwaway CA made here (the test
// CA helper), handed to the sidecars through a temp dir removed at the end.
// Environment: BENCH_DURATION (s of throughput per mode, default 8), BENCH_WARMUP (s, default 2),
// BENCH_HANDSHAKE (s of connection rate per mode, default 5), BENCH_CONNECTIONS (default 32).
import { AUTOCANNON_VERSION, TASKSET, runAutocannon, type Load } from './load.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { RESULTS_FILE, writeResultsSection } from '../../scripts/bench-results.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
const RESULTS = RESULTS_FILE;
const SECTION = '## mTLS (npm run bench:mtls)';
const CLUSTER = 'outbound|9080||reviews.default.svc.cluster.local';
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/reviews';

type Mode = 'mtls' | 'plain';

function num(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

interface PemSet {
  keyPem: string;
  certChainPem: string;
  trustBundlePem: string[];
}

// ---- child modes ------------------------------------------------------------------------------

async function runApp(): Promise<void> {
  // @ts-expect-error plain ESM helper without types
  const { announceReady, exitWith } = await import('./child-lifecycle.mjs');
  const body = Buffer.from('{"ok":true,"pad":"' + 'x'.repeat(80) + '"}\n');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  announceReady({ port: (server.address() as { port: number }).port });
  exitWith(() => new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  }));
}

async function identityFrom(file: string) {
  const { workloadCertificate } = await import('../src/identity/certs.ts');
  const { MemoryIdentity } = await import('../src/identity/static-identity.ts');
  const p = JSON.parse(readFileSync(file, 'utf8')) as PemSet;
  return new MemoryIdentity(workloadCertificate(p.keyPem, p.certChainPem, p.trustBundlePem));
}

/** The server sidecar: inbound (STRICT with mTLS, DISABLE without) -> app. */
async function runServer(mode: Mode, appPort: number, certFile: string): Promise<void> {
  // @ts-expect-error plain ESM helper without types
  const { announceReady, exitWith } = await import('./child-lifecycle.mjs');
  const { Proxy } = await import('../src/proxy.ts');
  const { proxyConfig } = await import('../test/support/config.ts');
  const base = proxyConfig({});
  const config = { ...base, mtls: { mode: mode === 'mtls' ? ('STRICT' as const) : ('DISABLE' as const) }, version: `${base.version}-${mode}` };
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off', identity: await identityFrom(certFile) }, config);
  announceReady({ port: proxy.inboundPort });
  exitWith(() => proxy.stop(200));
}

/** The client sidecar: outbound -> the server's inbound (ISTIO_MUTUAL with mTLS, plaintext without). */
async function runClient(mode: Mode, serverPort: number, certFile: string): Promise<void> {
  // @ts-expect-error plain ESM helper without types
  const { announceReady, exitWith } = await import('./child-lifecycle.mjs');
  const { Proxy } = await import('../src/proxy.ts');
  const { cluster, forward, proxyConfig } = await import('../test/support/config.ts');
  const c = cluster(CLUSTER, [{ port: serverPort }], { host: 'bench' });
  const config = proxyConfig({
    clusters: [mode === 'mtls' ? { ...c, tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [SERVER_ID] } } : c],
    virtualHosts: [{ name: 'bench', domains: ['bench'], routes: [forward('bench/default', CLUSTER)] }],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: await identityFrom(certFile) }, config);
  announceReady({ port: proxy.outboundPort });
  exitWith(() => proxy.stop(200));
}

// ---- the bench --------------------------------------------------------------------------------

const children = new Set<ChildProcess>();


function startChild(args: string[], cpu: number): Promise<{ cp: ChildProcess; port: number }> {
  const nodeArgs = ['--import', 'tsx', SELF, ...args];
  const cp = TASKSET
    ? spawn(TASKSET, ['-c', String(cpu), process.execPath, ...nodeArgs], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(process.execPath, nodeArgs, { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`child ${args.join(' ')} not ready after 30 s`)), 30_000);
    cp.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /BENCH_READY (\{.*\})/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ cp, port: (JSON.parse(m[1]!) as { port: number }).port });
      }
    });
    cp.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child ${args.join(' ')} exited (${code}) before it was ready`));
    });
  });
}

async function stopChild(cp: ChildProcess): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = new Promise<void>((r) => cp.once('exit', () => r()));
  cp.kill('SIGTERM');
  const t = setTimeout(() => cp.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

const autocannon = (port: number, seconds: number, connections: number): Promise<Load> => runAutocannon(port, seconds, connections, children);

interface Rate {
  perSecond: number;
  ok: number;
  failed: number;
  /** Median time from connect() to the response's end, ms. */
  p50: number;
}

/**
 * New connections per second to the server sidecar's inbound port, `parallel` at a time for `seconds`:
 * each connects (TLS with the client certificate in mTLS mode), sends one request with
 * `Connection: close`, reads the whole answer, and closes. No session resumption.
 */
async function connectionRate(mode: Mode, port: number, client: PemSet, seconds: number, parallel: number): Promise<Rate> {
  const deadline = Date.now() + seconds * 1000;
  const times: number[] = [];
  let failed = 0;
  // One client context for every connection (as a sidecar keeps one): the PEMs are parsed once.
  const secureContext = tls.createSecureContext({ key: client.keyPem, cert: client.certChainPem, ca: client.trustBundlePem });
  const once = () =>
    new Promise<boolean>((resolve) => {
      const t0 = performance.now();
      const socket: net.Socket =
        mode === 'mtls'
          ? tls.connect({ socket: net.connect({ host: '127.0.0.1', port, noDelay: true }), secureContext, checkServerIdentity: () => undefined })
          : net.connect({ host: '127.0.0.1', port, noDelay: true });
      let data = '';
      const done = (ok: boolean) => {
        socket.destroy();
        if (ok) times.push(performance.now() - t0);
        resolve(ok);
      };
      socket.once(mode === 'mtls' ? 'secureConnect' : 'connect', () => socket.write('GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n'));
      socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
      socket.once('end', () => done(data.startsWith('HTTP/1.1 200')));
      socket.once('error', () => done(false));
      socket.setTimeout(5000, () => done(false));
    });
  const worker = async () => {
    while (Date.now() < deadline) if (!(await once())) failed++;
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: parallel }, worker));
  const elapsed = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return { perSecond: times.length / elapsed, ok: times.length, failed, p50: times[Math.floor(times.length / 2)] ?? 0 };
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<void> {
  const duration = Math.round(num(process.env.BENCH_DURATION, 8));
  const warmup = Math.round(num(process.env.BENCH_WARMUP, 2));
  const handshakeSeconds = Math.round(num(process.env.BENCH_HANDSHAKE, 5));
  const connections = Math.round(num(process.env.BENCH_CONNECTIONS, 32));
  const parallel = 8;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wasmesh-bench-mtls-'));
  const cleanup = () => {
    for (const cp of children) cp.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const started = Date.now();
  const { createTestCa } = await import('../test/support/test-ca.ts');
  const ca = await createTestCa('wasmesh bench root');
  const pems = (c: PemSet): PemSet => ({ keyPem: c.keyPem, certChainPem: c.certChainPem, trustBundlePem: c.trustBundlePem });
  const serverCert = path.join(tmp, 'reviews.json');
  const clientCert = path.join(tmp, 'productpage.json');
  writeFileSync(serverCert, JSON.stringify(pems(await ca.issue('default', 'reviews'))));
  const clientPems = pems(await ca.issue('default', 'productpage'));
  writeFileSync(clientCert, JSON.stringify(clientPems));

  const rates = new Map<Mode, Rate>();
  const loads = new Map<Mode, Load>();
  try {
    const app = await startChild(['app'], 0);
    try {
      for (const mode of ['plain', 'mtls'] as const) {
        const server = await startChild(['server', mode, String(app.port), serverCert], 1);
        const client = await startChild(['client', mode, String(server.port), clientCert], 1);
        try {
          await autocannon(client.port, warmup, connections);
          const load = await autocannon(client.port, duration, connections);
          loads.set(mode, load);
          process.stdout.write(`${mode.padEnd(5)} throughput: ${fmt(load.rps)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, non-2xx ${load.non2xx}, errors ${load.errors}\n`);
          const rate = await connectionRate(mode, server.port, clientPems, handshakeSeconds, parallel);
          rates.set(mode, rate);
          process.stdout.write(`${mode.padEnd(5)} new connections: ${fmt(rate.perSecond)}/s (p50 ${fmt(rate.p50, 2)} ms, ${rate.failed} failed)\n`);
        } finally {
          await stopChild(client.cp);
          await stopChild(server.cp);
        }
      }
    } finally {
      await stopChild(app.cp);
    }
  } finally {
    cleanup();
  }

  const plainRate = rates.get('plain')!;
  const mtlsRate = rates.get('mtls')!;
  const plainLoad = loads.get('plain')!;
  const mtlsLoad = loads.get('mtls')!;
  const cpus = os.cpus();
  const lines: string[] = [];
  lines.push(SECTION, '');
  lines.push(`Written by \`npm run bench:mtls\` (proxy-host/bench/mtls.bench.ts) on ${new Date().toISOString()}.`);
  lines.push(`Machine: ${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, OpenSSL ${process.versions.openssl}, ${os.platform()} ${os.release()}. Shared and noisy: compare the two modes, measured in the same run.`);
  lines.push(
    `Two wasmesh sidecars, each in its own process: client (outbound) -> server (inbound) -> a node:http app (100-byte body). ` +
      `mTLS: ECDSA P-256 SPIFFE certificates from a throwaway CA, the client's cluster ISTIO_MUTUAL (peer SPIFFE id checked), the server's PeerAuthentication STRICT; plaintext: no tls on the cluster, DISABLE. ` +
      (TASKSET ? 'Pinning: `taskset`, load generator and app on CPU 0, both sidecars on CPU 1. ' : '') +
      `Whole run ${Math.round((Date.now() - started) / 1000)} s.`,
  );
  lines.push(
    `Connection rate: ${parallel} clients in the bench process open connections to the server sidecar's inbound port for ${handshakeSeconds} s, each does the handshake (TLS 1.3 with a client certificate, no resumption; or TCP only), ` +
      `one \`GET /\` with \`Connection: close\` forwarded to the app, and closes (the client side of each handshake, about as costly as the server side, runs in the unpinned bench process). Throughput: autocannon ${AUTOCANNON_VERSION} (\`-c ${connections}\`, keep-alive) to the client sidecar's outbound port, ${warmup} s warm-up then ${duration} s measured.`,
  );
  lines.push('');
  lines.push('| what | plaintext | mTLS | mTLS / plaintext |');
  lines.push('|---|---|---|---|');
  lines.push(`| new connections per second (handshake + 1 request) | ${fmt(plainRate.perSecond)} | ${fmt(mtlsRate.perSecond)} | ${(mtlsRate.perSecond / plainRate.perSecond).toFixed(2)}x |`);
  lines.push(`| time per new connection, p50 | ${fmt(plainRate.p50, 2)} ms | ${fmt(mtlsRate.p50, 2)} ms | ${(mtlsRate.p50 / plainRate.p50).toFixed(2)}x |`);
  lines.push(`| throughput through both sidecars, req/s | ${fmt(plainLoad.rps)} | ${fmt(mtlsLoad.rps)} | ${(mtlsLoad.rps / plainLoad.rps).toFixed(2)}x |`);
  lines.push(`| latency p50 / p99 | ${plainLoad.p50} / ${plainLoad.p99} ms | ${mtlsLoad.p50} / ${mtlsLoad.p99} ms | |`);
  lines.push(`| failed requests / connections | ${plainLoad.non2xx + plainLoad.errors} / ${plainRate.failed} | ${mtlsLoad.non2xx + mtlsLoad.errors} / ${mtlsRate.failed} | |`);
  lines.push('');
  const section = lines.join('\n');
  process.stdout.write(`\n${section}\n`);

  await writeResultsSection(section, RESULTS);
  process.stdout.write(`written to ${path.relative(ROOT, RESULTS)}\n`);
}

// Dispatch last, once every module-level constant above is initialised.
const mode = process.argv[2];
if (mode === 'app') await runApp();
else if (mode === 'server') await runServer(process.argv[3] as Mode, Number(process.argv[4]), process.argv[5]!);
else if (mode === 'client') await runClient(process.argv[3] as Mode, Number(process.argv[4]), process.argv[5]!);
else await main();
