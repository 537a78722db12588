// The admin endpoint (Envoy's :15000): stats, config dump, readiness, clusters, log level.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLogLevel, logError, logLevelName, setLogLevel } from '../log.ts';

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

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `refresh`, when given, runs before each request but /ready and /healthz is answered (the primary
 * gathering its workers' state; probes must answer at once even while a worker does not).
 */
export async function startAdminServer(source: AdminSource, host: string, port: number, refresh?: () => Promise<void>): Promise<AdminServer> {
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // Prefixed, never resolved against a base: "//x" would otherwise be a host (or throw).
    const url = new URL(`http://admin${req.url?.startsWith('/') ? req.url : `/${req.url ?? ''}`}`);
    if (refresh && url.pathname !== '/ready' && url.pathname !== '/healthz') await refresh().catch(() => {});
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const json = (value: unknown, status = 200) => send(status, 'application/json', JSON.stringify(value, null, 2) + '\n');
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
        if (level === null) return send(200, 'text/plain', `level: ${logLevelName()}\n`);
        if (!isLogLevel(level)) return send(400, 'text/plain', `unknown level "${level}": use trace, debug, info, warn, error, critical, off\n`);
        setLogLevel(level);
        return send(200, 'text/plain', `level: ${level}\n`);
      }
      case '/':
        return send(200, 'text/plain', 'wasmesh proxy admin: /stats/prometheus /config_dump /clusters /filters /server_info /ready /healthz /logging?level=\n');
      default:
        return send(404, 'text/plain', `no admin endpoint ${url.pathname}\n`);
    }
  };
  const server = http.createServer((req, res) => void handle(req, res).catch((err: unknown) => internalError(req, res, err)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
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
