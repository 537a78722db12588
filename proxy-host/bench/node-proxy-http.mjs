// A minimal reverse proxy on node:http only: http.request through a keep-alive Agent, no routing,
// no filters. A reference, not a product.
// Usage: node node-proxy-http.mjs <upstreamPort>
import http from 'node:http';
import { announceReady, exitWith } from './child-lifecycle.mjs';
import { forwardObject } from './hop-by-hop.mjs';

const upstreamPort = Number(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

const server = http.createServer((req, res) => {
  const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: forwardObject(req.headers), agent }, (ur) => {
    res.writeHead(ur.statusCode ?? 502, forwardObject(ur.headers));
    ur.pipe(res);
  });
  up.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`upstream error: ${err.code ?? err.message}\n`);
  });
  req.pipe(up);
});
server.keepAliveTimeout = 65_000;

server.listen(0, '127.0.0.1', () => announceReady({ port: server.address().port }));
exitWith(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(() => r()));
  agent.destroy();
});
