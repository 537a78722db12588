// The admin endpoint (Envoy's :15000): stats, config dump, readiness, clusters, log level.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLogLevel, logLevelName, setLogLevel } from '../log.ts';

export interface AdminSource {
  renderPrometheus(): string;
  configDump(): unknown;
  clustersDump(): unknown;
  serverInfo(): unknown;
  ready(): boolean;
}

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

/** `refresh`, when given, runs before each request is answered (the primary gathering its workers' state). */
export async function startAdminServer(source: AdminSource, host: string, port: number, refresh?: () => Promise<void>): Promise<AdminServer> {
  const server = http.createServer(async (req, res) => {
    if (refresh) await refresh().catch(() => {});
    const url = new URL(req.url ?? '/', 'http://admin');
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const json = (value: unknown) => send(200, 'application/json', JSON.stringify(value, null, 2) + '\n');
    switch (url.pathname) {
      case '/stats/prometheus':
      case '/metrics':
        return send(200, 'text/plain; version=0.0.4; charset=utf-8', source.renderPrometheus());
      case '/config_dump':
        return json(source.configDump());
      case '/clusters':
        return json(source.clustersDump());
      case '/server_info':
        return json(source.serverInfo());
      case '/ready':
        return source.ready() ? send(200, 'text/plain', 'LIVE\n') : send(503, 'text/plain', 'NOT READY\n');
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
        return send(200, 'text/plain', 'wasmesh proxy admin: /stats/prometheus /config_dump /clusters /server_info /ready /healthz /logging?level=\n');
      default:
        return send(404, 'text/plain', `no admin endpoint ${url.pathname}\n`);
    }
  });
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
