// The mesh benchmark's app: plain node:http answering every request 200 with a 1 KiB body (the size
// issue 15 measured). Listens on PORT (set by `wasmesh run`) or a free port, on loopback, prints
// `BENCH_READY {"port":N}`, and exits on SIGTERM/SIGINT or when its stdin closes (the bench is gone).
import http from 'node:http';
import { announceReady, exitWith } from '../../../proxy-host/bench/child-lifecycle.mjs';

export const BODY_BYTES = 1024;
const BODY = Buffer.alloc(BODY_BYTES, 'x');
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY_BYTES) };

const server = http.createServer((req, res) => {
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
// Longer than any proxy's idle timeout, so pooled upstream connections are the proxies' to close.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => announceReady({ port: server.address().port }));
exitWith(
  () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
);
