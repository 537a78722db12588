// The memory section of the mesh benchmark: what a sidecar's resident memory is made of. Standalone
// sidecars (`wasmesh proxy --config`, the same proxy `wasmesh run` starts, config from a generated file
// instead of the orchestrator) measured idle, after 50 requests through the inbound listener and a
// second's rest (as is, and again after two full GCs through the inspector, which takes the garbage of
// start-up out of the comparison), while only the thing named varies:
//   - wasm VMs: no filters at all (--no-telemetry), one add-header WasmPlugin, three, ten (each plugin is
//     a VM of its own; the module is compiled once), and the default (telemetry, a plugin per direction);
//   - workers: --concurrency 1, 2, 4 (a primary serving admin, and workers with their own VMs);
//   - config size: 1, 100 and 1000 services, each a ServiceEntry, a VirtualService (90/10 split,
//     timeout, retries) and a DestinationRule (two subsets, a connection pool).
// Plus the runtime's own accounting: each built filter's linear memory per VM (FilterHarness).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { FilterHarness } from '../../../wasm/src/index.ts';
import { SidecarInspector } from './inspector.ts';
import type { Children } from '../../../proxy-host/bench/support/children.ts';
import { pinned, type CpuPlan } from '../../../proxy-host/bench/support/cpus.ts';
import { descendantPids, memory, type Memory } from '../../../proxy-host/bench/support/proc.ts';
import { capture, freePort, httpGet, lastLines, startNodeService } from '../../../proxy-host/bench/support/services.ts';

export interface MemoryRow {
  group: 'vms' | 'workers' | 'services';
  label: string;
  /** The sidecar's process(es): the proxy, or the primary and its workers. */
  processes: Array<{ role: string; mem: Memory }>;
  /** One-process sidecars: VmRSS after two full GCs, and V8's heap in use then. */
  afterGc?: { rss: number; heapUsed: number };
  /** From spawn to /ready. */
  readyS: number;
  /** Plugins the sidecar says are running (admin /filters), to show the VMs are really there. */
  pluginsRunning?: number;
  error?: string;
}

export interface LinearMemoryRow {
  filter: string;
  afterStartBytes?: number;
  after200StreamsBytes?: number;
  error?: string;
}

export interface MemoryContext {
  children: Children;
  root: string;
  tmp: string;
  cpus: CpuPlan | undefined;
}

const ADD_HEADER = 'filters/examples/add-header/build/add-header.wasm';
const WORKLOAD = 'bench-app';

function wasmPlugin(root: string, i: number): object {
  return {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'WasmPlugin',
    metadata: { name: `add-header-${i}`, namespace: 'default' },
    spec: { selector: { matchLabels: { app: WORKLOAD } }, url: `file://${path.join(root, ADD_HEADER)}`, pluginName: 'add_header', phase: 'STATS', pluginConfig: { request: { [`x-bench-${i}`]: 'on' } } },
  };
}

/** n services, each a ServiceEntry (two endpoints), a VirtualService and a DestinationRule. */
export function serviceDocuments(n: number, endpointPort: number): object[] {
  const docs: object[] = [];
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    const host = `${name}.default.svc.cluster.local`;
    const meta = { name, namespace: 'default' };
    docs.push(
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: meta,
        spec: {
          hosts: [host],
          location: 'MESH_INTERNAL',
          resolution: 'STATIC',
          ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
          endpoints: [
            { address: '127.0.0.1', ports: { http: endpointPort }, labels: { version: 'v1' } },
            { address: '127.0.0.1', ports: { http: endpointPort }, labels: { version: 'v2' } },
          ],
        },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: meta,
        spec: {
          hosts: [host],
          http: [{ route: [{ destination: { host, subset: 'v1' }, weight: 90 }, { destination: { host, subset: 'v2' }, weight: 10 }], timeout: '5s', retries: { attempts: 2, perTryTimeout: '2s' } }],
        },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'DestinationRule',
        metadata: meta,
        spec: {
          host,
          trafficPolicy: { connectionPool: { http: { http1MaxPendingRequests: 128 } } },
          subsets: [
            { name: 'v1', labels: { version: 'v1' } },
            { name: 'v2', labels: { version: 'v2' } },
          ],
        },
      },
    );
  }
  return docs;
}

interface Variant {
  group: MemoryRow['group'];
  label: string;
  docs: (appPort: number) => object[];
  flags: string[];
}

function variants(root: string): Variant[] {
  const plugins = (n: number) => () => Array.from({ length: n }, (_, i) => wasmPlugin(root, i));
  return [
    { group: 'vms', label: 'no filters (--no-telemetry): 0 VMs', docs: () => [], flags: ['--no-telemetry'] },
    { group: 'vms', label: '1 WasmPlugin (add-header), no telemetry: 1 VM', docs: plugins(1), flags: ['--no-telemetry'] },
    { group: 'vms', label: '3 WasmPlugins (add-header), no telemetry: 3 VMs of one module', docs: plugins(3), flags: ['--no-telemetry'] },
    // Ten make a VM's cost visible above the run-to-run noise of a Node process's RSS.
    { group: 'vms', label: '10 WasmPlugins (add-header), no telemetry: 10 VMs of one module', docs: plugins(10), flags: ['--no-telemetry'] },
    { group: 'vms', label: 'default: telemetry (inbound and outbound)', docs: () => [], flags: [] },
    { group: 'workers', label: '--concurrency 1 (default)', docs: () => [], flags: [] },
    { group: 'workers', label: '--concurrency 2', docs: () => [], flags: ['--concurrency', '2'] },
    { group: 'workers', label: '--concurrency 4', docs: () => [], flags: ['--concurrency', '4'] },
    { group: 'services', label: '1 service', docs: (p) => serviceDocuments(1, p), flags: [] },
    { group: 'services', label: '100 services', docs: (p) => serviceDocuments(100, p), flags: [] },
    { group: 'services', label: '1000 services', docs: (p) => serviceDocuments(1000, p), flags: [] },
  ];
}

async function waitReady(adminPort: number, exited: () => string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gone = exited();
    if (gone) throw new Error(gone);
    try {
      if ((await httpGet(adminPort, '/ready', '127.0.0.1', 1000)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function measureVariant(ctx: MemoryContext, v: Variant, appPort: number, index: number): Promise<MemoryRow> {
  const file = path.join(ctx.tmp, `memory-${index}.yaml`);
  // JSON is YAML: one document per JSON text.
  writeFileSync(file, `${v.docs(appPort).map((d) => JSON.stringify(d)).join('\n---\n')}\n`);
  const [outbound, inbound, admin, inspectPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const args = [
    path.join(ctx.root, 'scripts/wasmesh.mjs'), 'proxy', '--config', file,
    '--workload', WORKLOAD, '--labels', `app=${WORKLOAD},version=v1`,
    '--outbound-port', String(outbound), '--inbound-port', String(inbound), '--admin-port', String(admin), '--app-port', String(appPort),
    '--access-log', 'off', '--drain-timeout', '500', ...v.flags,
  ];
  const [cmd, argv] = pinned(ctx.cpus?.target, process.execPath, args);
  const t0 = Date.now();
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect-port=127.0.0.1:${inspectPort}`.trim() };
  const cp = ctx.children.spawn(cmd, argv, { cwd: ctx.root, stdio: ['ignore', 'pipe', 'pipe'], group: true, env });
  const output = capture(cp);
  try {
    await waitReady(admin, () => (cp.exitCode !== null || cp.signalCode !== null ? `exited (${cp.signalCode ?? cp.exitCode}): ${lastLines(output(), 4)}` : undefined), 180_000);
    const readyS = (Date.now() - t0) / 1000;
    const pluginsRunning = await runningPlugins(admin);
    for (let i = 0; i < 50; i++) {
      const r = await httpGet(inbound, '/', WORKLOAD);
      if (r.status !== 200) throw new Error(`a request through the inbound listener answered ${r.status}: ${r.body.slice(0, 160)}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const pids = [cp.pid!, ...descendantPids(cp.pid!)];
    const processes = pids.flatMap((pid, i) => {
      const mem = memory(pid);
      return mem ? [{ role: i === 0 ? (pids.length > 1 ? 'primary' : 'sidecar') : `worker ${i}`, mem }] : [];
    });
    let afterGc: MemoryRow['afterGc'];
    // Workers inherit the inspector port but only one process may open it: GC is forced for one-process sidecars.
    if (pids.length === 1) {
      const inspector = await SidecarInspector.attach(cp.pid!, inspectPort, { profiler: false });
      try {
        const heap = await inspector.collectGarbage();
        await new Promise((r) => setTimeout(r, 300));
        const mem = memory(cp.pid!);
        if (mem) afterGc = { rss: mem.rss, heapUsed: heap.usedBytes };
      } finally {
        inspector.close();
      }
    }
    return { group: v.group, label: v.label, processes, afterGc, readyS, pluginsRunning };
  } catch (err) {
    return { group: v.group, label: v.label, processes: [], readyS: (Date.now() - t0) / 1000, error: (err as Error).message };
  } finally {
    await ctx.children.stop(cp, 3000);
  }
}

async function runningPlugins(adminPort: number): Promise<number | undefined> {
  try {
    const r = await httpGet(adminPort, '/filters', '127.0.0.1');
    const body = JSON.parse(r.body) as { inbound?: Array<{ stable?: { state?: string } }>; outbound?: Array<{ stable?: { state?: string } }> };
    return [...(body.inbound ?? []), ...(body.outbound ?? [])].filter((f) => f.stable?.state === 'running').length;
  } catch {
    return undefined;
  }
}

/** Every variant, one sidecar at a time (the others stopped), against one app. */
export async function measureMemory(ctx: MemoryContext, log: (line: string) => void): Promise<MemoryRow[]> {
  const app = await startNodeService(ctx.children, 'app', ['integration/bench/mesh/app.mjs'], { cwd: ctx.root, cpu: ctx.cpus?.load });
  const rows: MemoryRow[] = [];
  try {
    let i = 0;
    for (const v of variants(ctx.root)) {
      if (ctx.children.interrupted) break;
      const row = await measureVariant(ctx, v, app.port, i++);
      const total = row.processes.reduce((n, p) => n + p.mem.rss, 0);
      log(`  memory: ${row.label}: ${row.error ? `failed: ${row.error}` : `${(total / 2 ** 20).toFixed(0)} MiB RSS (${row.processes.length} process(es)), ready in ${row.readyS.toFixed(1)} s`}`);
      rows.push(row);
    }
  } finally {
    await ctx.children.stop(app.cp);
  }
  return rows;
}

/** Linear memory of one VM of each built filter, by the runtime's own accounting (empty plugin config). */
export async function linearMemory(root: string): Promise<LinearMemoryRow[]> {
  const out: LinearMemoryRow[] = [];
  for (const filter of ['filters/telemetry/build/telemetry.wasm', 'filters/policy/build/policy.wasm', 'filters/fault/build/fault.wasm', ADD_HEADER]) {
    try {
      const h = await FilterHarness.load(path.join(root, filter), { configuration: {} });
      const afterStartBytes = h.plugin.vm.mem.size;
      for (let i = 0; i < 200; i++) await h.run({ request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'bench' } }, response: { headers: { ':status': '200' } } });
      out.push({ filter, afterStartBytes, after200StreamsBytes: h.plugin.vm.mem.size });
      await h.close();
    } catch (err) {
      out.push({ filter, error: (err as Error).message });
    }
  }
  return out;
}
