// Upstream clients per (protocol, endpoint): HTTP/1.1 undici pools and HTTP/2 sessions, created on
// first use and closed when their endpoint leaves the config.
import type { ConnectionPoolConfig, UpstreamProtocol } from '../config/types.ts';
import { Http1Client } from './http1-client.ts';
import { Http2Client } from './http2-client.ts';
import type { UpstreamClient } from './upstream-request.ts';
import type { EndpointState } from './endpoint.ts';

export class UpstreamPools {
  readonly #clients = new Map<string, UpstreamClient>();

  get(protocol: UpstreamProtocol, endpoint: EndpointState, pool: ConnectionPoolConfig): UpstreamClient {
    const h2 = protocol !== 'http1';
    const key = h2 ? `h2|${endpoint.key}` : `h1|${endpoint.key}`;
    let client = this.#clients.get(key);
    if (!client) {
      const { address, port } = endpoint.config;
      client = h2 ? new Http2Client(address, port, pool) : new Http1Client(address, port, pool);
      this.#clients.set(key, client);
    }
    return client;
  }

  /** Connections open to the given endpoints (for the cluster gauge). */
  connectionsTo(endpoints: readonly EndpointState[]): number {
    let n = 0;
    for (const e of endpoints) {
      n += this.#clients.get(`h1|${e.key}`)?.connections ?? 0;
      n += this.#clients.get(`h2|${e.key}`)?.connections ?? 0;
    }
    return n;
  }

  /** Closes clients whose endpoint key is not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const [key, client] of this.#clients) {
      if (!keep.has(key.slice(3))) {
        this.#clients.delete(key);
        void client.close().catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.allSettled(all.map((c) => c.close()));
  }
}
