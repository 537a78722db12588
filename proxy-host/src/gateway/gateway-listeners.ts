// A gateway proxy's listeners: one per port of ProxyConfig.gateway (the Gateway servers of that
// port), each with its own route table and the proxy's client-side filter chain (telemetry reports
// reporter="source"). HTTPS listeners terminate TLS with the servers' certificates, picked by SNI.
//
// Certificates are read when a config is prepared, before anything switches: a missing or bad file
// rejects the config whole (the running one stays), as any other part of a config. Afterwards the
// files are watched and re-read when they change (gateway-tls.ts), and client certificates of the
// mutual modes are checked per server, picked by SNI. A config change
// keeps the listeners of ports it still has (new routes and certificates apply to new requests and
// handshakes), opens the new ports and closes the ones it dropped; a port whose protocol or address
// changes is reopened.

import tls from 'node:tls';
import type { GatewayListenerConfig, ProxyConfig } from '../../../mesh/src/proxy-config.ts';
import type { WorkloadCertificate } from '../identity/types.ts';
import { CertificateFileWatcher, clientCertPolicy, entryForServername, prepareTlsEntry, type GatewayTlsEntry } from './gateway-tls.ts';
import type { DownstreamRequest, DownstreamResponse } from '../listener/listener.ts';
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

/** A listener's prepared state: its route table and, for HTTPS, its servers' TLS by SNI. */
export interface PreparedGatewayListener {
  readonly config: GatewayListenerConfig;
  readonly routes: RouteTable;
  readonly contexts: readonly GatewayTlsEntry[];
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
  /** The TLS server's client certificate options, fixed while the port is open. */
  policy: ReturnType<typeof clientCertPolicy>;
}

/** What the listeners share with the proxy. */
export interface GatewayListenerDeps {
  /** Address listeners bind unless a server says `bind`. */
  host: string;
  connections: Pick<ListenerOptions, 'headersTimeoutMs' | 'keepAliveTimeoutMs' | 'maxHeaderSize' | 'h2IdleTimeoutMs'>;
  manager: Omit<ConnectionManagerOptions, 'direction' | 'scheme' | 'state'>;
  /** What TCP and TLS ports' sessions need (reporter "source", as HTTP on a gateway). */
  tcp: TcpProxyDeps;
  /** How often certificate files are re-read besides the directory watch; default 2000 ms (0: never). */
  certificatePollMs?: number;
}

/** Builds every listener's state for a config; changes nothing visible. Throws GatewayConfigError. */
export async function prepareGatewayListeners(config: ProxyConfig): Promise<PreparedGatewayListener[]> {
  const out: PreparedGatewayListener[] = [];
  for (const l of config.gateway?.listeners ?? []) {
    const contexts: GatewayTlsEntry[] = [];
    for (const t of l.tls ?? []) contexts.push(await prepareTlsEntry(t, l.name));
    if (l.protocol === 'HTTPS' && contexts.length === 0) throw new GatewayConfigError(`${l.name}: an HTTPS listener without a certificate`);
    out.push({ config: l, routes: new RouteTable(l.virtualHosts), contexts });
  }
  return out;
}

/** The context for an SNI name: an exact host, then the longest `*.suffix`, then `*`, then the first. */
export function contextForServername(contexts: PreparedGatewayListener['contexts'], servername: string | undefined): tls.SecureContext | undefined {
  return entryForServername(contexts, servername)?.context;
}

export class GatewayListeners {
  readonly #deps: GatewayListenerDeps;
  readonly #open = new Map<number, OpenListener>();
  readonly #sessions = new TcpSessions();
  readonly #watcher: CertificateFileWatcher;
  #identity: WorkloadCertificate | undefined;

  constructor(deps: GatewayListenerDeps) {
    this.#deps = deps;
    this.#watcher = new CertificateFileWatcher(deps.certificatePollMs ?? 2000, () => this.#refreshDefaults());
  }

  /** ISTIO_MUTUAL servers present the gateway's workload certificate: a new one applies to new handshakes. */
  setIdentity(cert: WorkloadCertificate | undefined): void {
    this.#identity = cert;
    for (const o of this.#open.values()) for (const e of o.contexts) e.setIdentity(cert);
    this.#refreshDefaults();
  }

  /** Re-reads every certificate file now (the watch and the poll do it on their own). */
  reloadCertificates(): Promise<void> {
    return this.#watcher.check();
  }

  /** Clients without SNI (an IP address in the URL) get the first server's certificate. */
  #refreshDefaults(): void {
    for (const o of this.#open.values()) {
      const options = o.contexts[0]?.options;
      if (options && o.listener) (o.listener.server as tls.Server).setSecureContext(options);
    }
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
      if (!next || next.config.protocol !== open.config.protocol || (next.config.bind ?? '') !== (open.config.bind ?? '') || clientCertPolicy(next.contexts) !== open.policy) {
        this.#open.delete(port);
        if (open.listener) await closeListener(open.listener);
        else await open.tcp?.close();
      }
    }
    for (const p of prepared) for (const e of p.contexts) e.setIdentity(this.#identity);
    for (const p of prepared) {
      const state: ListenerState = { ...shared, routes: p.routes };
      const open = this.#open.get(p.config.port);
      if (open && !open.manager) {
        open.config = p.config; // TCP/TLS: new connections read it
        continue;
      }
      if (!open && (p.config.protocol === 'TCP' || p.config.protocol === 'TLS')) {
        const host = p.config.bind ?? this.#deps.host;
        const entry: OpenListener = { config: p.config, listener: undefined, manager: undefined, tcp: undefined, contexts: [], policy: clientCertPolicy([]) };
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
        if (p.contexts[0]?.options) (open.listener!.server as tls.Server).setSecureContext(p.contexts[0].options);
        continue;
      }
      // match.port on a gateway is the Gateway server's port (Istio), whatever the Host says.
      const manager = new ConnectionManager({ ...this.#deps.manager, direction: 'outbound', scheme: p.config.protocol === 'HTTPS' ? 'https' : 'http', state, routePort: p.config.port });
      const policy = clientCertPolicy(p.contexts);
      const entry: OpenListener = { config: p.config, manager, contexts: p.contexts, policy, listener: undefined, tcp: undefined };
      const host = p.config.bind ?? this.#deps.host;
      const tlsOptions: ListenerOptions['tls'] | undefined =
        p.config.protocol === 'HTTPS'
          ? {
              // The default certificate (clients without SNI: an IP address in the URL) is the first
              // server's; the callback picks per name.
              ...p.contexts[0]!.options,
              ...(policy !== 'off' ? { requestCert: true, rejectUnauthorized: policy === 'require' } : {}),
              SNICallback: (servername, cb) => {
                const context = contextForServername(entry.contexts, servername);
                if (context) cb(null, context);
                else cb(new Error(`${p.config.name}: no certificate for ${servername} (ISTIO_MUTUAL without a workload certificate)`), undefined);
              },
            }
          : undefined;
      entry.listener = await createListener({
        ...this.#deps.connections,
        host,
        port: p.config.port,
        ...(tlsOptions ? { tls: tlsOptions, verifyClient: (socket: tls.TLSSocket) => entryForServername(entry.contexts, socket.servername)?.verifyClient(socket) } : {}),
        onRequest: p.config.protocol === 'HTTPS' ? misdirectedGuard(entry, manager.handle) : manager.handle,
        onUpgrade: (req, socket, head) => handleUpgrade(manager, req, socket, head),
      });
      this.#open.set(p.config.port, entry);
      logInfo('gateway', `listening: ${p.config.name} ${p.config.protocol} ${host}:${entry.listener!.port}`);
    }
    this.#watchFiles();
  }

  /** Watches the certificate files of the listeners now open. */
  #watchFiles(): void {
    this.#watcher.set([...this.#open.values()].flatMap((o) => o.contexts));
  }

  closeIdle(): void {
    for (const o of this.#open.values()) o.listener?.closeIdle();
  }

  destroy(): void {
    this.#watcher.close();
    for (const o of this.#open.values()) {
      o.listener?.destroy();
      o.tcp?.destroy();
    }
    this.#sessions.destroyAll();
  }

  close(): Promise<void[]> {
    this.#watcher.close();
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

/**
 * On an HTTPS port, a request for a host whose server verifies client certificates must come on a
 * connection made through that server (its SNI): otherwise a client could pass the handshake of a
 * SIMPLE server and name a mutual server's host. Such a request gets 421 (Misdirected Request).
 */
function misdirectedGuard(entry: { contexts: readonly GatewayTlsEntry[] }, handle: (req: DownstreamRequest, res: DownstreamResponse) => void): (req: DownstreamRequest, res: DownstreamResponse) => void {
  return (req, res) => {
    const contexts = entry.contexts;
    if (contexts.some((e) => e.requestsCert)) {
      const authority = (req.headers[':authority'] ?? req.headers.host ?? '') as string;
      const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0]!;
      const wanted = entryForServername(contexts, host);
      const socket = (req.socket ?? (req as { stream?: { session?: { socket?: unknown } } }).stream?.session?.socket) as tls.TLSSocket | undefined;
      const through = entryForServername(contexts, socket?.servername);
      if (wanted !== through && wanted?.requestsCert) {
        res.writeHead(421, { 'content-type': 'text/plain' });
        res.end(`misdirected request: ${host} verifies client certificates; connect with SNI ${host}\n`);
        return;
      }
    }
    handle(req, res);
  };
}
