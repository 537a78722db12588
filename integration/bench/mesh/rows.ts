// The paths the mesh benchmark measures, each started fresh for its window and stopped after it. Every
// process is its own; proxies run on the target CPU, the app (and the load generator) on the other.
//   direct      client -> app
//   sidecar     client -> inbound sidecar of the app workload -> app (plaintext, telemetry on)
//   pair        client -> outbound sidecar of a client workload -> inbound sidecar -> app (plaintext)
//   pair-mtls   the same with STRICT mTLS: issue 15's main row
//   nginx-pair  client -> nginx (client side) -> mTLS -> nginx (server side) -> app: the reference
//   node-pair   the same with two minimal Node relays (node:http + undici, no mesh code): the floor
//               of any Node.js data plane, with the sidecars' V8 flags
//   nginx       client -> nginx -> app: one plain reverse proxy, for scale
import path from 'node:path';
import type { Children } from '../../../proxy-host/bench/support/children.ts';
import { pinned, type CpuPlan } from '../../../proxy-host/bench/support/cpus.ts';
import { startNginx } from '../../../proxy-host/bench/support/nginx.ts';
import { freePort, httpGet, lastLines, startNodeService, type Service } from '../../../proxy-host/bench/support/services.ts';
import { apply, proxyTokenFile, remove, startOrchestrator, startWorkload, type Orchestrator, type Workload } from './control-plane.ts';
import { PROXY_NODE_FLAGS } from '../../../scripts/cli/proxy-node-flags.ts';
import { makePki, refusesWithoutClientCert, SERVER_NAME, startNginxPair } from './nginx-pair.ts';
import type { MeasuredProcess } from './window.ts';

export const SERVICE_HOST = 'bench-app.default.svc.cluster.local';
export const BODY_BYTES = 1024;
const APP_SERVICE = 'bench-app';
const CLIENT_SERVICE = 'bench-client';

export interface RowContext {
  children: Children;
  root: string;
  tmp: string;
  cpus: CpuPlan | undefined;
  nginx?: string;
  openssl?: string;
  /** Extra environment for the `wasmesh run` processes of this start (the profiler's inspector port). */
  workloadEnv?: (service: string) => Record<string, string> | undefined;
}

export interface RunningRow {
  port: number;
  host: string;
  procs: MeasuredProcess[];
  /** What was checked about the path before load (mTLS in force or not, ...). */
  checks: string[];
  workloads: Workload[];
  stop(): Promise<void>;
}

export interface RowSpec {
  id: string;
  label: string;
  /** Needs the orchestrator (wasmesh rows). */
  mesh?: boolean;
  start(ctx: RowContext): Promise<RunningRow>;
}

const APP_SCRIPT = 'integration/bench/mesh/app.mjs';

// ---- the control plane, started once for every wasmesh row --------------------------------------

interface Mesh {
  orch: Orchestrator;
  tokens: Record<string, string>;
  mode?: 'strict' | 'plaintext';
}
let mesh: Promise<Mesh> | undefined;

export function meshControl(ctx: RowContext): Promise<Mesh> {
  mesh ??= (async () => {
    const orch = await startOrchestrator(ctx.children, ctx.root, path.join(ctx.tmp, 'orchestrator'), ctx.cpus?.load);
    const tokens: Record<string, string> = {};
    for (const sa of [APP_SERVICE, CLIENT_SERVICE]) tokens[sa] = await proxyTokenFile(ctx.children, ctx.root, orch, sa, ctx.tmp);
    return { orch, tokens };
  })();
  return mesh;
}

export function runningOrchestrator(): Promise<Mesh> | undefined {
  return mesh;
}

const serviceEntry = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: APP_SERVICE, namespace: 'default' },
  spec: { hosts: [SERVICE_HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: APP_SERVICE } } },
};
const peerAuthentication = (mode: 'STRICT' | 'DISABLE') => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'default' }, spec: { mtls: { mode } } });
// Auto mTLS originates ISTIO_MUTUAL to every mesh service; plaintext between sidecars takes a rule.
const plaintextRule = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: APP_SERVICE, namespace: 'default' }, spec: { host: SERVICE_HOST, trafficPolicy: { tls: { mode: 'DISABLE' } } } };

/** STRICT: the demo's setting (mesh-wide PeerAuthentication, auto mTLS). plaintext: DISABLE on both ends. */
async function setMode(m: Mesh, mode: 'strict' | 'plaintext'): Promise<void> {
  if (m.mode === mode) return;
  if (mode === 'strict') {
    await apply(m.orch, [serviceEntry, peerAuthentication('STRICT')]);
    await remove(m.orch, 'destinationrules', APP_SERVICE);
  } else await apply(m.orch, [serviceEntry, peerAuthentication('DISABLE'), plaintextRule]);
  m.mode = mode;
}

// ---- helpers --------------------------------------------------------------------------------------

async function startApp(ctx: RowContext) {
  return startNodeService(ctx.children, 'app', [APP_SCRIPT], { cwd: ctx.root, cpu: ctx.cpus?.load });
}

/** Waits until a GET through the path answers 200 with the app's body (config pushed, endpoints known). */
export async function waitForPath(port: number, host: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await httpGet(port, '/', host, 3000);
      if (r.status === 200 && r.body.length === BODY_BYTES) return;
      last = `${r.status}, ${r.body.length} bytes: ${r.body.slice(0, 160)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`no 200 with ${BODY_BYTES} bytes through port ${port} (Host ${host}) within ${timeoutMs / 1000} s; last: ${last}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The inbound sidecar's telemetry says how the requests it served were secured (Istio's label). */
async function securityPolicySeen(adminPort: number): Promise<string[]> {
  const r = await httpGet(adminPort, '/stats/prometheus', '127.0.0.1');
  const seen = new Set<string>();
  for (const line of r.body.split('\n')) {
    if (!line.startsWith('istio_requests_total{') || !line.includes('reporter="destination"')) continue;
    const m = /connection_security_policy="([^"]*)"/.exec(line);
    if (m) seen.add(m[1]!);
  }
  return [...seen];
}

async function expectPolicy(adminPort: number, want: 'mutual_tls' | 'none'): Promise<string> {
  // The sidecar counts a request when its stream ends, a moment after the client has the answer.
  let seen = await securityPolicySeen(adminPort);
  for (const deadline = Date.now() + 5000; seen.length === 0 && Date.now() < deadline; seen = await securityPolicySeen(adminPort)) await new Promise((r) => setTimeout(r, 200));
  if (seen.length !== 1 || seen[0] !== want) throw new Error(`the inbound sidecar's istio_requests_total shows connection_security_policy ${JSON.stringify(seen)}, expected only "${want}"`);
  return `inbound telemetry: connection_security_policy="${want}"`;
}

function workloadProcs(w: Workload, direction: 'outbound' | 'inbound'): MeasuredProcess[] {
  return [
    { role: `${direction} sidecar (${w.service})`, pid: w.sidecarPid, kind: 'sidecar' },
    { role: `wasmesh run (${w.service})`, pid: w.supervisorPid, kind: 'supervisor' },
  ];
}

async function startMeshRow(ctx: RowContext, mode: 'strict' | 'plaintext', withClient: boolean): Promise<RunningRow> {
  const m = await meshControl(ctx);
  await setMode(m, mode);
  const appCommand = pinned(ctx.cpus?.load, process.execPath, [APP_SCRIPT]).flat();
  const start = async (service: string, command: string[]) =>
    startWorkload(ctx.children, { root: ctx.root, orch: m.orch, service, tokenFile: m.tokens[service]!, appPort: await freePort(), command, cpu: ctx.cpus?.target, env: ctx.workloadEnv?.(service) });
  const settled = await Promise.allSettled([start(APP_SERVICE, appCommand), ...(withClient ? [start(CLIENT_SERVICE, ['sleep', 'infinity'])] : [])]);
  const workloads = settled.filter((s): s is PromiseFulfilledResult<Workload> => s.status === 'fulfilled').map((s) => s.value);
  const stop = async () => {
    await Promise.all(workloads.map((w) => ctx.children.stop(w.supervisor, 8000)));
  };
  try {
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const [app, client] = workloads as [Workload, Workload | undefined];
    const port = client ? client.outboundPort : app.inboundPort;
    await waitForPath(port, SERVICE_HOST);
    const checks = [await expectPolicy(app.adminPort, mode === 'strict' ? 'mutual_tls' : 'none')];
    if (mode === 'strict') {
      const plain = await httpGet(app.inboundPort, '/', SERVICE_HOST, 3000).then((r) => `answered ${r.status}`, (err: Error) => `refused (${err.message})`);
      if (plain.startsWith('answered 200')) throw new Error('STRICT mTLS not enforced: a plaintext request to the inbound sidecar got 200');
      checks.push(`plaintext to the inbound sidecar: ${plain}`);
    }
    const procs: MeasuredProcess[] = [
      ...(client ? workloadProcs(client, 'outbound') : []),
      ...workloadProcs(app, 'inbound'),
      { role: 'app', pid: app.commandPid, kind: 'app' },
      { role: 'orchestrator', pid: m.orch.pid, kind: 'orchestrator' },
    ];
    return { port, host: SERVICE_HOST, procs, checks, workloads, stop };
  } catch (err) {
    await stop();
    const said = workloads.map((w) => `${w.service}: ${lastLines(w.output(), 6)}`).join(' | ');
    throw new Error(`${(err as Error).message}${said ? ` (${said})` : ''}`);
  }
}

// ---- the rows -------------------------------------------------------------------------------------

export const ROWS: RowSpec[] = [
  {
    id: 'direct',
    label: 'no proxy',
    async start(ctx) {
      const app = await startApp(ctx);
      return { port: app.port, host: SERVICE_HOST, procs: [{ role: 'app', pid: app.pid, kind: 'app' }], checks: [], workloads: [], stop: () => ctx.children.stop(app.cp) };
    },
  },
  { id: 'sidecar', label: 'wasmesh, one sidecar (inbound), telemetry', mesh: true, start: (ctx) => startMeshRow(ctx, 'plaintext', false) },
  { id: 'pair', label: 'wasmesh pair, plaintext, telemetry', mesh: true, start: (ctx) => startMeshRow(ctx, 'plaintext', true) },
  { id: 'pair-mtls', label: 'wasmesh pair, STRICT mTLS, telemetry', mesh: true, start: (ctx) => startMeshRow(ctx, 'strict', true) },
  {
    id: 'nginx-pair',
    label: 'nginx pair, mTLS',
    async start(ctx) {
      if (!ctx.nginx || !ctx.openssl) throw new Error('nginx or openssl missing');
      const app = await startApp(ctx);
      try {
        const dir = path.join(ctx.tmp, `nginx-pair-${Date.now()}`);
        const pki = makePki(ctx.openssl, path.join(dir, 'pki'));
        const pair = await startNginxPair(ctx.children, ctx.nginx, pki, dir, app.port, ctx.cpus?.target);
        const stop = async () => {
          await Promise.all([ctx.children.stop(pair.client.cp), ctx.children.stop(pair.server.cp), ctx.children.stop(app.cp)]);
        };
        try {
          await waitForPath(pair.client.port, SERVICE_HOST, 10_000);
          const checks = [await refusesWithoutClientCert(pair.server.port, pki.ca)];
          const procs: MeasuredProcess[] = [
            { role: 'nginx client side', pid: pair.client.pid, kind: 'proxy' },
            { role: 'nginx server side', pid: pair.server.pid, kind: 'proxy' },
            { role: 'app', pid: app.pid, kind: 'app' },
          ];
          return { port: pair.client.port, host: SERVICE_HOST, procs, checks, workloads: [], stop };
        } catch (err) {
          await stop();
          throw err;
        }
      } catch (err) {
        await ctx.children.stop(app.cp);
        throw err;
      }
    },
  },
  {
    id: 'node-pair',
    label: 'Node relay pair, mTLS (no mesh code: the floor)',
    async start(ctx) {
      if (!ctx.openssl) throw new Error('openssl missing');
      const app = await startApp(ctx);
      const started: Service[] = [app];
      const stop = async () => {
        await Promise.all(started.map((s) => ctx.children.stop(s.cp)));
      };
      try {
        const pki = makePki(ctx.openssl, path.join(ctx.tmp, `node-pair-${Date.now()}`, 'pki'));
        const relay = path.join(ctx.root, 'proxy-host/bench/node-proxy-undici.mjs');
        const server = await startNodeService(ctx.children, 'node relay server side', [...PROXY_NODE_FLAGS, relay, String(app.port), '--server-tls', [pki.serverCert, pki.serverKey, pki.ca].join(',')], { cwd: ctx.root, cpu: ctx.cpus?.target });
        started.push(server);
        const client = await startNodeService(ctx.children, 'node relay client side', [...PROXY_NODE_FLAGS, relay, String(server.port), '--upstream-tls', [pki.clientCert, pki.clientKey, pki.ca, SERVER_NAME].join(',')], { cwd: ctx.root, cpu: ctx.cpus?.target });
        started.push(client);
        await waitForPath(client.port, SERVICE_HOST, 10_000);
        const checks = [await refusesWithoutClientCert(server.port, pki.ca)];
        const procs: MeasuredProcess[] = [
          { role: 'node relay client side', pid: client.pid, kind: 'proxy' },
          { role: 'node relay server side', pid: server.pid, kind: 'proxy' },
          { role: 'app', pid: app.pid, kind: 'app' },
        ];
        return { port: client.port, host: SERVICE_HOST, procs, checks, workloads: [], stop };
      } catch (err) {
        await stop();
        throw err;
      }
    },
  },
  {
    id: 'nginx',
    label: 'nginx single, plaintext',
    async start(ctx) {
      if (!ctx.nginx) throw new Error('nginx missing');
      const app = await startApp(ctx);
      try {
        const port = await freePort();
        const proxy = await startNginx(ctx.children, {
          bin: ctx.nginx,
          name: 'nginx',
          dir: path.join(ctx.tmp, `nginx-${Date.now()}`),
          port,
          cpu: ctx.cpus?.target,
          http: `  upstream app {
    server 127.0.0.1:${app.port};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
        });
        const stop = async () => {
          await Promise.all([ctx.children.stop(proxy.cp), ctx.children.stop(app.cp)]);
        };
        return { port, host: SERVICE_HOST, procs: [{ role: 'nginx', pid: proxy.pid, kind: 'proxy' }, { role: 'app', pid: app.pid, kind: 'app' }], checks: [], workloads: [], stop };
      } catch (err) {
        await ctx.children.stop(app.cp);
        throw err;
      }
    },
  },
];

/**
 * The sidecars' own account of the answers that were not 200 (istio_requests_total by reporter,
 * response code and Envoy-style response flags), so a row with errors says what they were.
 */
export async function failedAnswers(workloads: readonly Workload[]): Promise<string | undefined> {
  const counts: string[] = [];
  for (const w of workloads) {
    const r = await httpGet(w.adminPort, '/stats/prometheus', '127.0.0.1').catch(() => undefined);
    for (const line of r?.body.split('\n') ?? []) {
      if (!line.startsWith('istio_requests_total{') || line.includes('response_code="200"')) continue;
      const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1] ?? '?';
      counts.push(`${w.service} ${label('reporter')} ${label('response_code')} ${label('response_flags')}: ${line.slice(line.lastIndexOf(' ') + 1)}`);
    }
  }
  return counts.length ? `not 200 (sidecar, reporter, code, flags: count): ${counts.join(', ')}` : undefined;
}
