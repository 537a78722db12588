// A minimal reverse proxy: node:http server in front of an undici Pool with keep-alive (the same
// client wasmesh's HTTP/1.1 upstream uses), no routing, no filters. A reference, not a product.
// Usage: node node-proxy-undici.mjs <upstreamPort>
import http from 'node:http';
import { Pool } from 'undici';
import { announceReady, exitWith } from './child-lifecycle.mjs';
import { forwardObject, forwardRaw } from './hop-by-hop.mjs';

const upstreamPort = Number(process.argv[2]);
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: null, pipelining: 1, keepAliveTimeout: 4000 });

function fail(res, err) {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end(`upstream error: ${err.code ?? err.message}\n`);
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool
    .stream(
      { path: req.url, method: req.method, headers: forwardRaw(req.rawHeaders), body: hasBody ? req : null },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, forwardObject(headers));
        return res;
      },
    )
    .catch((err) => fail(res, err));
});
server.keepAliveTimeout = 65_000;

server.listen(0, '127.0.0.1', () => announceReady({ port: server.address().port }));
exitWith(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(() => r()));
  await pool.close();
});
