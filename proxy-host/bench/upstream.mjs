// The bench's upstream: plain node:http, `GET /` answers 200 with a 100-byte body.
// `GET /__echo` answers the request headers as JSON (the bench's sanity check, never under load).
import http from 'node:http';
import { announceReady, exitWith } from './child-lifecycle.mjs';

const BODY = Buffer.from('{"service":"wasmesh-bench-upstream","ok":true,"pad":"' + 'x'.repeat(44) + '"}\n');
if (BODY.length !== 100) throw new Error(`body is ${BODY.length} bytes`);
const HEADERS = { 'content-type': 'application/json', 'content-length': String(BODY.length) };

const server = http.createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, HEADERS);
    res.end(BODY);
    return;
  }
  if (req.url === '/__echo') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(req.headers));
    return;
  }
  res.writeHead(404, { 'content-length': '0' });
  res.end();
});
// Longer than any pool's idle timeout, so the proxies' keep-alive connections are theirs to close.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(0, '127.0.0.1', () => announceReady({ port: server.address().port }));
exitWith(
  () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
);
