// HTTP/1.1 upgrades (WebSocket and the like) pass through: routed like any request, then the two
// sockets are spliced. Filters do not see upgraded traffic (it is no longer HTTP).
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionManager } from './connection-manager.ts';

function refuse(socket: Duplex, status: string): void {
  if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  else socket.destroy();
}

export function handleUpgrade(cm: ConnectionManager, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const authority = req.headers.host ?? '';
  const hit = cm.state.routes.match({ authority, path: req.url ?? '/', method: req.method ?? 'GET', headers: flatLower(req.rawHeaders), port: cm.state.routes.matchesPort ? cm.routePort(authority) : undefined });
  if (!hit) return refuse(socket, '404 Not Found');
  const action = hit.route.action;
  if (action.kind !== 'forward') return refuse(socket, '404 Not Found');
  const cluster = cm.clusters.get(action.destinations[0].cluster);
  const endpoint = cluster?.pick({ headers: flatLower(req.rawHeaders), sourceIp: req.socket.remoteAddress });
  if (!cluster || !endpoint) return refuse(socket, '503 Service Unavailable');
  const upstream = net.connect({ host: endpoint.config.address, port: endpoint.config.port });
  endpoint.activeRequests++;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    endpoint.activeRequests--;
  };
  upstream.on('connect', () => {
    let head0 = `${req.method} ${req.url} HTTP/1.1\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) head0 += `${raw[i]}: ${raw[i + 1]}\r\n`;
    head0 += `x-forwarded-for: ${req.socket.remoteAddress ?? ''}\r\n\r\n`;
    upstream.write(head0);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on('error', () => {
    release();
    refuse(socket, '503 Service Unavailable');
  });
  upstream.on('close', () => {
    release();
    socket.destroy();
  });
  socket.on('close', () => upstream.destroy());
}

function flatLower(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) out.push(raw[i].toLowerCase(), raw[i + 1]);
  return out;
}
