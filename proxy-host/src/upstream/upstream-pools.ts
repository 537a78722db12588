// Upstream clients per (protocol, endpoint[, TLS identity]): HTTP/1.1 undici pools and HTTP/2
// sessions, created on first use and closed when their endpoint leaves the config. ISTIO_MUTUAL
// clusters get mTLS clients with the workload certificate while the proxy has an identity; a new
// identity (renewal, root rotation) makes new clients for new requests and drains the old ones.
import type { ClusterTlsConfig, ConnectionPoolConfig, UpstreamProtocol } from '../../../mesh/src/proxy-config.ts';
import type { UpstreamTlsOptions } from '../identity/tls-options.ts';
import type { WorkloadCertificate } from '../identity/types.ts';
import { logWarn } from '../log.ts';
import { Http1Client } from './http1-client.ts';
import { Http2Client } from './http2-client.ts';
import type { UpstreamClient } from './upstream-request.ts';
import type { EndpointState } from './endpoint.ts';

/** Largest response header block accepted from an upstream (HTTP/1.1), by default: Node's and undici's 16 KiB. */
export const DEFAULT_MAX_RESPONSE_HEADER_BYTES = 16 * 1024;

export interface UpstreamPoolsOptions {
  /** Largest response header block accepted from an HTTP/1.1 upstream; past it the request fails (502 UPE). */
  maxResponseHeaderBytes?: number;
}

interface Entry {
  client: UpstreamClient;
  endpointKey: string;
  /** The identity generation of an mTLS client; 0 for plaintext. */
  generation: number;
}

export class UpstreamPools {
  readonly #clients = new Map<string, Entry>();
  #identity: WorkloadCertificate | undefined;
  #generation = 0;
  readonly #warned = new Set<string>();
  readonly #maxResponseHeaderBytes: number;

  constructor(options: UpstreamPoolsOptions = {}) {
    this.#maxResponseHeaderBytes = options.maxResponseHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES;
  }

  /** The workload identity mTLS clients present; a new one drains the clients of the previous one. */
  setIdentity(cert: WorkloadCertificate | undefined): void {
    this.#identity = cert;
    this.#generation++;
    for (const [key, entry] of this.#clients) {
      if (entry.generation === 0) continue;
      this.#clients.delete(key);
      // close() lets in-flight requests finish (undici Pool.close, HTTP/2 session.close).
      void entry.client.close().catch(() => {});
    }
  }

  get identity(): WorkloadCertificate | undefined {
    return this.#identity;
  }

  /** The mTLS options for a cluster's TLS settings with the current identity; undefined: plaintext. */
  tlsOptionsFor(tls: ClusterTlsConfig | undefined): UpstreamTlsOptions | undefined {
    const id = this.#identity;
    if (tls?.mode !== 'ISTIO_MUTUAL' || !id) return undefined;
    return { key: id.keyPem, cert: id.certChainPem, ca: id.trustBundlePem, subjectAltNames: tls.subjectAltNames, generation: this.#generation };
  }

  get(protocol: UpstreamProtocol, endpoint: EndpointState, pool: ConnectionPoolConfig, tls?: ClusterTlsConfig, clusterName?: string): UpstreamClient {
    const h2 = protocol !== 'http1';
    let key = h2 ? `h2|${endpoint.key}` : `h1|${endpoint.key}`;
    const tlsOptions = this.tlsOptionsFor(tls);
    if (tls?.mode === 'ISTIO_MUTUAL') {
      if (tlsOptions) {
        key = `${key}|mtls|${this.#generation}|${tls.subjectAltNames.join(',')}`;
      } else {
        const name = clusterName ?? endpoint.key;
        if (!this.#warned.has(name)) {
          this.#warned.add(name);
          logWarn('upstream', `cluster ${name} asks for ISTIO_MUTUAL but this proxy has no identity: plaintext`);
        }
      }
    }
    let entry = this.#clients.get(key);
    if (!entry) {
      const { address, port } = endpoint.config;
      const client = h2 ? new Http2Client(address, port, pool, tlsOptions) : new Http1Client(address, port, pool, tlsOptions, this.#maxResponseHeaderBytes);
      entry = { client, endpointKey: endpoint.key, generation: tlsOptions ? tlsOptions.generation : 0 };
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
