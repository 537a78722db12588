// The processes of the telemetry-path benchmark, each run as `node --import tsx processes.ts <mode> ...`:
//
//   app <bodyBytes>                 a node:http app answering every request with a body of that size
//   sidecar <root> <config.json> <pems.json> inbound|outbound [appPort] [edges=off]
//                                   one wasmesh sidecar (Proxy.start) with that ProxyConfig and identity,
//                                   the proxy's code taken from the checkout at <root> (this one, or a
//                                   baseline checkout the bench compares against in the same run);
//                                   edges=off: without per-edge counting (bench:edges)
//
// Each prints `BENCH_READY {"port":N,...}` and exits when its stdin closes (the bench went away) or on
// SIGTERM. A sidecar also takes commands on stdin, one per line, for CPU profiles over exactly one
// window: `profile-start`, then `profile-stop <file>` (answered `BENCH_PROFILED <file>`). The profiler
// is an in-process inspector session opened only then, so windows measured without it pay nothing.
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import inspector from 'node:inspector';
import { findSourceMap } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
// @ts-expect-error plain ESM helper without types
import { announceReady, exitWith } from '../child-lifecycle.mjs';

interface PemSet {
  keyPem: string;
  certChainPem: string;
  trustBundlePem: string[];
}

async function runApp(bodyBytes: number): Promise<void> {
  const body = Buffer.alloc(bodyBytes, 'x');
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  announceReady({ port: (server.address() as { port: number }).port });
  exitWith(() => new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  }));
}

interface CallFrame {
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/** The sidecar's side of `profile-start` / `profile-stop <file>`. */
function listenForProfileCommands(): void {
  let session: inspector.Session | undefined;
  const post = <T>(method: string, params?: object): Promise<T> =>
    new Promise((resolve, reject) => session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  let pending = '';
  process.stdin.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i).trim();
      pending = pending.slice(i + 1);
      if (line === 'profile-start') {
        session = new inspector.Session();
        session.connect();
        void post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 200 })).then(() => post('Profiler.start'));
      } else if (line.startsWith('profile-stop ')) {
        const file = line.slice('profile-stop '.length);
        void post<{ profile: { nodes: Array<{ callFrame: CallFrame }> } }>('Profiler.stop').then(({ profile }) => {
          // Positions back to the TypeScript sources (tsx's inline maps; the process runs with --enable-source-maps).
          for (const node of profile.nodes) {
            const f = node.callFrame;
            if (!f.url || f.lineNumber < 0) continue;
            const entry = findSourceMap(f.url)?.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
            if (entry?.originalSource !== undefined && entry.originalLine !== undefined) {
              f.url = entry.originalSource;
              f.lineNumber = entry.originalLine;
              f.columnNumber = entry.originalColumn ?? 0;
            }
          }
          writeFileSync(file, JSON.stringify(profile));
          session!.disconnect();
          process.stdout.write(`BENCH_PROFILED ${file}\n`);
        });
      }
    }
  });
}

async function runSidecar(root: string, configFile: string, pemFile: string, side: 'inbound' | 'outbound', appPort: number, edges: boolean): Promise<void> {
  const from = (file: string) => pathToFileURL(path.join(root, 'proxy-host/src', file)).href;
  const { Proxy } = (await import(from('proxy.ts'))) as typeof import('../../src/proxy.ts');
  const { workloadCertificate } = (await import(from('identity/certs.ts'))) as typeof import('../../src/identity/certs.ts');
  const { MemoryIdentity } = (await import(from('identity/static-identity.ts'))) as typeof import('../../src/identity/static-identity.ts');
  const pems = JSON.parse(readFileSync(pemFile, 'utf8')) as PemSet;
  const identity = new MemoryIdentity(workloadCertificate(pems.keyPem, pems.certChainPem, pems.trustBundlePem));
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off', identity, ...(edges ? {} : { edgeStats: false }) }, config);
  listenForProfileCommands();
  announceReady({ port: side === 'inbound' ? proxy.inboundPort : proxy.outboundPort, adminPort: proxy.adminPort });
  exitWith(() => proxy.stop(200));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'app') await runApp(Number(args[0]));
else if (mode === 'sidecar') await runSidecar(args[0]!, args[1]!, args[2]!, args[3] as 'inbound' | 'outbound', Number(args[4] ?? 0), args[5] !== 'edges=off');
else {
  process.stderr.write('usage: processes.ts app <bodyBytes> | sidecar <root> <config.json> <pems.json> inbound|outbound [appPort] [edges=off]\n');
  process.exit(2);
}
