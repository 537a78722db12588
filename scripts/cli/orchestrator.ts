// wasmesh orchestrator: the control plane. Opens the store (SQLite in the data dir, or etcd), the
// token store, serves the REST API and, when this checkout has it, the gRPC discovery service.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildApp } from '../../orchestrator/src/app.ts';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { EtcdStore, parseEtcdUrl } from '../../orchestrator/src/store/etcd-store.ts';
import { SqliteStore } from '../../orchestrator/src/store/sqlite-store.ts';
import type { ConfigStore } from '../../orchestrator/src/store/types.ts';

export const usage = `usage: wasmesh orchestrator [options]

Runs the control plane: the REST API (resources, apply, watch, modules; OpenAPI at /openapi.json)
and the gRPC discovery service that pushes config to proxies. Every route but /healthz needs a
bearer token; the first start writes an admin token to <data-dir>/admin-token (mode 0600).
More tokens: wasmesh token create --role viewer|admin|proxy.

  --data-dir DIR          state: the SQLite store, tokens (default .wasmesh/orchestrator)
  --store STORE           sqlite (default: <data-dir>/store.db) or etcd://host:port[,host:port][/prefix]
  --listen HOST:PORT      REST API address (default 127.0.0.1:15014)
  --grpc-listen HOST:PORT discovery service address (default 127.0.0.1:15010)
  --log-requests          log every HTTP request (JSON lines on stdout)
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
  out?: Output;
  err?: Output;
}

export interface RunningOrchestrator {
  url: string;
  grpcPort: number | undefined;
  adminTokenPath: string;
  store: ConfigStore;
  close(): Promise<void>;
}

/** The parts of orchestrator/src/xds/server.ts this command uses (another module; may be absent). */
interface XdsModule {
  startXdsServer(opts: { store: ConfigStore; tokens: TokenStore; host: string; port: number }): Promise<{ port: number; close(): Promise<void>; invalidate?(): void; proxies?(): unknown[] }>;
}

const XDS_MODULE = new URL('../../orchestrator/src/xds/server.ts', import.meta.url);

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

export async function startOrchestrator(opts: OrchestratorOptions): Promise<RunningOrchestrator> {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const tokens = TokenStore.open(opts.dataDir);
  const admin = tokens.ensureAdminToken(opts.dataDir);
  const store = await openStore(opts.store, opts.dataDir);
  let xds: Awaited<ReturnType<XdsModule['startXdsServer']>> | undefined;
  const app = buildApp({
    store,
    tokens,
    logger: opts.logRequests ?? false,
    // The discovery service's cache learns of resource changes by watching the store; module
    // uploads are not store events, so tell it.
    onModuleUploaded: () => xds?.invalidate?.(),
    // GET /proxy-status: the streams of this replica's discovery service (none until it runs).
    proxyStatus: () => xds?.proxies?.() ?? [],
  });
  try {
    for (const l of [opts.listen, opts.grpcListen]) {
      if (l && !isLoopback(l.host)) err.write(`wasmesh orchestrator: warning: listening on ${l.host}, not loopback: anyone who can reach it can try tokens\n`);
    }
    await app.listen({ host: opts.listen.host, port: opts.listen.port });
    if (opts.grpcListen) xds = await startXds(store, tokens, opts.grpcListen, err);
  } catch (e) {
    await app.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
  const address = app.server.address() as { address: string; port: number };
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  out.write(`wasmesh orchestrator: REST API on ${url} (store: ${opts.store === 'sqlite' ? (store as SqliteStore).path : opts.store})\n`);
  if (xds) out.write(`wasmesh orchestrator: discovery (gRPC) on ${opts.grpcListen!.host}:${xds.port}\n`);
  out.write(`wasmesh orchestrator: admin token ${admin.created ? 'written to' : 'in'} ${admin.path} (use: Authorization: Bearer $(cat ${admin.path}))\n`);
  let closing: Promise<void> | undefined;
  return {
    url,
    grpcPort: xds?.port,
    adminTokenPath: admin.path,
    store,
    close() {
      closing ??= (async () => {
        await Promise.allSettled([app.close(), xds?.close()]);
        await store.close();
      })();
      return closing;
    },
  };
}

async function startXds(store: ConfigStore, tokens: TokenStore, at: { host: string; port: number }, err: Output): Promise<Awaited<ReturnType<XdsModule['startXdsServer']>> | undefined> {
  if (!existsSync(XDS_MODULE)) {
    err.write('wasmesh orchestrator: config distribution (gRPC) is unavailable in this checkout (orchestrator/src/xds/server.ts is missing); serving the REST API only\n');
    return undefined;
  }
  let mod: XdsModule;
  try {
    mod = (await import(XDS_MODULE.href)) as XdsModule;
  } catch (e) {
    err.write(`wasmesh orchestrator: config distribution (gRPC) is unavailable: ${(e as Error).message}; serving the REST API only\n`);
    return undefined;
  }
  return mod.startXdsServer({ store, tokens, host: at.host, port: at.port });
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
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out.write(usage);
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
      out,
      err,
    };
  } catch (e) {
    err.write(`wasmesh orchestrator: ${(e as Error).message}\n\n${usage}`);
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
