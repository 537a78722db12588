// A stand-in app for trying a filter: answers every request with what it received (method, path,
// headers) as JSON, so you see what the filter let through and what it added. GET /check is a tiny
// authorization service (the callout template asks it): 200 with x-user-id for a request that has
// an x-user header, 403 without.
//
//   node example/app.mjs [port]        (default: $PORT, else 8080; listens on 127.0.0.1)
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`example/app.mjs: the port must be a number from 1 to 65535, got ${JSON.stringify(process.argv[2] ?? process.env.PORT)}`);
  process.exit(2);
}

const server = http.createServer((req, res) => {
  if (req.url === '/check') {
    const user = req.headers['x-user'];
    if (typeof user === 'string' && user !== '') {
      res.writeHead(200, { 'x-user-id': `id-${user}` });
      res.end();
    } else {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('unknown user: send an x-user header\n');
    }
    return;
  }
  req.resume();
  req.on('end', () => {
    const body = `${JSON.stringify({ greeting: 'hello from the app', method: req.method, path: req.url, headers: req.headers }, null, 2)}\n`;
    res.writeHead(200, { 'content-type': 'application/json', server: 'example-app' });
    res.end(body);
  });
});
server.listen(port, '127.0.0.1', () => console.log(`app listening on http://127.0.0.1:${port}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => server.close(() => process.exit(0)));
