// L4 routing: VirtualService `tcp` and `tls` rules (and each TCP service's own default route) become
// TcpPortConfigs, one per service port, which the proxy's TCP listeners route connections with.
//
// Per port, in this order: the TLS routes (matched by the ClientHello's SNI), then the TCP routes.
// For every service with a TCP-proxied port (TCP, TLS, HTTPS, MONGO, MYSQL, REDIS), the rules of the
// VirtualService bound to its host (the most specific host, then the first, as for HTTP) come first,
// then the service's default route: to itself on that port, by SNI = its host for TLS ports, else
// every connection. Rules whose match names another port, other source labels, another source
// namespace or other gateways are dropped, and a rule left with no match is dropped (Istio does the
// same per proxy). Services sharing a port are taken in registry order, so the first one's default
// route catches the connections no rule claimed (without iptables there is no destination address
// to tell them apart; see RATIONALE "TCP services are reached through per-port listeners").
//
// A pure function of its inputs, like the rest of translation.

import type { TcpPortConfig, TcpRouteConfig, TcpRouteMatch } from '../proxy-config.ts';
import { namespaceOf, type L4MatchAttributes, type RouteDestination, type TLSMatchAttributes, type VirtualService } from '../documents.ts';
import { hostMatches, hostSpecificity, isTlsProtocol, labelsMatch, portProtocol, resolveHost, tcpPorts, type Service } from './clusters.ts';
import type { RouteContext } from './routes.ts';

/** Where the rules are being built for: a sidecar ("mesh") or a gateway (its `namespace/name`). */
export interface L4Scope {
  /** The listener's port: matches naming another port are dropped. */
  port: number;
  /** `mesh` for sidecars, else the gateway's `namespace/name`. */
  gateway: string;
}

function gatewayRefOf(entry: string, vsNamespace: string): string {
  return entry === 'mesh' || entry.includes('/') ? entry : `${vsNamespace}/${entry}`;
}

/** Whether a match (or the VirtualService, when the match names no gateways) applies to `scope.gateway`. */
function appliesTo(vs: VirtualService, matchGateways: readonly string[] | undefined, scope: L4Scope): boolean {
  const ns = namespaceOf(vs);
  const list = matchGateways && matchGateways.length > 0 ? matchGateways : vs.spec.gateways && vs.spec.gateways.length > 0 ? vs.spec.gateways : ['mesh'];
  return list.some((g) => gatewayRefOf(g, ns) === scope.gateway);
}

function keepMatch(vs: VirtualService, m: L4MatchAttributes, scope: L4Scope, ctx: RouteContext): boolean {
  if (m.port !== undefined && m.port !== scope.port) return false;
  if (!labelsMatch(m.sourceLabels, ctx.workload.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== ctx.workload.namespace) return false;
  return appliesTo(vs, m.gateways, scope);
}

function l4Match(m: L4MatchAttributes, sniHosts?: readonly string[]): TcpRouteMatch {
  return {
    ...(m.port !== undefined ? { port: m.port } : {}),
    ...(m.destinationSubnets && m.destinationSubnets.length > 0 ? { destinationSubnets: [...m.destinationSubnets] } : {}),
    ...(sniHosts ? { sniHosts: sniHosts.map((h) => h.toLowerCase()) } : {}),
  };
}

/** The port a destination without port goes to: the only port of its service, else the listener's port if it has it, else its first. */
function destinationPort(host: string, listenerPort: number, ctx: RouteContext): number {
  const ports = ctx.registry.get(host)?.entry.spec.ports ?? [];
  if (ports.length === 1) return ports[0]!.number;
  if (ports.some((p) => p.number === listenerPort)) return listenerPort;
  return ports[0]?.number ?? listenerPort;
}

function destinations(route: readonly RouteDestination[], namespace: string, scope: L4Scope, ctx: RouteContext): { cluster: string; weight: number }[] {
  return route.map((d) => {
    const host = ctx.registry.lookup(d.destination.host, namespace)?.host ?? resolveHost(d.destination.host, namespace);
    const port = d.destination.port?.number ?? destinationPort(host, scope.port, ctx);
    // A single destination takes every connection (Istio), whatever weight it was given.
    return { cluster: ctx.clusters.ensure(host, port, d.destination.subset), weight: route.length === 1 ? 100 : (d.weight ?? 0) };
  });
}

/**
 * The `tls` and `tcp` rules of one VirtualService for a listener port, in order. `sniFilter` (gateways)
 * narrows each TLS match's sniHosts to the names the server exposes; a match left with none is dropped.
 */
export function translateL4Rules(
  vs: VirtualService,
  scope: L4Scope,
  ctx: RouteContext,
  sniFilter?: (sni: string) => boolean,
): { tls: TcpRouteConfig[]; tcp: TcpRouteConfig[] } {
  const ns = namespaceOf(vs);
  const tls: TcpRouteConfig[] = [];
  (vs.spec.tls ?? []).forEach((rule, i) => {
    const matches: TcpRouteMatch[] = [];
    for (const m of rule.match as TLSMatchAttributes[]) {
      if (!keepMatch(vs, m, scope, ctx)) continue;
      const sni = sniFilter ? m.sniHosts.filter((h) => sniFilter(h.toLowerCase())) : m.sniHosts;
      if (sni.length > 0) matches.push(l4Match(m, sni));
    }
    if (matches.length === 0 || !rule.route) return;
    tls.push({ name: `${vs.metadata.name}.${ns}/tls/${i}`, match: matches, destinations: destinations(rule.route, ns, scope, ctx) });
  });
  const tcp: TcpRouteConfig[] = [];
  (vs.spec.tcp ?? []).forEach((rule, i) => {
    const written = rule.match ?? [];
    const kept = written.filter((m) => keepMatch(vs, m, scope, ctx));
    if (written.length > 0 && kept.length === 0) return;
    // A rule without matches still has to apply to this scope through the VirtualService's gateways.
    if (written.length === 0 && !appliesTo(vs, undefined, scope)) return;
    if (!rule.route) return;
    tcp.push({ name: `${vs.metadata.name}.${ns}/tcp/${i}`, match: kept.map((m) => l4Match(m)), destinations: destinations(rule.route, ns, scope, ctx) });
  });
  return { tls, tcp };
}

/** A VirtualService applies to sidecars when it names no gateways, or names "mesh" (possibly only in matches). */
function mayApplyToSidecars(vs: VirtualService): boolean {
  const g = vs.spec.gateways;
  if (!g || g.length === 0 || g.includes('mesh')) return true;
  const matches = [...(vs.spec.tcp ?? []).flatMap((r) => r.match ?? []), ...(vs.spec.tls ?? []).flatMap((r) => r.match)];
  return matches.some((m) => m.gateways?.includes('mesh'));
}

/**
 * The outbound L4 routing of a sidecar: one TcpPortConfig per port that a service proxies as TCP, or
 * that a VirtualService's tcp/tls match names for a host no ServiceEntry declares. Empty when there is none.
 */
export function buildTcpPorts(virtualServices: readonly VirtualService[], ctx: RouteContext): TcpPortConfig[] {
  const bound = virtualServices
    .filter((vs) => (vs.spec.tcp?.length ?? 0) + (vs.spec.tls?.length ?? 0) > 0 && mayApplyToSidecars(vs))
    .flatMap((vs) => vs.spec.hosts.map((h) => ({ vs, host: resolveHost(h, namespaceOf(vs)) })));
  const pick = (host: string): VirtualService | undefined => {
    let best: { vs: VirtualService; specificity: number } | undefined;
    for (const b of bound) {
      if (!hostMatches(b.host, host)) continue;
      const specificity = hostSpecificity(b.host);
      if (!best || specificity > best.specificity) best = { vs: b.vs, specificity };
    }
    return best?.vs;
  };

  const ports = new Map<number, { tls: TcpRouteConfig[]; tcp: TcpRouteConfig[]; defaults: { tls: TcpRouteConfig[]; tcp: TcpRouteConfig[] }; used: Set<VirtualService> }>();
  const portEntry = (port: number) => {
    let e = ports.get(port);
    if (!e) {
      e = { tls: [], tcp: [], defaults: { tls: [], tcp: [] }, used: new Set() };
      ports.set(port, e);
    }
    return e;
  };
  const addRules = (vs: VirtualService, port: number): void => {
    const e = portEntry(port);
    if (e.used.has(vs)) return;
    e.used.add(vs);
    const rules = translateL4Rules(vs, { port, gateway: 'mesh' }, ctx);
    e.tls.push(...rules.tls);
    e.tcp.push(...rules.tcp);
  };

  const services: Service[] = ctx.registry.all();
  for (const service of services) {
    for (const p of tcpPorts(service.entry)) {
      const vs = pick(service.host);
      if (vs) addRules(vs, p.number);
      const e = portEntry(p.number);
      const route: TcpRouteConfig = {
        name: `${service.host}/default`,
        match: isTlsProtocol(portProtocol(p)) && !service.host.startsWith('*') ? [{ sniHosts: [service.host] }] : [],
        destinations: [{ cluster: ctx.clusters.ensure(service.host, p.number), weight: 100 }],
      };
      if (route.match.length > 0) e.defaults.tls.push(route);
      else e.defaults.tcp.push(route);
    }
  }
  // VirtualServices for hosts no ServiceEntry declares: the ports their matches name.
  const declared = new Set(services.map((s) => s.host));
  for (const { vs, host } of bound) {
    if (declared.has(host)) continue;
    const named = [...(vs.spec.tcp ?? []).flatMap((r) => r.match ?? []), ...(vs.spec.tls ?? []).flatMap((r) => r.match)].map((m) => m.port).filter((p): p is number => p !== undefined);
    for (const port of new Set(named)) addRules(vs, port);
  }

  return [...ports.entries()]
    .sort(([a], [b]) => a - b)
    .map(([port, e]) => ({ port, tlsRoutes: [...e.tls, ...e.defaults.tls], tcpRoutes: [...e.tcp, ...e.defaults.tcp] }))
    .filter((p) => p.tlsRoutes.length + p.tcpRoutes.length > 0);
}
