// A minimal reverse proxy: node:http server in front of an undici Pool with keep-alive (the same
// client wasmesh's HTTP/1.1 upstream uses), no routing, no filters. A reference, not a product: what
// any Node.js data plane pays before it does anything of its own.
// Usage: node node-proxy-undici.mjs <upstreamPort> [--server-tls cert,key,ca] [--upstream-tls cert,key,ca,servername]
//   --server-tls: listen with TLS and require a client certificate signed by `ca` (a sidecar's inbound side);
//   --upstream-tls: connect upstream with TLS, presenting `cert` and verifying the server against `ca`
//   and `servername` (a sidecar's outbound side). Together, two of them make a mutual-TLS pair.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Pool } from 'undici';
import { announceReady, exitWith } from './child-lifecycle.mjs';
import { forwardObject, forwardRaw } from './hop-by-hop.mjs';

const upstreamPort = Number(process.argv[2]);
const option = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1].split(',');
};
const serverTls = option('--server-tls');
const upstreamTls = option('--upstream-tls');
const pem = (file) => readFileSync(file, 'utf8');

const pool = upstreamTls
  ? new Pool(`https://127.0.0.1:${upstreamPort}`, {
      connections: null,
      pipelining: 1,
      keepAliveTimeout: 4000,
      connect: { cert: pem(upstreamTls[0]), key: pem(upstreamTls[1]), ca: pem(upstreamTls[2]), servername: upstreamTls[3] },
    })
  : new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: null, pipelining: 1, keepAliveTimeout: 4000 });

function fail(res, err) {
  if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end(`upstream error: ${err.code ?? err.message}\n`);
}

function relay(req, res) {
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
}

const server = serverTls
  ? https.createServer({ cert: pem(serverTls[0]), key: pem(serverTls[1]), ca: pem(serverTls[2]), requestCert: true, rejectUnauthorized: true }, relay)
  : http.createServer(relay);
server.keepAliveTimeout = 65_000;

server.listen(0, '127.0.0.1', () => announceReady({ port: server.address().port }));
exitWith(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(() => r()));
  await pool.close();
});
