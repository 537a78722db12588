// The web console, served by the orchestrator on its REST port:
//   GET /console/              the page (orchestrator/console/index.html), and its scripts and styles:
//   GET /console/<file>        plain ES modules and CSS from orchestrator/console/, no build step;
//                              public (they hold no data), a fixed list read at startup
//   GET /console/api/whoami    the caller's role (the page disables what the role cannot do)
//   GET /console/api/proxies   every connected proxy: sync state, config version, certificate
//                              expiry, filter chains, and its outbound golden signals
//   GET /console/api/graph     services and workloads as nodes, calls as edges (console/traffic-stats.ts)
//   GET /console/api/yaml/:kind  resources of a kind as YAML text
// The page acts through the API the CLI uses (/apply, /apply?dryRun=true, /filters/...).
//
// Tokens: a page load cannot carry a bearer header, so the pages are public and hold nothing; the
// page asks for a token, keeps it in sessionStorage (this tab only, gone when it closes), and sends
// it as `Authorization: Bearer` on every API call. Nothing is authorized by a cookie, so another
// site cannot make the browser act (no CSRF), and the token never appears in a URL (history, logs,
// Referer). The Content-Security-Policy allows this origin's scripts only, no inline script, so
// data from the mesh rendered as text cannot run as code.

import { shown } from '../http/secrets.ts';
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { stringify } from 'yaml';
import { installPath } from '../../../schemas/repo-files.ts';
import { normalizeProxyStatus, type ProxyStatusItem } from '../http/proxy-status.ts';
import { kindFromUrl, PLURALS } from '../http/kinds.ts';
import { ErrorCode, HttpError } from '../http/errors.ts';
import { RESOURCE_KINDS, type ConfigStore } from '../store/types.ts';
import { MAX_WINDOW_MS, MIN_WINDOW_MS, type Signals, type TrafficStats } from './traffic-stats.ts';

export interface ConsoleRoutesOptions {
  store: ConfigStore;
  /** The discovery server's proxies (as for /proxy-status). */
  proxyStatus?: () => unknown[];
  /** What the proxies report of their traffic; absent: an empty graph. */
  traffic?: TrafficStats;
  /** Where the page's files are (default orchestrator/console/ of this checkout). */
  dir?: string;
}

export interface ConsoleProxyItem extends ProxyStatusItem {
  filters?: { inbound: unknown[]; outbound: unknown[] };
  /** The workload certificate's notAfter as the proxy reported it. */
  certNotAfter?: string;
  /** The proxy's outbound calls over the window. */
  outbound?: Signals;
  /** The same between consecutive reports over the window (at most 60 points): the small charts. */
  history?: Array<Signals & { at: string }>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** No inline script, no framing, this origin only. */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const windowQuery = { type: 'integer', minimum: MIN_WINDOW_MS / 1000, maximum: MAX_WINDOW_MS / 1000, description: 'seconds (default 60)' } as const;

export async function consoleRoutes(app: FastifyInstance, opts: ConsoleRoutesOptions): Promise<void> {
  const dir = opts.dir ?? installPath('orchestrator', 'console');
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type !== undefined && /^[a-z0-9-]+\.[a-z]+$/.test(name)) files.set(name, { body: readFileSync(join(dir, name)), type });
  }
  const send = (reply: FastifyReply, name: string) => {
    const f = files.get(name);
    if (!f) throw new HttpError(404, ErrorCode.NotFound, `no console file ${JSON.stringify(name)}`);
    return reply
      .header('content-type', f.type)
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .send(f.body);
  };
  const page = { config: { access: 'public' as const }, schema: { hide: true } };
  app.get('/console', page, async (_request, reply) => reply.redirect('/console/'));
  app.get('/console/', page, async (_request, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/console/:file', page, async (request, reply) => send(reply, request.params.file));

  app.get(
    '/console/api/whoami',
    { config: { access: 'read', namespaces: 'none' }, schema: { summary: 'The caller’s role and namespace (the console)', tags: ['console'] } },
    async (request) => {
      const id = request.identity!;
      return { role: id.role, ...(id.namespace !== undefined ? { namespace: id.namespace } : {}), mayAct: id.role === 'admin' || id.role === 'editor', kinds: RESOURCE_KINDS.map((kind) => ({ kind, plural: PLURALS[kind] })) };
    },
  );

  app.get<{ Querystring: { namespace?: string; window?: number } }>(
    '/console/api/proxies',
    {
      config: { access: 'read', namespaces: 'query' },
      schema: {
        summary: 'Connected proxies with sync state, certificate expiry, filter chains and golden signals (the console)',
        tags: ['console'],
        querystring: { type: 'object', properties: { namespace: { type: 'string' }, window: windowQuery }, additionalProperties: false },
      },
    },
    async (request) => {
      const { namespace } = request.query;
      const windowMs = (request.query.window ?? 60) * 1000;
      const items: ConsoleProxyItem[] = [];
      for (const raw of opts.proxyStatus?.() ?? []) {
        const p = normalizeProxyStatus(raw);
        if (!p || (namespace !== undefined && p.namespace !== namespace)) continue;
        const filters = (raw as { filters?: { inbound: unknown[]; outbound: unknown[] } }).filters;
        const cert = opts.traffic?.certNotAfter(p.node);
        const outbound = opts.traffic?.outbound(p.node, windowMs);
        const history = opts.traffic?.history(p.node, windowMs) ?? [];
        items.push({ ...p, ...(filters ? { filters } : {}), ...(cert ? { certNotAfter: cert } : {}), ...(outbound ? { outbound } : {}), ...(history.length > 0 ? { history } : {}) });
      }
      items.sort((a, b) => (a.namespace === b.namespace ? (a.workload === b.workload ? cmp(a.node, b.node) : cmp(a.workload, b.workload)) : cmp(a.namespace, b.namespace)));
      return { discovery: opts.proxyStatus !== undefined, windowSeconds: windowMs / 1000, items };
    },
  );

  app.get<{ Querystring: { namespace?: string; window?: number } }>(
    '/console/api/graph',
    {
      config: { access: 'read', namespaces: 'query' },
      schema: {
        summary: 'The service graph: calls between workloads and services with rps, error rate, p99, mTLS and traffic split (the console)',
        tags: ['console'],
        querystring: { type: 'object', properties: { namespace: { type: 'string' }, window: windowQuery }, additionalProperties: false },
      },
    },
    async (request) => {
      const windowMs = (request.query.window ?? 60) * 1000;
      if (!opts.traffic) return { windowSeconds: windowMs / 1000, reporters: 0, nodes: [], edges: [] };
      return opts.traffic.graph({ windowMs, ...(request.query.namespace !== undefined ? { namespace: request.query.namespace } : {}) });
    },
  );

  app.get<{ Params: { kind: string }; Querystring: { namespace?: string } }>(
    '/console/api/yaml/:kind',
    {
      config: { access: 'read', namespaces: 'query' },
      schema: {
        summary: 'Resources of a kind, each as YAML (the console)',
        tags: ['console'],
        params: { type: 'object', properties: { kind: { type: 'string' } }, required: ['kind'] },
        querystring: { type: 'object', properties: { namespace: { type: 'string' } }, additionalProperties: false },
      },
    },
    async (request) => {
      const kind = kindFromUrl(request.params.kind);
      if (!kind) throw new HttpError(404, ErrorCode.NotFound, `unknown kind "${request.params.kind}"`);
      const items = await opts.store.list(kind, request.query.namespace);
      return {
        kind,
        items: items.map((r) => ({ namespace: r.metadata.namespace, name: r.metadata.name, resourceVersion: r.metadata.resourceVersion, yaml: stringify(shown(r), { lineWidth: 0 }) })),
      };
    },
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
