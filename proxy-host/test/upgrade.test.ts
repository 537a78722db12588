// WebSocket-style upgrades pass through the proxy: the 101 handshake reaches the client and bytes
// flow both ways over the spliced connection.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';

test('a WebSocket upgrade is spliced through the outbound listener', async () => {
  const server = http.createServer((_req, res) => res.end('plain'));
  const upgraded: Array<{ destroy(): void }> = [];
  server.on('upgrade', (req, socket) => {
    upgraded.push(socket);
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nx-seen-host: ${req.headers.host}\r\n\r\n`);
    socket.on('data', (c: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), c])));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const proxy = await startProxy(proxyConfig({ clusters: [cluster('outbound|80||ws', [{ port }])], virtualHosts: [{ name: 'ws', domains: ['ws'], routes: [forward('ws', 'outbound|80||ws')] }] }));
  try {
    const { res, socket } = await new Promise<{ res: http.IncomingMessage; socket: import('node:net').Socket }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.outboundPort, path: '/chat', headers: { host: 'ws', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } });
      req.on('upgrade', (res, socket) => resolve({ res, socket }));
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    assert.is(res.statusCode, 101);
    assert.is(res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.is(res.headers['x-seen-host'], 'ws');
    const reply = await new Promise<string>((resolve) => {
      socket.once('data', (c: Buffer) => resolve(c.toString()));
      socket.write('hello');
    });
    assert.is(reply, 'echo:hello');
    socket.destroy();
  } finally {
    await proxy.stop(100);
    // Upgraded sockets are no longer the HTTP server's to close.
    for (const s of upgraded) s.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test.run();
