// npm run bench:component: what a JavaScript component filter (componentize-js, run through jco's
// transpile) costs against the AssemblyScript add-header filter doing the same work through the
// proxy-wasm runtime: build, transpile (jco, and from the disk cache), metering and compiling,
// instantiate, memory, time per stream in the proxy's filter chain (ComponentPlugin against Plugin:
// every call under the CPU budget, header conversion and effects included) and per call, and
// requests through a real proxy on loopback (closed-loop keep-alive clients) with each filter.
// A benchmark, not a test: it prints figures and writes them to bench/RESULTS.md.
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { Plugin, type HeaderList, type HttpStreamSink, type LocalResponse } from '../../wasm/src/index.ts';
import { jsAddHeaderComponent } from '../../wasm/test/support/component.ts';
import {
  applyFieldChanges, clearTranspileMemory, compileComponent, ComponentFilter, transpileComponent, type CallContext, type Fields,
} from '../src/component-filter/component-filter.ts';
import { ComponentPlugin } from '../src/component-filter/component-plugin.ts';
import { TranspileCache } from '../src/component-filter/transpile-cache.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../test/support/config.ts';
import { ClosedLoopTraffic, percentile } from '../test/support/traffic.ts';
import type { FilterBinding } from '../../mesh/src/proxy-config.ts';

const ROUNDS = 7;
/** Through a real proxy: clients, and how long each filter gets (after a warm-up of a second). */
const PROXY_CLIENTS = 8;
const PROXY_MS = 5000;
const AS_STREAMS = 20_000;
/**
 * Streams per round through the JS component called directly. The JS engine's heap grows by about
 * 3 KB per add-header stream until its first garbage collection at about 70-77 MiB (after about
 * 25,000 streams; the component bound is 128 MiB, DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES), then stays
 * level. The direct instance here gets 8 x 1,000 streams and 24,000 single calls (warm-up and
 * rounds), so it reaches that point late in the run at most: these medians hardly include the
 * engine's collections (their cost per stream is not measured).
 */
const JS_STREAMS = 1_000;
const CONFIG = { request: { 'x-wasmesh-example': 'hello' }, response: { 'x-powered-by': 'wasmesh' } };
const AS_PATH = 'filters/examples/add-header/build/add-header.wasm';

const REQUEST: HeaderList = [':method', 'GET', ':path', '/productpage', ':authority', 'productpage.default.svc', ':scheme', 'http', 'user-agent', 'curl/8.5', 'accept', '*/*'];
const RESPONSE: HeaderList = [':status', '200', 'content-type', 'text/html', 'content-length', '1024'];

class NullSink implements HttpStreamSink {
  forwarded = 0;
  requestHeaders(): void {
    this.forwarded++;
  }
  requestData(): void {}
  requestTrailers(): void {}
  responseHeaders(): void {
    this.forwarded++;
  }
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(_r: LocalResponse): void {
    throw new Error('unexpected local response');
  }
  reset(): void {
    throw new Error('unexpected reset');
  }
}

/** Requests through a proxy whose outbound chain is `filters`, closed loop; req/s and latency. */
async function throughProxy(upstreamPort: number, filters: FilterBinding[]): Promise<{ rps: number; p50: number; p99: number; failed: number }> {
  const config = proxyConfig({
    virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
    clusters: [cluster('app', [{ port: upstreamPort }])],
    outboundFilters: filters,
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
  try {
    await new ClosedLoopTraffic({ port: proxy.outboundPort, clients: PROXY_CLIENTS, maxRequests: 1e9, maxMs: 1000 }).finished();
    const started = performance.now();
    const outcomes = await new ClosedLoopTraffic({ port: proxy.outboundPort, clients: PROXY_CLIENTS, maxRequests: 1e9, maxMs: PROXY_MS }).finished();
    const seconds = (performance.now() - started) / 1000;
    const ok = outcomes.filter((o) => o.status === 200);
    const latencies = ok.map((o) => o.latencyMs);
    return { rps: ok.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), failed: outcomes.length - ok.length };
  } finally {
    await proxy.stop(0);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const enc = new TextEncoder();
const dec = new TextDecoder();
/** The host's side of a component call: the header list as WIT fields, and back. */
function toFields(h: HeaderList): Fields {
  const out: Fields = [];
  for (let i = 0; i < h.length; i += 2) out.push([h[i] as string, enc.encode(h[i + 1] as string)]);
  return out;
}
function fromFields(f: Fields): HeaderList {
  const out: string[] = [];
  for (const [n, v] of f) out.push(n, dec.decode(v));
  return out;
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  if (!existsSync(AS_PATH)) throw new Error(`${AS_PATH} is not built: node scripts/wasmesh.mjs filter build --all`);
  const rssStart = process.memoryUsage().rss;
  const built = await jsAddHeaderComponent();

  // The AssemblyScript filter through the proxy-wasm runtime, as runtime.bench.ts measures it.
  const asPlugin = await Plugin.load(await readFile(AS_PATH), { name: 'add-header', rootId: 'add_header', configuration: CONFIG, logLevel: 'info' });
  const rssAfterAs = process.memoryUsage().rss;
  const sink = new NullSink();
  const asRound = (): number => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < AS_STREAMS; i++) {
      const stream = asPlugin.createHttpStream(sink);
      stream.requestHeaders(REQUEST.slice(), true);
      stream.responseHeaders(RESPONSE.slice(), true);
      stream.finish();
    }
    return Number(process.hrtime.bigint() - start) / AS_STREAMS;
  };

  // The JavaScript component: transpiled by jco (into a fresh disk cache), then again from the disk
  // cache; its core module metered, bounded and compiled; instantiated, configured.
  const cacheDir = await mkdtemp(join(os.tmpdir(), 'wasmesh-bench-jco-'));
  const disk = new TranspileCache(cacheDir);
  const t0 = performance.now();
  const transpiled = await transpileComponent(built.bytes, 'add-header.js', disk);
  const transpileMs = performance.now() - t0;
  clearTranspileMemory();
  const t1 = performance.now();
  const fromDisk = await transpileComponent(built.bytes, 'add-header.js', disk);
  const diskMs = performance.now() - t1;
  if (!fromDisk.fromDisk) throw new Error('the second transpile did not come from the disk cache');
  await rm(cacheDir, { recursive: true, force: true });
  const compiled = await compileComponent(built.bytes, { name: 'add-header.js' });
  const filter = await ComponentFilter.load(built.bytes, enc.encode(JSON.stringify(CONFIG)), 'add-header.js');
  const rssAfterJs = process.memoryUsage().rss;
  const second = await ComponentFilter.load(built.bytes, enc.encode(JSON.stringify(CONFIG)), 'add-header.js');
  const rssAfterTwo = process.memoryUsage().rss;

  let streamId = 0n;
  const ctx = (): CallContext => ({ streamId: ++streamId, properties: [], shared: [] });
  // A stream as the host would run it: headers to fields, one call per phase, changes applied, back to a list.
  const jsStream = (): void => {
    const c = ctx();
    const req = filter.onRequestHeaders(c, toFields(REQUEST), true);
    const reqOut = fromFields(applyFieldChanges(toFields(REQUEST), req.headers));
    const res = filter.onResponseHeaders(c, toFields(RESPONSE), true);
    const resOut = fromFields(applyFieldChanges(toFields(RESPONSE), res.headers));
    filter.onStreamDone(c.streamId);
    if (reqOut.length === 0 || resOut.length === 0) throw new Error('headers lost');
  };
  const jsRound = (): number => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < JS_STREAMS; i++) jsStream();
    return Number(process.hrtime.bigint() - start) / JS_STREAMS;
  };
  const fields = toFields(REQUEST);
  const callRound = (): number => {
    const c = ctx();
    const start = process.hrtime.bigint();
    for (let i = 0; i < JS_STREAMS; i++) filter.onRequestHeaders(c, fields, true);
    return Number(process.hrtime.bigint() - start) / JS_STREAMS;
  };

  // The floor per call: a number in, empty lists out, nothing done.
  const floorRound = (): number => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < JS_STREAMS; i++) filter.onStreamDone(1n);
    return Number(process.hrtime.bigint() - start) / JS_STREAMS;
  };

  // The component as the proxy's chain runs it: a ComponentPlugin stream per request, every call under
  // the CPU budget, header lists converted, changes checked and applied, effects (the counter) applied.
  const plugin = await ComponentPlugin.load(compiled, { name: 'add-header-js', configuration: CONFIG, logLevel: 'info' });
  const chainRound = (): number => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < JS_STREAMS; i++) {
      const stream = plugin.createHttpStream(sink);
      stream.requestHeaders(REQUEST.slice(), true);
      stream.responseHeaders(RESPONSE.slice(), true);
      stream.finish();
    }
    return Number(process.hrtime.bigint() - start) / JS_STREAMS;
  };

  // Check the JS filter does what the AS one does before timing it.
  const check = filter.onRequestHeaders(ctx(), toFields(REQUEST), true);
  const after = fromFields(applyFieldChanges(toFields(REQUEST), check.headers));
  if (after[after.indexOf('x-wasmesh-example') + 1] !== 'hello') throw new Error(`the JS filter did not set x-wasmesh-example: ${after.join(' ')}`);

  asRound();
  jsRound();
  chainRound();
  callRound();
  floorRound();
  const chain: number[] = [];
  const floor: number[] = [];
  const as: number[] = [];
  const js: number[] = [];
  const call: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    as.push(asRound());
    js.push(jsRound());
    chain.push(chainRound());
    call.push(callRound());
    floor.push(floorRound());
  }
  const asNs = median(as);
  const jsNs = median(js);
  const callNs = median(call);
  const floorNs = median(floor);
  const chainNs = median(chain);
  if (plugin.trapCount !== 0) throw new Error(`the component trapped in the chain: ${plugin.lastFailure}`);
  const rssEnd = process.memoryUsage().rss;

  // Through a real proxy on loopback: no filter, the AssemblyScript filter, the component.
  const upstream = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const moduleDir = await mkdtemp(join(os.tmpdir(), 'wasmesh-bench-component-'));
  const jsPath = join(moduleDir, 'add-header.js.wasm');
  await writeFile(jsPath, built.bytes);
  const proxied = {
    none: await throughProxy(upstreamPort, []),
    as: await throughProxy(upstreamPort, [filterBinding('add-header', AS_PATH, { rootId: 'add_header', pluginConfig: CONFIG })]),
    js: await throughProxy(upstreamPort, [filterBinding('add-header-js', jsPath, { pluginConfig: CONFIG })]),
  };
  upstream.close();
  upstream.closeAllConnections();
  await rm(moduleDir, { recursive: true, force: true });
  const row = (name: string, r: (typeof proxied)['none']) => `| ${name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${r.failed} |`;

  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const text = `## Component filters (npm run bench:component)

Written by \`npm run bench:component\` (proxy-host/bench/component-filter.bench.ts) on ${new Date().toISOString()}.
Machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}.
The machine is shared and noisy: read the ratios, both filters were measured in the same rounds.
The same filter twice: add-header (set one request and one response header, count requests), in
AssemblyScript through the proxy-wasm runtime, and in JavaScript as a component of the filter world
(schemas/wit/filter.wit) built by componentize-js and run through jco's transpile. Median of ${ROUNDS} rounds
(${AS_STREAMS} AssemblyScript streams, ${JS_STREAMS} JavaScript streams per round), after a warm-up round.

| what | AssemblyScript (proxy-wasm) | JavaScript component |
|---|---|---|
| module size | ${(await readFile(AS_PATH)).byteLength.toLocaleString('en-US')} bytes | ${built.bytes.byteLength.toLocaleString('en-US')} bytes |
| build | (asc: 6-7 s per filter on this machine, \`filter build\`) | ${built.cached ? 'cached (built earlier by componentize-js: 20-30 s measured here)' : `${(built.ms / 1000).toFixed(1)} s (componentize-js)`} |
| transpile (jco, once per digest) | - | ${transpileMs.toFixed(0)} ms (${Object.keys(transpiled.cores).length} core module${Object.keys(transpiled.cores).length === 1 ? '' : 's'}); from the disk cache: ${diskMs.toFixed(0)} ms |
| meter (CPU budget) + bound memory + compile | (in compileModule) | ${compiled.compileMs.toFixed(0)} ms |
| instantiate + configure | - | ${filter.startMs.toFixed(0)} ms (a second instance: ${second.startMs.toFixed(0)} ms) |
| process memory (RSS) after loading | +${mib(rssAfterAs - rssStart)} | +${mib(rssAfterJs - rssAfterAs)} (a second instance: +${mib(rssAfterTwo - rssAfterJs)}); ${mib(rssEnd)} at the end |
| stream: request headers + response headers + done, header conversion included | ${asNs.toFixed(0)} ns | ${(jsNs / 1000).toFixed(1)} µs (${(jsNs / asNs).toFixed(0)}x) |
| stream in the proxy's chain (ComponentPlugin vs Plugin): the same, with budgets, checks and effects | ${asNs.toFixed(0)} ns | ${(chainNs / 1000).toFixed(1)} µs (${(chainNs / asNs).toFixed(0)}x) |
| one on-request-headers call (6 headers in, 1 change out), no conversion | - | ${(callNs / 1000).toFixed(1)} µs |
| one on-stream-done call (a u64 in, empty lists out): the floor per call | - | ${(floorNs / 1000).toFixed(1)} µs |

Imports of the JavaScript component: ${transpiled.imports.join(', ') || 'none'} (the proxy refuses a component that imports anything).

Through a real proxy on loopback (${PROXY_CLIENTS} closed-loop keep-alive clients, ${PROXY_MS / 1000} s each after 1 s of warm-up,
the upstream answering \`ok\`; the clients run in the same process as the proxy, so read the ratios):

| outbound chain | requests/s | p50 | p99 | failed |
|---|---|---|---|---|
${row('no filter', proxied.none)}
${row('add-header, AssemblyScript (proxy-wasm)', proxied.as)}
${row('add-header, JavaScript component', proxied.js)}
`;
  process.stdout.write(text);
  await writeResultsSection(text);
}

await main();
