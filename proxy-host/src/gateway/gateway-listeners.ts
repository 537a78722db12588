// A gateway proxy's listeners: one per port of ProxyConfig.gateway (the Gateway servers of that
// port), each with its own route table and the proxy's client-side filter chain (telemetry reports
// reporter="source"). HTTPS listeners terminate TLS with the servers' certificates, picked by SNI.
//
// Certificates are read when a config is prepared, before anything switches: a missing or bad file
// rejects the config whole (the running one stays), as any other part of a config. A config change
// keeps the listeners of ports it still has (new routes and certificates apply to new requests and
// handshakes), opens the new ports and closes the ones it dropped; a port whose protocol or address
// changes is reopened.

import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import type { GatewayListenerConfig, GatewayTlsConfig, ProxyConfig } from '../../../mesh/src/proxy-config.ts';
import { ConnectionManager, type ConnectionManagerOptions, type ListenerState } from '../http/connection-manager.ts';
import { handleUpgrade } from '../http/upgrade.ts';
import { createListener, type Listener, type ListenerOptions } from '../listener/listener.ts';
import { RouteTable } from '../routing/route-table.ts';
import { logInfo } from '../log.ts';
import { TcpListener } from '../tcp/tcp-listeners.ts';
import { TcpSession, TcpSessions, type TcpProxyDeps } from '../tcp/tcp-proxy.ts';

export class GatewayConfigError extends Error {
  readonly code = 'WASMESH_PROXY_GATEWAY_CONFIG';
}

/** A listener's prepared state: its route table and, for HTTPS, its secure contexts by SNI. */
export interface PreparedGatewayListener {
  readonly config: GatewayListenerConfig;
  readonly routes: RouteTable;
  readonly contexts: readonly { hosts: readonly string[]; context: tls.SecureContext; options: tls.SecureContextOptions }[];
}

interface OpenListener {
  config: GatewayListenerConfig;
  /** HTTP and HTTPS ports. */
  listener: Listener | undefined;
  manager: ConnectionManager | undefined;
  /** TCP and TLS (passthrough) ports: connections routed with config.tcp, read per connection. */
  tcp: TcpListener | undefined;
  /** Swapped on config changes; the SNI callback reads it per handshake. */
  contexts: PreparedGatewayListener['contexts'];
}

/** What the listeners share with the proxy. */
export interface GatewayListenerDeps {
  /** Address listeners bind unless a server says `bind`. */
  host: string;
  connections: Pick<ListenerOptions, 'headersTimeoutMs' | 'keepAliveTimeoutMs' | 'maxHeaderSize' | 'h2IdleTimeoutMs'>;
  manager: Omit<ConnectionManagerOptions, 'direction' | 'scheme' | 'state'>;
  /** What TCP and TLS ports' sessions need (reporter "source", as HTTP on a gateway). */
  tcp: TcpProxyDeps;
}

async function secureContext(t: GatewayTlsConfig, listener: string): Promise<{ context: tls.SecureContext; options: tls.SecureContextOptions }> {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = await readFile(t.certificate);
  } catch (err) {
    throw new GatewayConfigError(`${listener}: cannot read serverCertificate ${t.certificate}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    key = await readFile(t.privateKey);
  } catch (err) {
    throw new GatewayConfigError(`${listener}: cannot read privateKey ${t.privateKey}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const options: tls.SecureContextOptions = { cert, key, minVersion: t.minVersion, maxVersion: t.maxVersion, ...(t.cipherSuites ? { ciphers: t.cipherSuites.join(':') } : {}) };
  try {
    return { context: tls.createSecureContext(options), options };
  } catch (err) {
    throw new GatewayConfigError(`${listener}: certificate ${t.certificate} with key ${t.privateKey}: ${(err as Error).message}`);
  }
}

/** Builds every listener's state for a config; changes nothing visible. Throws GatewayConfigError. */
export async function prepareGatewayListeners(config: ProxyConfig): Promise<PreparedGatewayListener[]> {
  const out: PreparedGatewayListener[] = [];
  for (const l of config.gateway?.listeners ?? []) {
    const contexts = [];
    for (const t of l.tls ?? []) contexts.push({ hosts: t.hosts, ...(await secureContext(t, l.name)) });
    if (l.protocol === 'HTTPS' && contexts.length === 0) throw new GatewayConfigError(`${l.name}: an HTTPS listener without a certificate`);
    out.push({ config: l, routes: new RouteTable(l.virtualHosts), contexts });
  }
  return out;
}

/** The context for an SNI name: an exact host, then the longest `*.suffix`, then `*`, then the first. */
export function contextForServername(contexts: PreparedGatewayListener['contexts'], servername: string | undefined): tls.SecureContext | undefined {
  const name = (servername ?? '').toLowerCase();
  let best: { context: tls.SecureContext; score: number } | undefined;
  for (const c of contexts) {
    for (const h of c.hosts) {
      const score = h === name ? Number.MAX_SAFE_INTEGER : h.startsWith('*.') && name.endsWith(h.slice(1)) ? h.length : h === '*' ? 1 : 0;
      if (score > 0 && (!best || score > best.score)) best = { context: c.context, score };
    }
  }
  return best?.context ?? contexts[0]?.context;
}

export class GatewayListeners {
  readonly #deps: GatewayListenerDeps;
  readonly #open = new Map<number, OpenListener>();
  readonly #sessions = new TcpSessions();

  constructor(deps: GatewayListenerDeps) {
    this.#deps = deps;
  }

  /** Ports listened on, by configured port (equal unless a test asked for port 0). */
  ports(): Map<number, number> {
    return new Map([...this.#open].map(([port, o]) => [port, (o.listener ?? o.tcp)!.port]));
  }

  managers(): ConnectionManager[] {
    return [...this.#open.values()].flatMap((o) => (o.manager ? [o.manager] : []));
  }

  /**
   * Makes the listeners match the prepared config: keeps, opens, reopens and closes ports. `chainState`
   * gives the filter chain and config every listener shares (the proxy's outbound state).
   */
  async apply(prepared: readonly PreparedGatewayListener[], shared: Omit<ListenerState, 'routes'>): Promise<void> {
    const wanted = new Map(prepared.map((p) => [p.config.port, p]));
    for (const [port, open] of [...this.#open]) {
      const next = wanted.get(port);
      if (!next || next.config.protocol !== open.config.protocol || (next.config.bind ?? '') !== (open.config.bind ?? '')) {
        this.#open.delete(port);
        if (open.listener) await closeListener(open.listener);
        else await open.tcp?.close();
      }
    }
    for (const p of prepared) {
      const state: ListenerState = { ...shared, routes: p.routes };
      const open = this.#open.get(p.config.port);
      if (open && !open.manager) {
        open.config = p.config; // TCP/TLS: new connections read it
        continue;
      }
      if (!open && (p.config.protocol === 'TCP' || p.config.protocol === 'TLS')) {
        const host = p.config.bind ?? this.#deps.host;
        const entry: OpenListener = { config: p.config, listener: undefined, manager: undefined, tcp: undefined, contexts: [] };
        entry.tcp = await TcpListener.open(host, p.config.port, (socket) => TcpSession.outbound(socket, entry.config.tcp, this.#deps.tcp, this.#sessions));
        this.#open.set(p.config.port, entry);
        logInfo('gateway', `listening: ${p.config.name} ${p.config.protocol} ${host}:${entry.tcp.port}`);
        continue;
      }
      if (open && open.manager) {
        open.manager.state = state;
        open.contexts = p.contexts;
        open.config = p.config;
        // Clients without SNI (an IP address in the URL) get the first server's certificate.
        if (p.contexts[0]) (open.listener!.server as tls.Server).setSecureContext(p.contexts[0].options);
        continue;
      }
      const manager = new ConnectionManager({ ...this.#deps.manager, direction: 'outbound', scheme: p.config.protocol === 'HTTPS' ? 'https' : 'http', state });
      const entry: OpenListener = { config: p.config, manager, contexts: p.contexts, listener: undefined, tcp: undefined };
      const host = p.config.bind ?? this.#deps.host;
      const tlsOptions: ListenerOptions['tls'] | undefined =
        p.config.protocol === 'HTTPS'
          ? {
              // The default certificate (clients without SNI: an IP address in the URL) is the first
              // server's; the callback picks per name.
              ...p.contexts[0]!.options,
              SNICallback: (servername, cb) => cb(null, contextForServername(entry.contexts, servername)),
            }
          : undefined;
      entry.listener = await createListener({
        ...this.#deps.connections,
        host,
        port: p.config.port,
        ...(tlsOptions ? { tls: tlsOptions } : {}),
        onRequest: manager.handle,
        onUpgrade: (req, socket, head) => handleUpgrade(manager, req, socket, head),
      });
      this.#open.set(p.config.port, entry);
      logInfo('gateway', `listening: ${p.config.name} ${p.config.protocol} ${host}:${entry.listener!.port}`);
    }
  }

  closeIdle(): void {
    for (const o of this.#open.values()) o.listener?.closeIdle();
  }

  destroy(): void {
    for (const o of this.#open.values()) {
      o.listener?.destroy();
      o.tcp?.destroy();
    }
    this.#sessions.destroyAll();
  }

  close(): Promise<void[]> {
    return Promise.all([...this.#open.values()].map((o) => (o.listener ? o.listener.close() : o.tcp!.close())));
  }

  idle(): Promise<unknown> {
    return Promise.all([...this.managers().map((m) => m.idle()), this.#sessions.idle()]);
  }
}

async function closeListener(listener: Listener): Promise<void> {
  const closing = listener.close();
  listener.closeIdle();
  const timer = setTimeout(() => listener.destroy(), 5000);
  timer.unref();
  await closing;
  clearTimeout(timer);
}
