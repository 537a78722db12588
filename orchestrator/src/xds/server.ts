// The discovery service proxies connect to: AggregatedDiscoveryService (discovery.proto) on grpc-js.
// Streams subscribe a workload to the snapshot cache and follow ACK/NACK (stream.ts); FetchModule
// streams an uploaded module's bytes by digest. Serving only: config is computed by the cache.
// A subscription carrying node.endpoint is auto-registered as a WorkloadEntry while its stream
// lives (registration.ts). CreateCertificate / WatchTrustBundle are the CA's (certs/grpc.ts).

import * as grpc from '@grpc/grpc-js';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import {
  PROXY_CONFIG_TYPE_URL,
  discoveryDefinition,
  type FilterStatsReport,
  type TrafficReportMessage,
  type DiscoveryRequest,
  type DiscoveryResponse,
  type ModuleChunk,
  type ModuleRequest,
} from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { ROOT_NAMESPACE } from '../../../mesh/src/documents.ts';
import { certificateHandlers, type CertificateSigner } from '../certs/grpc.ts';
import { BuiltinModules } from '../snapshot/builtin-modules.ts';
import { SnapshotCache, type CacheStats, type NodeState } from '../snapshot/cache.ts';
import type { ConfigStore } from '../store/types.ts';
import { authenticate, authorizeWorkload, type CallError, type TokenVerifier } from './auth.ts';
import { AutoRegistrar, DEFAULT_REGISTRATION_GRACE_MS, parseEndpoint, type RegisteredEndpoint } from './registration.ts';
import { ProxyStream, type ProxyStatus } from './stream.ts';

export type { TokenClaims, TokenVerifier } from './auth.ts';
export type { ProxyStatus } from './stream.ts';
export type { CacheStats } from '../snapshot/cache.ts';
export { AUTO_REGISTERED_ANNOTATION, CONNECTION_ANNOTATION, autoEntryName } from './registration.ts';

/** Module bytes per FetchModule message. */
export const MODULE_CHUNK_BYTES = 64 * 1024;

export type XdsLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface XdsServerOptions {
  store: ConfigStore;
  /** When given, every call needs `authorization: Bearer <token>` with role proxy or admin. */
  tokens?: TokenVerifier;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Debounce of store changes (default 100 ms quiet period, 1000 ms at most). */
  debounceMs?: number;
  maxDelayMs?: number;
  /** The built-in telemetry filter on both sides of every proxy (default true, as in Istio). */
  telemetry?: boolean;
  /** Where the built-in filter modules are (default: this checkout's filters/). */
  filtersDir?: string;
  log?: XdsLog;
  /**
   * Auto-registration: how long the WorkloadEntry of a proxy whose stream ended stays, waiting for
   * it to reconnect, before it is deleted (default 10 000 ms).
   */
  registrationGraceMs?: number;
  /**
   * The certificate authority behind CreateCertificate and WatchTrustBundle (certs/ca.ts). Absent:
   * those calls end UNAVAILABLE.
   */
  ca?: CertificateSigner;
  /** Filter outcomes per module version that proxies report while they run a canary (ReportFilterStats). */
  onFilterStats?: (report: FilterStatsReport) => void;
  /** A proxy's outbound golden signals per edge (TrafficReport, on the same call), for the console's graph. */
  onTraffic?: (node: string, traffic: TrafficReportMessage) => void;
  /** Called when a proxy ACKs a version (benchmarks and tests). */
  onAck?: (node: string, version: string) => void;
}

export interface XdsServer {
  readonly port: number;
  /** Every connected proxy stream, for `wasmesh proxy-status`. */
  proxies(): ProxyStatus[];
  /** Every workload the cache holds a snapshot (or an inconsistency) for. */
  snapshots(): NodeState[];
  /** Re-read the store soon (after a module upload, which the store's watch does not report). */
  invalidate(): void;
  /** How many workload recomputes the cache ran and skipped (a change that cannot affect them). */
  stats(): CacheStats;
  /** Resolves once no recompute and no auto-registration write is pending (tests and benchmarks). */
  settled(): Promise<void>;
  /** Ends every stream (UNAVAILABLE: proxies reconnect elsewhere or later) and stops listening. */
  close(): Promise<void>;
}

const defaultLog: XdsLog = (level, message) => {
  if (level === 'debug') return;
  process.stderr.write(`${new Date().toISOString()} ${level} [xds] ${message}\n`);
};

export async function startXdsServer(opts: XdsServerOptions): Promise<XdsServer> {
  const log = opts.log ?? defaultLog;
  const cache = new SnapshotCache({
    store: opts.store,
    debounceMs: opts.debounceMs,
    maxDelayMs: opts.maxDelayMs,
    telemetry: opts.telemetry,
    builtins: new BuiltinModules(opts.filtersDir),
    log,
  });
  await cache.start();
  const registrar = new AutoRegistrar(opts.store, { graceMs: opts.registrationGraceMs ?? DEFAULT_REGISTRATION_GRACE_MS, log });

  type Registration = ReturnType<AutoRegistrar['register']>;
  const streams = new Set<{ call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>; stream?: ProxyStream; registration?: Registration }>();
  const refuse = (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse> | grpc.ServerWritableStream<ModuleRequest, ModuleChunk>, error: CallError) => {
    call.emit('error', { code: error.code, details: error.details });
  };

  const streamResources = (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void => {
    const auth = authenticate(call.metadata, opts.tokens);
    if (!auth.ok) {
      log('warn', `stream from ${call.getPeer()} refused: ${auth.error.details}`);
      refuse(call, auth.error);
      return;
    }
    const entry: { call: typeof call; stream?: ProxyStream; registration?: Registration } = { call };
    streams.add(entry);
    let cancelWatch: (() => void) | undefined;
    // `leaving`: the proxy half-closed the stream itself (it is shutting down), not a broken stream.
    const end = (leaving = false) => {
      if (!streams.has(entry)) return;
      streams.delete(entry);
      cancelWatch?.();
      entry.stream?.close();
      if (entry.registration) registrar.unregister(entry.registration, leaving);
      if (entry.stream) log('info', `${entry.stream.node} disconnected`);
    };
    call.on('data', (req: DiscoveryRequest) => {
      if (req.leaving) {
        // A goodbye: the proxy is shutting down. A broken stream (crash, network) keeps the grace period.
        end(true);
        call.end();
        return;
      }
      if (entry.stream) {
        if (req.type_url !== PROXY_CONFIG_TYPE_URL) {
          log('warn', `${entry.stream.node}: ignoring request for unknown type ${JSON.stringify(req.type_url)}`);
          return;
        }
        entry.stream.onRequest(req);
        return;
      }
      const first = parseFirstRequest(req);
      if ('code' in first) {
        refuse(call, first);
        end();
        return;
      }
      const denied = authorizeWorkload(auth.claims, first.workload);
      if (denied) {
        log('warn', `stream from ${call.getPeer()} as ${first.workload.namespace}/${first.workload.name} refused: ${denied.details}`);
        refuse(call, denied);
        end();
        return;
      }
      const node = first.nodeId || `${first.workload.name}.${first.workload.namespace}@${call.getPeer()}`;
      const onAck = opts.onAck;
      const stream = new ProxyStream(call, node, first.workload, req, (level, message) => log(level, message), onAck && ((version) => onAck(node, version)));
      entry.stream = stream;
      if (first.endpoint) entry.registration = registrar.register(first.workload, first.endpoint);
      log('info', `${node} connected (workload ${first.workload.namespace}/${first.workload.name}, has ${req.version_info.slice(0, 12) || 'no config'})`);
      cancelWatch = cache.watch(first.workload, (snapshot) => stream.onSnapshot(snapshot));
    });
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('error', () => end());
    call.on('close', () => end());
    call.on('cancelled', () => end());
  };

  const fetchModule = (call: grpc.ServerWritableStream<ModuleRequest, ModuleChunk>): void => {
    const auth = authenticate(call.metadata, opts.tokens);
    if (!auth.ok) {
      refuse(call, auth.error);
      return;
    }
    const sha = call.request.sha256.trim().toLowerCase().replace(/^sha256:/, '');
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      refuse(call, { code: grpc.status.INVALID_ARGUMENT, details: `sha256 must be 64 hexadecimal characters, got ${JSON.stringify(call.request.sha256)}` });
      return;
    }
    // Uploaded modules first, then the mesh's built-in filters.
    const read = async () => (await opts.store.getModule(sha)) ?? (await cache.builtins.get(sha));
    read().then(
      (bytes) => {
        if (bytes === undefined) {
          refuse(call, { code: grpc.status.NOT_FOUND, details: `no module with sha256 ${sha}` });
          return;
        }
        const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let off = 0; off < data.length; off += MODULE_CHUNK_BYTES) {
          if (call.cancelled) return;
          call.write({ data: data.subarray(off, off + MODULE_CHUNK_BYTES) });
        }
        call.end();
      },
      (err: unknown) => {
        log('error', `reading module ${sha} failed: ${err instanceof Error ? err.message : String(err)}`);
        refuse(call, { code: grpc.status.INTERNAL, details: `cannot read module ${sha}` });
      },
    );
  };

  const reportFilterStats = (call: grpc.ServerUnaryCall<FilterStatsReport, Record<string, never>>, callback: grpc.sendUnaryData<Record<string, never>>): void => {
    const auth = authenticate(call.metadata, opts.tokens);
    if (!auth.ok) {
      callback({ code: auth.error.code, details: auth.error.details });
      return;
    }
    // A token bound to a namespace reports on that namespace's plugins and the mesh-wide ones only.
    const bound = auth.claims.role === 'admin' ? undefined : auth.claims.namespace;
    const report = bound === undefined ? call.request : { ...call.request, filters: call.request.filters.filter((f) => f.plugin.startsWith(`${bound}/`) || f.plugin.startsWith(`${ROOT_NAMESPACE}/`)) };
    try {
      // Reports may carry traffic only: the rollout controller hears of the ones about filters.
      if (report.filters.length > 0) opts.onFilterStats?.(report);
      const traffic = call.request.traffic;
      if (traffic && opts.onTraffic) {
        // A proxy token speaks for its own namespace only.
        const ns = traffic.source_namespace || 'default';
        if (auth.claims.role !== 'admin' && auth.claims.namespace !== undefined && ns !== auth.claims.namespace) {
          log('warn', `traffic report from ${call.request.node_id} for namespace ${ns} ignored: its token is bound to ${auth.claims.namespace}`);
        } else {
          opts.onTraffic(call.request.node_id || call.getPeer(), traffic);
        }
      }
    } catch (err) {
      log('warn', `filter stats from ${call.request.node_id}: ${err instanceof Error ? err.message : String(err)}`);
    }
    callback(null, {});
  };

  const server = new grpc.Server({
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const certs = certificateHandlers(opts.ca, opts.tokens, (level, message) => log(level, `[ca] ${message}`));
  server.addService(discoveryDefinition().service, {
    StreamResources: streamResources,
    FetchModule: fetchModule,
    CreateCertificate: certs.CreateCertificate,
    WatchTrustBundle: certs.WatchTrustBundle,
    ReportFilterStats: reportFilterStats,
  } as unknown as grpc.UntypedServiceImplementation);

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${formatHost(opts.host)}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  } catch (err) {
    cache.stop();
    registrar.close();
    throw err;
  }
  log('info', `discovery service listening on ${opts.host}:${port}`);

  let closing: Promise<void> | undefined;
  return {
    port,
    proxies: () =>
      [...streams].flatMap((e) => {
        if (!e.stream) return [];
        // What the cache could not build or carry for this workload: proxy-status must say so, not SYNCED alone.
        const state = cache.state(e.stream.workload);
        return [
          {
            ...e.stream.status(),
            ...(e.registration ? { registered: `${e.registration.namespace}/${e.registration.name}` } : {}),
            ...(state && state.errors.length > 0 ? { buildErrors: [...state.errors] } : {}),
            ...(state && state.problems.length > 0 ? { problems: state.problems.map((p) => ({ ...p })) } : {}),
          },
        ];
      }),
    snapshots: () => cache.nodes(),
    invalidate: () => cache.invalidate(),
    stats: () => cache.stats(),
    settled: async () => {
      await registrar.idle();
      await cache.settled();
    },
    close: () => {
      closing ??= (async () => {
        cache.stop();
        registrar.close();
        for (const e of [...streams]) refuse(e.call, { code: grpc.status.UNAVAILABLE, details: 'orchestrator shutting down' });
        certs.close();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 1000);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      })();
      return closing;
    },
  };
}

/** The workload a first request subscribes for, or why it cannot. */
function parseFirstRequest(req: DiscoveryRequest): { workload: WorkloadIdentity; nodeId: string; endpoint?: RegisteredEndpoint } | CallError {
  if (req.type_url !== PROXY_CONFIG_TYPE_URL) {
    return { code: grpc.status.INVALID_ARGUMENT, details: `unknown type_url ${JSON.stringify(req.type_url)}: this orchestrator serves ${PROXY_CONFIG_TYPE_URL}` };
  }
  const node = req.node;
  if (!node || node.workload === '') return { code: grpc.status.INVALID_ARGUMENT, details: 'the first request must carry node.workload' };
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(node.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) labels[k] = v;
  const endpoint = parseEndpoint(node.endpoint);
  if (endpoint !== undefined && 'error' in endpoint) return { code: grpc.status.INVALID_ARGUMENT, details: endpoint.error };
  const namespace = node.namespace || 'default';
  if (endpoint !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) {
    return { code: grpc.status.INVALID_ARGUMENT, details: `cannot register an endpoint in namespace ${JSON.stringify(namespace)}: not a DNS-1123 label` };
  }
  return {
    ...(endpoint ? { endpoint } : {}),
    nodeId: node.id,
    workload: {
      name: node.workload,
      namespace: node.namespace || 'default',
      labels,
      serviceAccount: node.service_account || node.workload,
    },
  };
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
