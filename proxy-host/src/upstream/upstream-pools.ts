// Upstream clients per (protocol, endpoint, TLS): HTTP/1.1 undici pools and HTTP/2 sessions, created
// on first use and closed when their endpoint leaves the config. What TLS a connection speaks is
// decided per endpoint (upstream-tls.ts): auto mTLS to sidecar endpoints, plaintext to the others,
// or the DestinationRule's mode. A new identity (renewal, root rotation) or changed TLS files make new
// clients for new requests and drain the old ones.
import type { ClusterTlsConfig, ConnectionPoolConfig, EndpointConfig, UpstreamProtocol } from '../../../mesh/src/proxy-config.ts';
import { NO_CERTIFICATE } from '../identity/tls-options.ts';
import type { WorkloadCertificate } from '../identity/types.ts';
import { logWarn } from '../log.ts';
import { Http1Client } from './http1-client.ts';
import { Http2Client } from './http2-client.ts';
import type { UpstreamCall, UpstreamClient, UpstreamRequestOptions, UpstreamResponseHandler } from './upstream-request.ts';
import type { EndpointState } from './endpoint.ts';
import { TlsFiles, endpointTls, type EndpointTls, type IdentityState } from './upstream-tls.ts';

/** Largest response header block accepted from an upstream (HTTP/1.1), by default: Node's and undici's 16 KiB. */
export const DEFAULT_MAX_RESPONSE_HEADER_BYTES = 16 * 1024;

export interface UpstreamPoolsOptions {
  /** Largest response header block accepted from an HTTP/1.1 upstream; past it the request fails (502 UPE). */
  maxResponseHeaderBytes?: number;
}

interface Entry {
  client: UpstreamClient;
  endpointKey: string;
  /** The TLS options' generation; undefined for plaintext. */
  generation: number | string | undefined;
}

/** The cluster fields the TLS decision reads. */
export interface UpstreamCluster {
  name: string;
  host: string;
  tls?: ClusterTlsConfig;
}

export class UpstreamPools {
  readonly #clients = new Map<string, Entry>();
  #identity: IdentityState = { configured: false, cert: undefined, missing: 'none yet', generation: 0 };
  readonly #files = new TlsFiles();
  readonly #warned = new Set<string>();
  readonly #maxResponseHeaderBytes: number;
  /** ISTIO_MUTUAL answers per cluster TLS config, valid for one identity generation. */
  readonly #mtls = new WeakMap<ClusterTlsConfig, { generation: number; answer: EndpointTls }>();

  constructor(options: UpstreamPoolsOptions = {}) {
    this.#maxResponseHeaderBytes = options.maxResponseHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES;
  }

  /**
   * The workload identity mTLS clients present. `configured`: the proxy runs with an identity
   * provider, so mTLS destinations fail while `cert` is undefined (`missing` says why) instead of
   * going plaintext. A change drains the clients of the previous identity.
   */
  setIdentity(cert: WorkloadCertificate | undefined, configured = cert !== undefined, missing = 'none yet'): void {
    this.#identity = { configured, cert, missing, generation: this.#identity.generation + 1 };
    this.#warned.clear();
    for (const [key, entry] of this.#clients) {
      if (typeof entry.generation !== 'number') continue; // plaintext, or SIMPLE/MUTUAL files
      this.#clients.delete(key);
      // close() lets in-flight requests finish (undici Pool.close, HTTP/2 session.close).
      void entry.client.close().catch(() => {});
    }
  }

  get identity(): WorkloadCertificate | undefined {
    return this.#identity.cert;
  }

  /** What a connection to `endpoint` of `cluster` speaks (also what its health checks use). */
  endpointTls(cluster: UpstreamCluster, endpoint: EndpointConfig): EndpointTls {
    const tls = cluster.tls;
    // Every request asks; for mTLS the answer depends only on the cluster's TLS settings (a config
    // object, replaced when the config changes) and the identity (its generation changes with every
    // new certificate, expiry and bundle), so it is built once per pair instead of per request.
    // Plaintext answers are constants already; refusals and file-based TLS are not kept.
    if (tls?.mode === 'ISTIO_MUTUAL' && (!tls.auto || endpoint.tlsMode === 'istio')) {
      const known = this.#mtls.get(tls);
      if (known !== undefined && known.generation === this.#identity.generation) return known.answer;
      const answer = endpointTls(tls, cluster.host, endpoint, this.#identity, this.#files);
      if (answer.kind === 'tls') this.#mtls.set(tls, { generation: this.#identity.generation, answer });
      return answer;
    }
    return endpointTls(tls, cluster.host, endpoint, this.#identity, this.#files);
  }

  /** The client for one endpoint; `cluster` absent: plaintext (the inbound side's local app). */
  get(protocol: UpstreamProtocol, endpoint: EndpointState, pool: ConnectionPoolConfig, cluster?: UpstreamCluster): UpstreamClient {
    const h2 = protocol === 'http2' || protocol === 'grpc'; // 'tcp': an HTTP route to a TCP port speaks HTTP/1.1
    let key = h2 ? `h2|${endpoint.key}` : `h1|${endpoint.key}`;
    const tls = cluster ? this.endpointTls(cluster, endpoint.config) : { kind: 'plaintext' as const };
    if (tls.kind === 'refused') {
      const warning = `${cluster!.name}|${tls.reason}`;
      if (!this.#warned.has(warning)) {
        this.#warned.add(warning);
        logWarn('upstream', `cluster ${cluster!.name}: requests fail (503) instead of going plaintext: ${tls.reason}`);
      }
      return new RefusedClient(tls.reason);
    }
    if (tls.kind === 'tls') key = `${key}|${tls.slot}`;
    const generation = tls.kind === 'tls' ? tls.options.generation : undefined;
    let entry = this.#clients.get(key);
    if (entry && entry.generation !== generation) {
      // New identity or new TLS files: new connections from now on; the old ones finish what they carry.
      void entry.client.close().catch(() => {});
      entry = undefined;
    }
    if (!entry) {
      const { address, port } = endpoint.config;
      const options = tls.kind === 'tls' ? tls.options : undefined;
      const client = h2 ? new Http2Client(address, port, pool, options) : new Http1Client(address, port, pool, options, this.#maxResponseHeaderBytes);
      entry = { client, endpointKey: endpoint.key, generation };
      this.#clients.set(key, entry);
    }
    return entry.client;
  }

  /** Connections open to the given endpoints (for the cluster gauge). */
  connectionsTo(endpoints: readonly EndpointState[]): number {
    if (endpoints.length === 0) return 0;
    const keys = new Set(endpoints.map((e) => e.key));
    let n = 0;
    for (const entry of this.#clients.values()) if (keys.has(entry.endpointKey)) n += entry.client.connections;
    return n;
  }

  /** Closes clients whose endpoint key is not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const [key, entry] of this.#clients) {
      if (!keep.has(entry.endpointKey)) {
        this.#clients.delete(key);
        void entry.client.close().catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.allSettled(all.map((e) => e.client.close()));
  }
}

/** A connection that is not attempted (mTLS needed, no certificate): every request fails as a connect failure. */
class RefusedClient implements UpstreamClient {
  readonly connections = 0;
  readonly #reason: string;

  constructor(reason: string) {
    this.#reason = reason;
  }

  request(_options: UpstreamRequestOptions, handler: UpstreamResponseHandler): UpstreamCall {
    let aborted = false;
    queueMicrotask(() => {
      if (!aborted) handler.onUpstreamError(Object.assign(new Error(this.#reason), { code: NO_CERTIFICATE }), 'UF');
    });
    return {
      abort: () => (aborted = true),
      resume: () => {},
    };
  }

  async close(): Promise<void> {}
}
