// The admin endpoint (Envoy's :15000): stats, config dump, readiness, clusters, log level. It binds
// loopback unless told otherwise; who may write, and what browsers may not, is admin-access.ts.
// The same server, limited to a few read-only paths, is the status port (Istio's 15021): what a
// kubelet probes and a scraper reads from outside the pod.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLogLevel, logError, logLevelName, logWarn, setLogLevel } from '../log.ts';
import { AdminGuard, isLoopbackAddress, isWrite, type AdminWriteAccess, type Refusal } from './admin-access.ts';

export interface AdminSource {
  renderPrometheus(): string;
  configDump(): unknown;
  clustersDump(): unknown;
  serverInfo(): unknown;
  ready(): boolean;
  /** Why it is not ready (starting, draining, a recent event-loop stall, a stuck worker, STRICT mTLS without a certificate): the 503's body, one per line. */
  notReadyReasons?(): string[];
  /** Module versions per filter and their outcomes (admin /filters). */
  filters?(): unknown;
  /** Present when the proxy accepts module overrides (standalone; `wasmesh filter dev`). */
  overrideModule?(plugin: string, bytes: Uint8Array): Promise<unknown>;
  clearModuleOverride?(plugin: string): Promise<void>;
}

/** The largest module the admin endpoint accepts (the runtime's own limit applies after). */
const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;
/** What a module upload must say it is (neither is a type a browser sends without asking first). */
const MODULE_CONTENT_TYPES = ['application/wasm', 'application/octet-stream'];

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Who may write (module overrides, log level); default: nobody. */
  access?: AdminWriteAccess;
  /**
   * Runs before each request but /ready and /healthz is answered (the primary gathering its workers'
   * state; probes must answer at once even while a worker does not).
   */
  refresh?: () => Promise<void>;
  /** The status port: only these paths, GET only, any Host (probes address the pod). */
  statusPaths?: readonly string[];
}

/** What the status port serves: readiness, liveness and metrics, nothing that changes or dumps config. */
export const STATUS_PATHS = ['/ready', '/healthz', '/stats/prometheus'] as const;

export function startStatusServer(source: AdminSource, host: string, port: number, refresh?: () => Promise<void>): Promise<AdminServer> {
  return startAdminServer(source, { host, port, statusPaths: STATUS_PATHS, ...(refresh ? { refresh } : {}) });
}

export async function startAdminServer(source: AdminSource, options: AdminServerOptions): Promise<AdminServer> {
  const { host, port, refresh, statusPaths } = options;
  const guard = new AdminGuard(options.access ?? {}, host);
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const refused = refusal(guard, req, statusPaths);
    if (refused) return sendRefusal(res, refused);
    // Prefixed, never resolved against a base: "//x" would otherwise be a host (or throw).
    const url = new URL(`http://admin${req.url?.startsWith('/') ? req.url : `/${req.url ?? ''}`}`);
    if (refresh && url.pathname !== '/ready' && url.pathname !== '/healthz') await refresh().catch(() => {});
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const json = (value: unknown, status = 200) => send(status, 'application/json', JSON.stringify(value, null, 2) + '\n');
    if (statusPaths && !statusPaths.includes(url.pathname)) return send(404, 'text/plain', `the status port serves ${statusPaths.join(' ')}; the rest is on the admin port (loopback)\n`);
    if (url.pathname === '/filters/module') return moduleOverride(source, url, req, json);
    switch (url.pathname) {
      case '/stats/prometheus':
      case '/metrics':
        return send(200, 'text/plain; version=0.0.4; charset=utf-8', source.renderPrometheus());
      case '/filters':
        return source.filters ? json(source.filters()) : send(404, 'text/plain', 'no filter status here\n');
      case '/config_dump':
        return json(source.configDump());
      case '/clusters':
        return json(source.clustersDump());
      case '/server_info':
        return json(source.serverInfo());
      case '/ready':
        return source.ready() ? send(200, 'text/plain', 'LIVE\n') : send(503, 'text/plain', ['NOT READY', ...(source.notReadyReasons?.() ?? [])].join('\n') + '\n');
      case '/healthz':
        return send(200, 'text/plain', 'OK\n');
      case '/logging': {
        const level = url.searchParams.get('level');
        // A GET must not change anything (a link or an <img> could send it): the change is a POST.
        if (!isWrite(req.method)) {
          if (level === null) return send(200, 'text/plain', `level: ${logLevelName()}\n`);
          return json({ error: `GET /logging only reads the level: change it with POST /logging?level=${encodeURIComponent(level)} (curl -X POST)` }, 405);
        }
        if (req.method !== 'POST' && req.method !== 'PUT') return json({ error: `use POST /logging?level=LEVEL, not ${req.method}` }, 405);
        const body = AdminGuard.checkWriteBody(req);
        if (body) return json({ error: body.error }, body.status);
        if (level === null) return json({ error: 'missing ?level=: POST /logging?level=trace|debug|info|warn|error|critical|off' }, 400);
        if (!isLogLevel(level)) return send(400, 'text/plain', `unknown level "${level}": use trace, debug, info, warn, error, critical, off\n`);
        setLogLevel(level);
        return send(200, 'text/plain', `level: ${level}\n`);
      }
      case '/':
        return send(200, 'text/plain', 'wasmesh proxy admin: /stats/prometheus /config_dump /clusters /filters /server_info /ready /healthz /logging (POST /logging?level= to change)\n');
      default:
        return send(404, 'text/plain', `no admin endpoint ${url.pathname}\n`);
    }
  };
  const server = http.createServer((req, res) => void handle(req, res).catch((err: unknown) => internalError(req, res, err)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  guard.listening(bound);
  if (!statusPaths && !isLoopbackAddress(host)) {
    const wildcard = host === '0.0.0.0' || host === '::';
    logWarn('admin', `the admin endpoint listens on ${host}:${bound}, not loopback: whoever reaches it reads the config and stats${wildcard ? ', under any Host name' : ''}; writes still need the admin token`);
  }
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** An unexpected exception: logged with an id (and the stack), answered 500 naming only the id. */
function internalError(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
  const id = randomUUID();
  logError('admin', `internal error, request id ${id}: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (res.headersSent) return void res.destroy();
  const body = `internal error, request id ${id}\n`;
  res.writeHead(500, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-request-id': id });
  res.end(body);
}

/** The guard's answer for one request: browsers first, then (writes) authorization. */
function refusal(guard: AdminGuard, req: http.IncomingMessage, statusPaths: readonly string[] | undefined): Refusal | undefined {
  const browser = guard.checkBrowser(req, statusPaths === undefined);
  if (browser) return browser;
  if (!isWrite(req.method)) return undefined;
  if (statusPaths) return { status: 405, error: `the status port is read-only; writes go to the admin port (loopback)` };
  return guard.authorizeWrite(req);
}

function sendRefusal(res: http.ServerResponse, refused: Refusal): void {
  const body = JSON.stringify({ error: refused.error }) + '\n';
  res.writeHead(refused.status, { ...refused.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

/**
 * PUT /filters/module?plugin=NS/NAME with the module bytes: run them in place of the WasmPlugin's
 * module (compiled and started first; on failure the running module stays and the answer says why).
 * DELETE /filters/module?plugin=NS/NAME: back to the WasmPlugin's own module.
 */
async function moduleOverride(source: AdminSource, url: URL, req: http.IncomingMessage, json: (value: unknown, status?: number) => void): Promise<void> {
  if (!source.overrideModule || !source.clearModuleOverride) {
    return json({ error: 'this proxy does not take module overrides (only a standalone proxy does: wasmesh proxy --config)' }, 403);
  }
  const plugin = url.searchParams.get('plugin');
  if (!plugin) return json({ error: 'missing ?plugin=NAMESPACE/NAME' }, 400);
  try {
    if (req.method === 'DELETE') {
      await source.clearModuleOverride(plugin);
      return json({ plugin, cleared: true });
    }
    if (req.method !== 'PUT' && req.method !== 'POST') return json({ error: `use PUT (module bytes) or DELETE, not ${req.method}` }, 405);
    const type = AdminGuard.checkWriteBody(req, MODULE_CONTENT_TYPES);
    if (type) return json({ error: `module upload: ${type.error}` }, type.status);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_UPLOAD_BYTES) return json({ error: `module larger than ${MAX_UPLOAD_BYTES} bytes` }, 413);
      chunks.push(chunk);
    }
    if (size === 0) return json({ error: 'send the module bytes as the request body' }, 400);
    const started = performance.now();
    const result = await source.overrideModule(plugin, Buffer.concat(chunks));
    return json({ ...(result as object), loadMs: Math.round((performance.now() - started) * 10) / 10 });
  } catch (err) {
    const code = (err as { code?: string }).code;
    return json({ error: err instanceof Error ? err.message : String(err), ...(code ? { code } : {}) }, code === 'WASMESH_PROXY_NO_SUCH_PLUGIN' ? 404 : 400);
  }
}
