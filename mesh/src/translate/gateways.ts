// Gateways: Istio's Gateway kind -> the listeners of a gateway proxy (ProxyConfig.gateway).
//
// A workload is a gateway proxy when it carries GATEWAY_ROLE_LABEL (`wasmesh gateway` adds it), in
// standalone and managed mode alike; the Gateways whose selector matches its labels (in any namespace,
// Istio's default) give its listeners: one per port, bound to the server's `bind` or the proxy's host.
// On each port, a virtual host per VirtualService host bound to one of the port's Gateways
// (`gateways: [name | namespace/name]`) that one of the port's servers exposes (`hosts`, with their
// `namespace/` restriction). The routes are translated as for sidecars, so destinations are the mesh's
// clusters, with the mesh's mTLS (auto mTLS from the gateway's workload identity). A server with
// `tls.httpsRedirect` answers every request with a 301 to https.
//
// A pure function of its inputs, like the rest of translation.

import type { GatewayListenerConfig, GatewayTlsConfig, RouteConfig, TcpRouteConfig, VirtualHostConfig, WorkloadIdentity } from '../proxy-config.ts';
import { namespaceOf, type ConfigDocument, type Gateway, type GatewayServer, type GatewayTLSProtocol, type VirtualService } from '../documents.ts';
import { hostMatches, hostSpecificity, labelsMatch } from './clusters.ts';
import { httpMayApply, translateRoutes, type RouteContext } from './routes.ts';
import { translateL4Rules } from './tcp-routes.ts';
import { terminatedTlsSource } from './gateway-tls.ts';
import type { CredentialLookup } from '../tls-secret.ts';

import { GATEWAY_ROLE, GATEWAY_ROLE_LABEL } from './gateway-labels.ts';
export { GATEWAY_ROLE, GATEWAY_ROLE_LABEL };
/** The reserved gateway name meaning "every sidecar". */
export const MESH_GATEWAY = 'mesh';

export function isGatewayWorkload(workload: WorkloadIdentity): boolean {
  return workload.labels[GATEWAY_ROLE_LABEL] === GATEWAY_ROLE;
}

/**
 * Protocols a gateway server is served with today: HTTP ones (HTTP/1.1 and h2c), HTTPS (TLS
 * terminated), TCP (tcp routes) and TLS with tls.mode PASSTHROUGH (tls routes by SNI).
 */
export const SERVED_PROTOCOLS: ReadonlySet<string> = new Set(['HTTP', 'HTTP2', 'GRPC', 'HTTPS', 'TCP', 'TLS']);

/** The listener protocol a server becomes: HTTPS with tls.mode PASSTHROUGH is TLS passthrough, as Istio reads it. */
export function listenerProtocol(server: GatewayServer): 'HTTP' | 'HTTPS' | 'TCP' | 'TLS' {
  const protocol = server.port.protocol;
  if (protocol === 'HTTPS') return server.tls?.mode === 'PASSTHROUGH' ? 'TLS' : 'HTTPS';
  return protocol === 'TCP' || protocol === 'TLS' ? protocol : 'HTTP';
}

/** `namespace/name` of a VirtualService `gateways` entry (a bare name is in the VirtualService's namespace). */
export function gatewayRef(entry: string, vsNamespace: string): string {
  return entry.includes('/') ? entry : `${vsNamespace}/${entry}`;
}

/** Gateways that configure this gateway workload, sorted by namespace/name. */
export function selectGateways(documents: readonly ConfigDocument[], workload: WorkloadIdentity): Gateway[] {
  if (!isGatewayWorkload(workload)) return [];
  const out: Gateway[] = [];
  for (const doc of documents) {
    const v = doc.value as Gateway;
    if (!v || v.kind !== 'Gateway' || typeof v.spec !== 'object' || v.spec === null) continue;
    if (labelsMatch(v.spec.selector, workload.labels)) out.push(v);
  }
  const key = (g: Gateway): string => `${namespaceOf(g)}/${g.metadata.name}`;
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** A server host split into its namespace restriction ('*' any) and host. */
export function parseServerHost(entry: string, gatewayNamespace: string): { namespace: string; host: string } {
  const slash = entry.indexOf('/');
  if (slash < 0) return { namespace: '*', host: entry.toLowerCase() };
  const ns = entry.slice(0, slash);
  return { namespace: ns === '.' ? gatewayNamespace : ns, host: entry.slice(slash + 1).toLowerCase() };
}

/** The more specific of two hosts when one covers the other (the domain a binding answers for), else undefined. */
export function hostIntersection(a: string, b: string): string | undefined {
  if (hostMatches(a, b)) return b;
  if (hostMatches(b, a)) return a;
  return undefined;
}

const TLS_VERSIONS: Readonly<Record<GatewayTLSProtocol, 'TLSv1.2' | 'TLSv1.3' | undefined>> = {
  TLS_AUTO: undefined,
  TLSV1_0: undefined, // refused by validation
  TLSV1_1: undefined,
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
};

function tlsOf(server: GatewayServer, hosts: readonly string[], credentials: CredentialLookup): GatewayTlsConfig | undefined {
  const tls = server.tls;
  if (!tls) return undefined;
  const source = terminatedTlsSource(tls, credentials);
  if (!source) return undefined;
  return {
    hosts: [...hosts],
    ...source,
    // Secure by default: TLS 1.2 at least, whatever the field says when it is TLS_AUTO or absent.
    minVersion: TLS_VERSIONS[tls.minProtocolVersion ?? 'TLS_AUTO'] ?? 'TLSv1.2',
    maxVersion: TLS_VERSIONS[tls.maxProtocolVersion ?? 'TLS_AUTO'] ?? 'TLSv1.3',
    ...(tls.cipherSuites && tls.cipherSuites.length > 0 ? { cipherSuites: [...tls.cipherSuites] } : {}),
  };
}

interface PortServers {
  port: number;
  protocol: 'HTTP' | 'HTTPS' | 'TCP' | 'TLS';
  bind?: string;
  servers: { gateway: Gateway; server: GatewayServer; index: number }[];
}

/**
 * The gateway proxy's listeners. `virtualServices` are those visible to the workload, in the
 * deterministic order of meshView; routes are built through `ctx` (so their clusters land in the
 * proxy's cluster table). Servers of a protocol not served yet are left out (validation names them).
 */
export function buildGatewayListeners(gateways: readonly Gateway[], virtualServices: readonly VirtualService[], ctx: RouteContext, credentials: CredentialLookup = () => undefined): GatewayListenerConfig[] {
  const ports = new Map<number, PortServers>();
  for (const gateway of gateways) {
    gateway.spec.servers.forEach((server, index) => {
      if (!SERVED_PROTOCOLS.has(server.port.protocol)) return;
      const protocol = listenerProtocol(server);
      const entry = ports.get(server.port.number) ?? { port: server.port.number, protocol, servers: [] };
      // The first server on a port decides its protocol and address; a conflicting one is left out
      // (validation reports conflicts within one Gateway; across Gateways the first in order wins).
      if (entry.protocol !== protocol) return;
      if (entry.bind === undefined && server.bind !== undefined) entry.bind = server.bind;
      entry.servers.push({ gateway, server, index });
      ports.set(server.port.number, entry);
    });
  }

  // The HTTPS port serving a host, for httpsRedirect (else 443).
  const httpsPortFor = (host: string): number | undefined => {
    for (const p of [...ports.values()].sort((a, b) => a.port - b.port)) {
      if (p.protocol !== 'HTTPS') continue;
      for (const { gateway, server } of p.servers) {
        if (server.hosts.some((h) => hostIntersection(parseServerHost(h, namespaceOf(gateway)).host, host) !== undefined)) return p.port;
      }
    }
    return undefined;
  };

  const listeners: GatewayListenerConfig[] = [];
  for (const p of [...ports.values()].sort((a, b) => a.port - b.port)) {
    if (p.protocol === 'TCP' || p.protocol === 'TLS') {
      listeners.push(l4Listener(p, virtualServices, ctx));
      continue;
    }
    // domain -> the binding that answers for it: the most specific VirtualService host wins, then the first.
    const chosen = new Map<string, { vs: VirtualService; specificity: number; redirect: boolean; ref: string }>();
    const tls: GatewayTlsConfig[] = [];
    for (const { gateway, server } of p.servers) {
      const gwNamespace = namespaceOf(gateway);
      const ref = `${gwNamespace}/${gateway.metadata.name}`;
      const serverHosts = server.hosts.map((h) => parseServerHost(h, gwNamespace));
      const redirect = p.protocol === 'HTTP' && server.tls?.httpsRedirect === true;
      if (p.protocol === 'HTTPS') {
        const t = tlsOf(server, serverHosts.map((h) => h.host), credentials);
        // A server without its certificate (a credential missing in this gateway's namespace) is
        // left out whole: its hosts must not be served under another server's TLS settings.
        if (!t) continue;
        tls.push(t);
      }
      for (const vs of virtualServices) {
        const vsNamespace = namespaceOf(vs);
        // Bound here by its own gateways or by the gateways of one of its http matches.
        if (!httpMayApply(vs, ref)) continue;
        for (const raw of vs.spec.hosts) {
          const vsHost = raw.toLowerCase();
          for (const sh of serverHosts) {
            if (sh.namespace !== '*' && sh.namespace !== vsNamespace) continue;
            const domain = hostIntersection(sh.host, vsHost);
            if (domain === undefined) continue;
            const specificity = hostSpecificity(vsHost);
            const prev = chosen.get(domain);
            if (!prev || specificity > prev.specificity) chosen.set(domain, { vs, specificity, redirect, ref });
          }
        }
      }
    }
    const virtualHosts: VirtualHostConfig[] = [...chosen.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([domain, { vs, redirect, ref }]) => {
        const routes: RouteConfig[] = redirect
          ? [{ name: `${vs.metadata.name}.${namespaceOf(vs)}/https-redirect`, match: [], action: { kind: 'redirect', scheme: 'https', port: httpsPortFor(domain) ?? 443, status: 301 } }]
          : translateRoutes(vs, ctx, ref);
        // A host also answers with any port in :authority (the route table strips it), so a browser's
        // `Host: 127.0.0.1:8080` reaches the `*` host.
        return { name: `${p.port}/${domain}`, domains: [domain], routes };
      });
    if (p.protocol === 'HTTPS' && tls.length === 0) continue;
    listeners.push({
      name: `gateway|${p.port}`,
      port: p.port,
      ...(p.bind !== undefined ? { bind: p.bind } : {}),
      protocol: p.protocol,
      ...(p.protocol === 'HTTPS' ? { tls } : {}),
      virtualHosts,
    });
  }
  return listeners;
}

/**
 * A TCP or TLS (PASSTHROUGH) gateway port: the `tcp` rules (TCP) or `tls` rules (TLS) of the
 * VirtualServices bound to one of its Gateways whose hosts one of its servers exposes; TLS rules keep
 * only the SNI names the servers' hosts cover.
 */
function l4Listener(p: PortServers, virtualServices: readonly VirtualService[], ctx: RouteContext): GatewayListenerConfig {
  const tls: TcpRouteConfig[] = [];
  const tcp: TcpRouteConfig[] = [];
  const seen = new Set<string>();
  for (const { gateway, server } of p.servers) {
    const gwNamespace = namespaceOf(gateway);
    const ref = `${gwNamespace}/${gateway.metadata.name}`;
    const serverHosts = server.hosts.map((h) => parseServerHost(h, gwNamespace));
    for (const vs of virtualServices) {
      const vsNamespace = namespaceOf(vs);
      const key = `${ref}|${vsNamespace}/${vs.metadata.name}`;
      if (seen.has(key)) continue;
      const exposed = serverHosts.filter((sh) => sh.namespace === '*' || sh.namespace === vsNamespace);
      if (!vs.spec.hosts.some((h) => exposed.some((sh) => hostIntersection(sh.host, h.toLowerCase()) !== undefined))) continue;
      seen.add(key);
      const sniFilter = (sni: string): boolean => exposed.some((sh) => hostIntersection(sh.host, sni) !== undefined);
      const rules = translateL4Rules(vs, { port: p.port, gateway: ref }, ctx, sniFilter);
      if (p.protocol === 'TLS') tls.push(...rules.tls);
      else tcp.push(...rules.tcp);
    }
  }
  return {
    name: `gateway|${p.port}`,
    port: p.port,
    ...(p.bind !== undefined ? { bind: p.bind } : {}),
    protocol: p.protocol,
    virtualHosts: [],
    tcp: { port: p.port, tlsRoutes: tls, tcpRoutes: tcp },
  };
}
