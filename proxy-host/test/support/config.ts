// Builds ProxyConfig objects by hand for tests that exercise the data path without the translator.
import { createHash } from 'node:crypto';
import type { ClusterConfig, FilterBinding, ProxyConfig, RouteConfig, VirtualHostConfig } from '../../../mesh/src/proxy-config.ts';

export function cluster(name: string, endpoints: Array<{ port: number; labels?: Record<string, string>; weight?: number; tlsMode?: 'istio' }>, extra: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name,
    host: extra.host ?? name,
    port: extra.port ?? 80,
    protocol: extra.protocol ?? 'http1',
    endpoints: endpoints.map((e) => ({ address: '127.0.0.1', port: e.port, labels: e.labels ?? {}, weight: e.weight ?? 1, ...(e.tlsMode ? { tlsMode: e.tlsMode } : {}) })),
    loadBalancer: extra.loadBalancer ?? { simple: 'ROUND_ROBIN' },
    connectionPool: extra.connectionPool ?? {},
    ...(extra.subset ? { subset: extra.subset } : {}),
  };
}

export function forward(name: string, clusterName: string, extra: Partial<RouteConfig> = {}, timeoutMs = 0): RouteConfig {
  return { name, match: [], action: { kind: 'forward', destinations: [{ cluster: clusterName, weight: 100 }], timeoutMs }, ...extra };
}

export function proxyConfig(parts: {
  virtualHosts?: VirtualHostConfig[];
  clusters?: ClusterConfig[];
  inboundFilters?: FilterBinding[];
  outboundFilters?: FilterBinding[];
}): ProxyConfig {
  const body = {
    workload: { name: 'test', namespace: 'default', labels: { app: 'test' }, serviceAccount: 'default' },
    virtualHosts: parts.virtualHosts ?? [],
    clusters: Object.fromEntries((parts.clusters ?? []).map((c) => [c.name, c])),
    inboundFilters: parts.inboundFilters ?? [],
    outboundFilters: parts.outboundFilters ?? [],
  };
  return { version: createHash('sha256').update(JSON.stringify(body)).digest('hex'), ...body };
}

export function filterBinding(name: string, path: string, extra: Partial<FilterBinding> = {}): FilterBinding {
  return {
    name,
    namespace: 'default',
    phase: 'UNSPECIFIED_PHASE',
    priority: 0,
    url: `file://${path}`,
    path,
    rootId: '',
    vmId: `default.${name}`,
    pluginConfig: {},
    failStrategy: 'FAIL_CLOSE',
    env: {},
    ...extra,
  };
}
