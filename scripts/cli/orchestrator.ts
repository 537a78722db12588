// wasmesh orchestrator: the control plane. Opens the store (SQLite in the data dir, or etcd), the
// token store, serves the REST API and, when this checkout has it, the gRPC discovery service.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildApp } from '../../orchestrator/src/app.ts';
import { CanaryStats } from '../../orchestrator/src/rollout/canary-stats.ts';
import { TrafficStats } from '../../orchestrator/src/console/traffic-stats.ts';
import type { FilterStatsReport, TrafficReportMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { CertificateAuthority, DEFAULT_TRUST_DOMAIN, parseLifetime, type PluggedInCa } from '../../orchestrator/src/certs/ca.ts';
import { EtcdStore, parseEtcdUrl } from '../../orchestrator/src/store/etcd-store.ts';
import { SqliteStore } from '../../orchestrator/src/store/sqlite-store.ts';
import type { ConfigStore } from '../../orchestrator/src/store/types.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh orchestrator [options]

Runs the control plane: the REST API (resources, apply, watch, modules; OpenAPI at /openapi.json)
and the gRPC discovery service that pushes config to proxies. Every route but /healthz needs a
bearer token; the first start writes an admin token to <data-dir>/admin-token (mode 0600).
More tokens: wasmesh token create --role viewer|admin|editor|proxy.

  --data-dir DIR          state: the SQLite store, tokens (default .wasmesh/orchestrator)
  --store STORE           sqlite (default: <data-dir>/store.db) or etcd://host:port[,host:port][/prefix]
  --listen HOST:PORT      REST API address (default 127.0.0.1:15014)
  --grpc-listen HOST:PORT discovery service address (default 127.0.0.1:15010)
  --log-requests          log every HTTP request (JSON lines on stdout); errors (every 5xx,
                          with its request id) are logged either way (stderr without this)
  --trust-domain DOMAIN   SPIFFE trust domain of workload certificates (default cluster.local)
  --ca-cert-dir DIR       plug in your own root or intermediate CA, laid out as Istio's cacerts:
                          ca-cert.pem, ca-key.pem, and optionally cert-chain.pem, root-cert.pem.
                          Default: a self-signed root made at first start in <data-dir>/ca
  --workload-cert-ttl D   default workload certificate lifetime (default 24h; units d h m s)
  --max-workload-cert-ttl D  longest lifetime a proxy may ask for (default 90d, at most 90d)
  --ratelimit-redis URL   also run the rate-limit service (Envoy RLS v3 over gRPC) counting in this
                          Redis (redis://host:port), with the limits of the stored RateLimitPolicies
  --ratelimit-listen HOST:PORT  its address (default 127.0.0.1:8081)
  -h, --help

Binds loopback unless told otherwise. SIGTERM or SIGINT drains: watch streams and proxy streams
end, the store closes, and the process exits 0.
`;

export interface Output {
  write(text: string): unknown;
}

export interface OrchestratorOptions {
  dataDir: string;
  /** "sqlite" or an etcd:// url. */
  store: string;
  listen: { host: string; port: number };
  grpcListen: { host: string; port: number } | undefined;
  logRequests?: boolean;
  /** SPIFFE trust domain (default cluster.local). */
  trustDomain?: string;
  /** An Istio-style cacerts directory to sign with instead of the self-managed root in <dataDir>/ca. */
  caCertDir?: string;
  workloadCertTtlMs?: number;
  maxWorkloadCertTtlMs?: number;
  /** Run the rate-limit service beside the API (ratelimit/): its Redis and address. */
  rateLimit?: { redisUrl: string; listen: string };
  out?: Output;
  err?: Output;
}

export interface RunningOrchestrator {
  url: string;
  grpcPort: number | undefined;
  /** The embedded rate-limit service's port (when asked for). */
  rateLimitPort?: number | undefined;
  adminTokenPath: string;
  store: ConfigStore;
  /** The certificate authority behind the gRPC certificate calls (absent without gRPC). */
  ca: CertificateAuthority | undefined;
  close(): Promise<void>;
}

/** The parts of orchestrator/src/xds/server.ts this command uses (another module; may be absent). */
interface XdsModule {
  startXdsServer(opts: { store: ConfigStore; tokens: TokenStore; host: string; port: number; ca?: CertificateAuthority; onFilterStats?: (report: FilterStatsReport) => void; onTraffic?: (node: string, traffic: TrafficReportMessage) => void }): Promise<{ port: number; close(): Promise<void>; invalidate?(): void; proxies?(): unknown[] }>;
}


/** "host:port", "[v6]:port" or ":port" (loopback). */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${flag} must be HOST:PORT (got ${JSON.stringify(value)})`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export async function openStore(spec: string, dataDir: string): Promise<ConfigStore> {
  if (spec === 'sqlite') return new SqliteStore({ dataDir });
  if (spec.startsWith('etcd://')) return EtcdStore.open(parseEtcdUrl(spec));
  throw new Error(`--store must be sqlite or etcd://host:port (got ${JSON.stringify(spec)})`);
}

/** Istio's cacerts layout in `dir`: ca-cert.pem and ca-key.pem required, cert-chain.pem and root-cert.pem when present. */
export function pluggedInCa(dir: string): PluggedInCa {
  const file = (name: string) => join(dir, name);
  for (const required of ['ca-cert.pem', 'ca-key.pem']) {
    if (!existsSync(file(required))) throw new Error(`--ca-cert-dir ${dir}: ${required} is missing`);
  }
  return {
    certFile: file('ca-cert.pem'),
    keyFile: file('ca-key.pem'),
    ...(existsSync(file('cert-chain.pem')) ? { chainFile: file('cert-chain.pem') } : {}),
    ...(existsSync(file('root-cert.pem')) ? { rootFile: file('root-cert.pem') } : {}),
  };
}

export async function openCa(opts: OrchestratorOptions): Promise<CertificateAuthority> {
  return CertificateAuthority.open({
    dir: join(opts.dataDir, 'ca'),
    trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    ...(opts.caCertDir !== undefined ? { pluggedIn: pluggedInCa(opts.caCertDir) } : {}),
    ...(opts.workloadCertTtlMs !== undefined ? { defaultTtlMs: opts.workloadCertTtlMs } : {}),
    ...(opts.maxWorkloadCertTtlMs !== undefined ? { maxTtlMs: opts.maxWorkloadCertTtlMs } : {}),
  });
}

export async function startOrchestrator(opts: OrchestratorOptions): Promise<RunningOrchestrator> {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const tokens = TokenStore.open(opts.dataDir);
  const admin = tokens.ensureAdminToken(opts.dataDir);
  // The CA serves over gRPC only; open it first so a bad CA setup fails the start cleanly.
  const ca = opts.grpcListen ? await openCa(opts) : undefined;
  const store = await openStore(opts.store, opts.dataDir);
  let xds: Awaited<ReturnType<XdsModule['startXdsServer']>> | undefined;
  let rateLimit: { port: number; close(): Promise<void> } | undefined;
  // Proxies report canary outcomes over gRPC; the REST side's rollout controller judges on them.
  const canaryStats = new CanaryStats();
  // ... and their traffic per edge: the console's graph.
  const traffic = new TrafficStats();
  const app = buildApp({
    store,
    tokens,
    canaryStats,
    traffic,
    logger: opts.logRequests ?? false,
    // The discovery service's cache learns of resource changes by watching the store; module
    // uploads are not store events, so tell it.
    onModuleUploaded: () => xds?.invalidate?.(),
    // GET /proxy-status: the streams of this replica's discovery service (none until it runs).
    proxyStatus: () => xds?.proxies?.() ?? [],
    ca,
  });
  try {
    for (const l of [opts.listen, opts.grpcListen]) {
      if (l && !isLoopback(l.host)) err.write(`wasmesh orchestrator: warning: listening on ${l.host}, not loopback: anyone who can reach it can try tokens\n`);
    }
    await app.listen({ host: opts.listen.host, port: opts.listen.port });
    if (opts.grpcListen) xds = await startXds(store, tokens, opts.grpcListen, err, ca, canaryStats, traffic);
    if (opts.rateLimit) rateLimit = await startEmbeddedRateLimit(store, opts.rateLimit, err);
  } catch (e) {
    await xds?.close().catch(() => undefined);
    await app.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
  const address = app.server.address() as { address: string; port: number };
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  out.write(`wasmesh orchestrator: REST API on ${url} (store: ${opts.store === 'sqlite' ? (store as SqliteStore).path : opts.store})\n`);
  if (xds) out.write(`wasmesh orchestrator: discovery (gRPC) on ${opts.grpcListen!.host}:${xds.port}\n`);
  if (xds && ca) out.write(`wasmesh orchestrator: certificate authority for spiffe://${ca.trustDomain} (${ca.pluggedIn ? `plugged in from ${opts.caCertDir}` : `self-managed root in ${ca.dir}`})\n`);
  if (rateLimit) out.write(`wasmesh orchestrator: rate-limit service (RLS v3, gRPC) on ${opts.rateLimit!.listen.replace(/:0$/, '')}${opts.rateLimit!.listen.endsWith(':0') ? `:${rateLimit.port}` : ''}, counting in ${opts.rateLimit!.redisUrl}\n`);
  out.write(`wasmesh orchestrator: web console on ${url}/console/ (it asks for a token)\n`);
  out.write(`wasmesh orchestrator: admin token ${admin.created ? 'written to' : 'in'} ${admin.path} (use: Authorization: Bearer $(cat ${admin.path}))\n`);
  let closing: Promise<void> | undefined;
  return {
    url,
    grpcPort: xds?.port,
    rateLimitPort: rateLimit?.port,
    adminTokenPath: admin.path,
    store,
    ca,
    close() {
      closing ??= (async () => {
        await Promise.allSettled([app.close(), xds?.close(), rateLimit?.close()]);
        await store.close();
      })();
      return closing;
    },
  };
}

/** The rate-limit service, fed the stored RateLimitPolicies (loaded only when asked for). */
async function startEmbeddedRateLimit(store: ConfigStore, at: { redisUrl: string; listen: string }, err: Output): Promise<{ port: number; close(): Promise<void> }> {
  const [{ startRateLimitServer }, { feedRateLimitConfig }] = await Promise.all([import('../../orchestrator/src/ratelimit/server.ts'), import('../../orchestrator/src/ratelimit/store-config.ts')]);
  const server = await startRateLimitServer({ listen: at.listen, redisUrl: at.redisUrl, log: (m) => err.write(`wasmesh orchestrator: rate-limit service: ${m}\n`) });
  const feed = feedRateLimitConfig(store, (config) => server.setConfig(config), (e) => err.write(`wasmesh orchestrator: rate-limit service: cannot read RateLimitPolicies: ${e.message}\n`));
  await feed.ready;
  return {
    port: server.port,
    async close() {
      feed.close();
      await server.close();
    },
  };
}

async function startXds(store: ConfigStore, tokens: TokenStore, at: { host: string; port: number }, err: Output, ca: CertificateAuthority | undefined, canaryStats: CanaryStats, traffic: TrafficStats): Promise<Awaited<ReturnType<XdsModule['startXdsServer']>> | undefined> {
  let mod: XdsModule;
  try {
    mod = await import('../../orchestrator/src/xds/server.ts');
  } catch (e) {
    err.write(`wasmesh orchestrator: config distribution (gRPC) is unavailable: ${(e as Error).message}; serving the REST API only\n`);
    return undefined;
  }
  return mod.startXdsServer({ store, tokens, host: at.host, port: at.port, ...(ca ? { ca } : {}), onFilterStats: (report) => canaryStats.record(report), onTraffic: (node, t) => traffic.record(node, t) });
}

export async function run(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let options: OrchestratorOptions;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        'data-dir': { type: 'string', default: '.wasmesh/orchestrator' },
        store: { type: 'string', default: 'sqlite' },
        listen: { type: 'string', default: '127.0.0.1:15014' },
        'grpc-listen': { type: 'string', default: '127.0.0.1:15010' },
        'log-requests': { type: 'boolean', default: false },
        'trust-domain': { type: 'string', default: DEFAULT_TRUST_DOMAIN },
        'ca-cert-dir': { type: 'string' },
        'workload-cert-ttl': { type: 'string' },
        'max-workload-cert-ttl': { type: 'string' },
        'ratelimit-redis': { type: 'string' },
        'ratelimit-listen': { type: 'string', default: '127.0.0.1:8081' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(helpFor(usage, out));
      return 0;
    }
    if (positionals.length > 0) throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (values.store !== 'sqlite' && !values.store.startsWith('etcd://')) throw new Error(`--store must be sqlite or etcd://host:port (got ${JSON.stringify(values.store)})`);
    if (values.store.startsWith('etcd://')) parseEtcdUrl(values.store);
    options = {
      dataDir: values['data-dir'],
      store: values.store,
      listen: parseHostPort(values.listen, '--listen'),
      grpcListen: parseHostPort(values['grpc-listen'], '--grpc-listen'),
      logRequests: values['log-requests'],
      trustDomain: values['trust-domain'],
      ...(values['ca-cert-dir'] !== undefined ? { caCertDir: values['ca-cert-dir'] } : {}),
      ...(values['workload-cert-ttl'] !== undefined ? { workloadCertTtlMs: parseLifetime(values['workload-cert-ttl'], '--workload-cert-ttl') } : {}),
      ...(values['max-workload-cert-ttl'] !== undefined ? { maxWorkloadCertTtlMs: parseLifetime(values['max-workload-cert-ttl'], '--max-workload-cert-ttl') } : {}),
      ...(values['ratelimit-redis'] !== undefined ? { rateLimit: { redisUrl: redisUrl(values['ratelimit-redis']), listen: hostPortText(values['ratelimit-listen'], '--ratelimit-listen') } } : {}),
      out,
      err,
    };
  } catch (e) {
    err.write(`wasmesh orchestrator: ${(e as Error).message}\n\n${helpFor(usage, err)}`);
    return 2;
  }

  let running: RunningOrchestrator;
  try {
    running = await startOrchestrator(options);
  } catch (e) {
    err.write(`wasmesh orchestrator: cannot start: ${(e as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      err.write(`wasmesh orchestrator: ${signal}: draining\n`);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await running.close();
  err.write('wasmesh orchestrator: stopped\n');
  return 0;
}

/** redis://host:port[/db] (checked here so a typo is a usage error, not a silent retry loop). */
export function redisUrl(text: string, flag = '--ratelimit-redis'): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${flag} must be redis://host:port (got ${JSON.stringify(text)})`);
  }
  if (url.protocol !== 'redis:' || url.hostname === '') throw new Error(`${flag} must be redis://host:port (got ${JSON.stringify(text)})`);
  return text;
}

function hostPortText(text: string, flag: string): string {
  const { host, port } = parseHostPort(text, flag);
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}
