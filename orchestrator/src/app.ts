// The orchestrator's REST API as a Fastify instance. buildApp never listens: the CLI calls
// listen(), tests use app.inject() (or listen on port 0 for streams).
//
// Layers, in the order a request meets them:
//   onRequest: auth (auth/access.ts) — token (401) and role (403) before the body is read
//   content-type parsers: JSON (Fastify's), YAML as text, wasm as bytes
//   route schemas (params, query) — Fastify's ajv; resource bodies are validated by the config
//     layer instead (mesh/src/validate.ts: Istio schemas + cross-document checks, better messages)
//   handlers: http/resources.ts, http/apply.ts, http/modules.ts, http/proxy-status.ts, http/tokens.ts; writes
//     through http/writer.ts
//   errors: http/errors.ts gives every failure { code, errors: [{ document, path, message }] }
//   request ids: http/request-ids.ts (x-request-id on every answer; every 5xx logged with its id)

import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { ValidationMode } from '../../mesh/src/validate.ts';
import type { ConfigStore, ModuleRecord } from './store/types.ts';
import type { TokenStore } from './auth/tokens.ts';
import { installAuth } from './auth/access.ts';
import { ErrorCode, HttpError, frameworkErrorHandler, installErrorHandlers } from './http/errors.ts';
import { installRequestIds, requestIdOf } from './http/request-ids.ts';
import { INPUT_LIMITS, jsonNestingPast } from '../../mesh/src/input-limits.ts';
import { ConfigWriter } from './http/writer.ts';
import { resourceRoutes } from './http/resources.ts';
import { applyRoutes } from './http/apply.ts';
import { moduleRoutes } from './http/modules.ts';
import { proxyStatusRoutes } from './http/proxy-status.ts';
import { caRoutes, type CaRoutesOptions } from './http/ca.ts';
import { filterRoutes } from './http/filters.ts';
import { tokenRoutes } from './http/tokens.ts';
import { CanaryStats } from './rollout/canary-stats.ts';
import { RolloutController } from './rollout/controller.ts';
import { PluginWriter } from './rollout/plugin-writer.ts';
import { consoleRoutes } from './console/routes.ts';
import type { TrafficStats } from './console/traffic-stats.ts';

export interface BuildAppOptions {
  store: ConfigStore;
  tokens: TokenStore;
  /** Log every request (pino JSON lines); default off. Errors (every 5xx) are logged either way. */
  logger?: boolean;
  /** Where log lines go; default stdout when `logger` is on, else stderr. */
  logStream?: { write(line: string): unknown };
  /** Validation mode for WasmPlugin urls; default managed (digests of uploaded modules allowed). */
  mode?: ValidationMode;
  /** Largest JSON/YAML body, bytes; default INPUT_LIMITS.maxTextBytes (8 MiB). */
  bodyLimit?: number;
  /** Called after a module is stored (the store's watch reports resources only). */
  onModuleUploaded?: (record: ModuleRecord) => void;
  /** The proxies connected to this replica's discovery service (xds server `proxies()`), for GET /proxy-status. */
  proxyStatus?: () => unknown[];
  /** The certificate authority, for /ca/* (trust bundle, root rotation). */
  ca?: CaRoutesOptions['ca'];
  /** Filter outcomes reported by proxies (the discovery service feeds it); rollouts are judged on them. */
  canaryStats?: CanaryStats;
  /** Golden signals per edge that proxies report (the discovery service feeds it), for the console's graph. */
  traffic?: TrafficStats;
  /** Rollout controller log (default: stderr for warnings and errors). */
  rolloutLog?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

export function buildApp(opts: BuildAppOptions): FastifyInstance {
  const app = Fastify({
    logger: { level: opts.logger ? 'info' : 'error', stream: opts.logStream ?? (opts.logger ? process.stdout : process.stderr) },
    genReqId: requestIdOf,
    frameworkErrors: frameworkErrorHandler,
    bodyLimit: opts.bodyLimit ?? INPUT_LIMITS.maxTextBytes,
    // Streams (watch) are ended in preClose; anything else idle is closed at shutdown.
    forceCloseConnections: 'idle',
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, useDefaults: false } },
  });

  // JSON nested past the limit is refused before JSON.parse, which is slow on it, and before any
  // recursive code sees it (documents are checked against the same limits later, with their names).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body: string, done) => {
    if (jsonNestingPast(body, INPUT_LIMITS.maxDepth + 2) !== undefined) {
      return done(new HttpError(400, ErrorCode.BadRequest, `the JSON body nests deeper than ${INPUT_LIMITS.maxDepth} levels (the limit)`), undefined);
    }
    return parseJson(request, body, done);
  });
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string' }, (_request, body, done) => done(null, body));
  app.addContentTypeParser(['application/wasm', 'application/octet-stream'], { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  installErrorHandlers(app);
  installRequestIds(app); // before auth: a 401 carries the id too
  installAuth(app, opts.tokens);

  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'wasmesh orchestrator',
        description: 'Istio-style config resources and filter modules for the wasmesh service mesh.',
        version: '1',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'resources', description: 'ServiceEntry, WorkloadEntry, VirtualService, DestinationRule, WasmPlugin, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, RateLimitPolicy, Gateway, TLSSecret (write: admin only; reads are redacted), Telemetry, MeshConfig' },
        { name: 'modules', description: 'proxy-wasm filter modules, content-addressed by sha256' },
        { name: 'proxies', description: 'proxies connected to this replica and their config sync state' },
        { name: 'filters', description: 'filter module versions per WasmPlugin: history, rollback, canary rollouts' },
        { name: 'tokens', description: 'API tokens (admin only)' },
        { name: 'console', description: 'what the web console (/console/) reads: proxies, the service graph, resources as YAML' },
      ],
    },
  });

  const writer = new ConfigWriter(opts.store, opts.mode ?? 'managed');

  // Registered as a plugin so that it loads after swagger, whose onRoute hook documents it.
  app.register(async (scope) => {
    scope.get('/healthz', { config: { access: 'public' }, schema: { summary: 'Liveness (no token needed)', security: [] } }, async () => ({ status: 'ok' }));
    scope.get('/openapi.json', { config: { access: 'read', namespaces: 'none' }, schema: { hide: true } }, async () => app.swagger());
  });

  app.register(resourceRoutes, { store: opts.store, writer });
  app.register(applyRoutes, { store: opts.store, writer });
  app.register(moduleRoutes, { store: opts.store, ...(opts.onModuleUploaded ? { onUploaded: opts.onModuleUploaded } : {}) });
  app.register(proxyStatusRoutes, opts.proxyStatus ? { proxyStatus: opts.proxyStatus } : {});
  app.register(caRoutes, opts.ca ? { ca: opts.ca } : {});
  app.register(tokenRoutes, { tokens: opts.tokens });
  app.register(consoleRoutes, { store: opts.store, ...(opts.proxyStatus ? { proxyStatus: opts.proxyStatus } : {}), ...(opts.traffic ? { traffic: opts.traffic } : {}) });

  const plugins = new PluginWriter(opts.store, writer);
  const rollouts = new RolloutController({
    writer: plugins,
    stats: opts.canaryStats ?? new CanaryStats(),
    listModules: (name) => opts.store.listModules(name),
    // The discovery service's view of this replica's proxies: a NACK of the new version rolls it back.
    refusals: () => (opts.proxyStatus?.() ?? []).flatMap((p) => {
      const s = p as { node?: string; nacked?: { message: string; at: string } };
      return s.nacked && s.node ? [{ node: s.node, message: s.nacked.message, at: s.nacked.at }] : [];
    }),
    // ... and which of them run (or were sent) a canary: those must keep reporting on it.
    proxies: () => (opts.proxyStatus?.() ?? []).flatMap((p) => {
      const s = p as { node?: string; canaries?: Array<{ plugin: string; sha256: string }> };
      return s.node ? [{ node: s.node, ...(s.canaries ? { canaries: s.canaries } : {}) }] : [];
    }),
    log: opts.rolloutLog ?? ((level, message) => void (level !== 'info' && process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`))),
  });
  app.register(filterRoutes, { store: opts.store, plugins, rollouts });
  // Rollouts left in progress by a previous run carry on.
  app.addHook('onReady', async () => rollouts.resume(await opts.store.list('WasmPlugin')));
  app.addHook('onClose', async () => rollouts.close());
  return app;
}
