// GET /proxy-status: every proxy connected to this replica's discovery service, for
// `wasmesh proxy-status`. The data comes from a function the caller wires to the discovery server
// (xds/server.ts `proxies()`); this module only shapes it for clients and decides the status:
//
//   SYNCED  the proxy ACKed the latest config the orchestrator built for it
//   NACKED  the proxy refused that version (nacked.message says why; it keeps its previous config)
//   STALE   anything else: the orchestrator cannot build the proxy's latest config (buildErrors), a
//           push is outstanding, or a newer snapshot is waiting to be sent
// `reason` says why a proxy is not SYNCED. `problems` lists resources the proxy's config does not
// carry as written (left out, or stood in for by a filter that denies), whatever the status: one
// bad resource never holds back the rest of a workload's config, but it must not go unnoticed.
//
// Each replica reports only the proxies streaming to it (as Istio's istiod does).

import type { FastifyInstance } from 'fastify';

export type SyncStatus = 'SYNCED' | 'STALE' | 'NACKED';

/** One proxy as the API returns it. */
export interface ProxyStatusItem {
  node: string;
  workload: string;
  namespace: string;
  labels: Record<string, string>;
  serviceAccount?: string;
  /** When the stream started (ISO 8601). */
  connectedSince?: string;
  /** The latest version pushed to the proxy, and when. */
  sent?: { version: string; at: string };
  /** The version the proxy last said it runs. */
  acked?: string;
  /** Set while the proxy refuses the latest version pushed. */
  nacked?: { version: string; message: string; at?: string };
  /** The version the orchestrator holds for this proxy (newer than sent while a push is outstanding). */
  latest?: string;
  lastPush?: string;
  status: SyncStatus;
  /** Why the status is not SYNCED. */
  reason?: string;
  /** Why the orchestrator cannot build this proxy's latest config (the status is then STALE). */
  buildErrors?: string[];
  /** Resources the config does not carry as written, and what the proxy runs instead. */
  problems?: ConfigProblemItem[];
}

export interface ConfigProblemItem {
  /** "WasmPlugin default/authz" */
  resource: string;
  /** JSON pointer to the field ("" for the whole resource). */
  path: string;
  message: string;
}

export interface ProxyStatusRoutesOptions {
  /** The discovery server's view of its streams; absent when this process serves no gRPC. */
  proxyStatus?: () => unknown[];
}

export async function proxyStatusRoutes(app: FastifyInstance, opts: ProxyStatusRoutesOptions): Promise<void> {
  app.get<{ Querystring: { namespace?: string } }>(
    '/proxy-status',
    {
      config: { access: 'read', namespaces: 'query' },
      schema: {
        summary: 'Proxies connected to this orchestrator replica: versions sent, ACKed and NACKed',
        tags: ['proxies'],
        querystring: { type: 'object', properties: { namespace: { type: 'string', description: 'only proxies in this namespace' } }, additionalProperties: false },
      },
    },
    async (request) => {
      const raw = opts.proxyStatus ? opts.proxyStatus() : [];
      const { namespace } = request.query;
      const items = raw.map(normalizeProxyStatus).filter((p): p is ProxyStatusItem => p !== undefined && (namespace === undefined || p.namespace === namespace));
      items.sort((a, b) => (a.namespace === b.namespace ? cmp(a.workload, b.workload) || cmp(a.node, b.node) : cmp(a.namespace, b.namespace)));
      return { discovery: opts.proxyStatus !== undefined, items };
    },
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The status of a proxy from what was built for it, sent, ACKed and NACKed. */
export function syncStatus(p: { sent?: { version: string }; acked?: string; nacked?: { version: string }; latest?: string; buildErrors?: readonly string[] }): SyncStatus {
  if (p.buildErrors !== undefined && p.buildErrors.length > 0) return 'STALE';
  const target = p.latest ?? p.sent?.version;
  if (target === undefined) return 'STALE';
  if (p.acked === target && (p.sent === undefined || p.sent.version === target)) return 'SYNCED';
  if (p.nacked !== undefined && p.nacked.version === target) return 'NACKED';
  return 'STALE';
}

/** Why a proxy is STALE or NACKED, in a line; undefined when SYNCED. */
export function statusReason(p: ProxyStatusItem): string | undefined {
  const runs = p.acked ? `it runs ${p.acked.slice(0, 12)}` : 'it has no config from this orchestrator';
  if (p.status === 'NACKED') return `the proxy refused ${p.nacked!.version.slice(0, 12)}: ${p.nacked!.message}; ${runs}`;
  if (p.status !== 'STALE') return undefined;
  if (p.buildErrors && p.buildErrors.length > 0) return `the orchestrator cannot build this proxy's latest config: ${p.buildErrors.join('; ')}; ${runs}`;
  const target = p.latest ?? p.sent?.version;
  if (target === undefined) return 'no config for this proxy yet';
  if (p.sent?.version !== target) return `${target.slice(0, 12)} is waiting to be sent (a push is in flight); ${runs}`;
  return `waiting for the proxy to acknowledge ${target.slice(0, 12)}; ${runs}`;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const rec = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/** Reads one entry of the discovery server's `proxies()` defensively (the shape belongs to xds/). */
export function normalizeProxyStatus(value: unknown): ProxyStatusItem | undefined {
  const v = rec(value);
  if (!v) return undefined;
  const workload = rec(v.workload);
  const name = str(workload?.name) ?? str(v.workload) ?? '';
  const namespace = str(workload?.namespace) ?? str(v.namespace) ?? 'default';
  const labels: Record<string, string> = {};
  for (const [k, l] of Object.entries(rec(workload?.labels) ?? {})) if (typeof l === 'string') labels[k] = l;
  const sentRaw = rec(v.sent);
  const sent = sentRaw && str(sentRaw.version) !== undefined ? { version: str(sentRaw.version)!, at: str(sentRaw.at) ?? '' } : undefined;
  const nackRaw = rec(v.nacked);
  const nacked =
    nackRaw && str(nackRaw.version) !== undefined
      ? { version: str(nackRaw.version)!, message: str(nackRaw.message) ?? '', ...(str(nackRaw.at) ? { at: str(nackRaw.at)! } : {}) }
      : undefined;
  const acked = str(v.acked);
  const latest = str(v.latest);
  const buildErrors = Array.isArray(v.buildErrors) ? v.buildErrors.filter((e): e is string => typeof e === 'string') : [];
  const problems = (Array.isArray(v.problems) ? v.problems : []).flatMap((x) => {
    const p = rec(x);
    return p && str(p.resource) !== undefined && str(p.message) !== undefined ? [{ resource: str(p.resource)!, path: str(p.path) ?? '', message: str(p.message)! }] : [];
  });
  const serviceAccount = str(workload?.serviceAccount);
  const connectedSince = str(v.connectedAt) ?? str(v.connectedSince);
  const item: ProxyStatusItem = {
    node: str(v.node) ?? `${name}.${namespace}`,
    workload: name,
    namespace,
    labels,
    ...(serviceAccount ? { serviceAccount } : {}),
    ...(connectedSince ? { connectedSince } : {}),
    ...(sent ? { sent } : {}),
    ...(acked !== undefined ? { acked } : {}),
    ...(nacked ? { nacked } : {}),
    ...(latest !== undefined ? { latest } : {}),
    ...(sent?.at ? { lastPush: sent.at } : {}),
    ...(buildErrors.length > 0 ? { buildErrors } : {}),
    ...(problems.length > 0 ? { problems } : {}),
    status: 'STALE',
  };
  item.status = syncStatus(item);
  const reason = statusReason(item);
  if (reason !== undefined) item.reason = reason;
  return item;
}
