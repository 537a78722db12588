// The bench's wasmesh target: one sidecar (Proxy.start) with one cluster and one virtual host `bench`
// forwarding to the upstream; optionally one outbound filter. Load goes to its outbound port.
// Usage: node --import tsx wasmesh-proxy.ts <upstreamPort> [<filter.wasm> <rootId> <pluginConfig JSON>]
// With BENCH_CPU_PROF_FILE set, SIGUSR2 starts a CPU profile (so it covers the measured window only)
// and exit writes it there, positions mapped back to the TypeScript sources (run with --enable-source-maps).
import { writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { findSourceMap } from 'node:module';
import { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../test/support/config.ts';
// @ts-expect-error plain ESM helper without types
import { announceReady, exitWith } from './child-lifecycle.mjs';

const [upstreamPort, filterPath, rootId, pluginConfig] = process.argv.slice(2);
const CLUSTER = 'outbound|80||bench';

const config = proxyConfig({
  clusters: [cluster(CLUSTER, [{ port: Number(upstreamPort) }], { host: 'bench' })],
  virtualHosts: [{ name: 'bench', domains: ['bench'], routes: [forward('bench/default', CLUSTER)] }],
  outboundFilters: filterPath ? [filterBinding('add-header', filterPath, { rootId: rootId ?? '', pluginConfig: JSON.parse(pluginConfig ?? '{}') })] : [],
});

const profileFile = process.env.BENCH_CPU_PROF_FILE;
let session: inspector.Session | undefined;
let profiling = false;
function post<T>(method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
}
if (profileFile) {
  session = new inspector.Session();
  session.connect();
  process.on('SIGUSR2', () => {
    if (profiling) return;
    profiling = true;
    void post('Profiler.enable').then(() => post('Profiler.start'));
  });
}

interface CallFrame {
  url: string;
  lineNumber: number;
  columnNumber: number;
}
async function writeProfile(): Promise<void> {
  if (!session || !profiling) return;
  const { profile } = await post<{ profile: { nodes: Array<{ callFrame: CallFrame }> } }>('Profiler.stop');
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
  writeFileSync(profileFile!, JSON.stringify(profile));
}

const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
announceReady({ port: proxy.outboundPort, adminPort: proxy.adminPort });
exitWith(async () => {
  await writeProfile().catch((err) => process.stderr.write(`profile not written: ${err}\n`));
  await proxy.stop(200);
});
