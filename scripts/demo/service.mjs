// One tiny Bookinfo-like service for `wasmesh demo`, chosen by WASMESH_SERVICE (productpage, details,
// reviews, ratings, traffic) and WASMESH_VERSION. It listens on PORT and calls other services through
// its sidecar: plain HTTP to WASMESH_OUTBOUND with the Host header of the target service.
import http from 'node:http';

const service = process.env.WASMESH_SERVICE ?? 'details';
const version = process.env.WASMESH_VERSION ?? 'v1';
const port = Number(process.env.PORT ?? 9080);
const outbound = new URL(process.env.WASMESH_OUTBOUND ?? 'http://127.0.0.1:15001');
// Headers a mesh app propagates so that routing by user and tracing work across hops.
const PROPAGATE = ['end-user', 'x-request-id', 'traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled'];

/** GET http://<host><path> through the sidecar; resolves to { status, body } (body parsed when JSON). */
function call(host, path, incoming) {
  const headers = { host };
  for (const h of PROPAGATE) if (incoming?.[h] !== undefined) headers[h] = incoming[h];
  return new Promise((resolve) => {
    const req = http.request({ host: outbound.hostname, port: outbound.port, path, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON (an error page from the proxy)
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

const handlers = {
  async details() {
    return { status: 200, body: { service, version, book: { id: 0, author: 'William Shakespeare', year: 1595, type: 'paperback', pages: 200 } } };
  },
  async ratings() {
    return { status: 200, body: { service, version, ratings: { reviewer1: 5, reviewer2: 4 } } };
  },
  async reviews(req) {
    const body = { service, version, reviews: [{ reviewer: 'reviewer1', text: 'An extremely entertaining play by Shakespeare.' }, { reviewer: 'reviewer2', text: 'Absolutely fun and entertaining.' }] };
    if (version !== 'v1') {
      const r = await call('ratings', '/ratings/0', req.headers);
      body.ratings = r.status === 200 ? { ...r.body.ratings, color: version === 'v2' ? 'black' : 'red' } : { error: `ratings answered ${r.status}` };
    }
    return { status: 200, body };
  },
  async productpage(req) {
    // The JSON API the demo protects with a JWT (RequestAuthentication + AuthorizationPolicy): the
    // sidecar only lets requests with a verified token through, and tells who it was (x-jwt-sub).
    if (req.url.startsWith('/api/')) {
      return { status: 200, body: { service, version, path: req.url, user: req.headers['x-jwt-sub'] ?? null, products: [{ id: 0, title: 'The Comedy of Errors' }] } };
    }
    const [details, reviews] = await Promise.all([call('details', '/details/0', req.headers), call('reviews', '/reviews/0', req.headers)]);
    const ok = details.status === 200 && reviews.status === 200;
    return {
      status: ok ? 200 : 502,
      body: { service, version, user: req.headers['end-user'] ?? null, details: details.status === 200 ? details.body : { error: `details answered ${details.status}` }, reviews: reviews.status === 200 ? reviews.body : { error: `reviews answered ${reviews.status}` } },
    };
  },
  async traffic() {
    return { status: 200, body: { service, sent, ok, failed } };
  },
};

let sent = 0;
let ok = 0;
let failed = 0;
const handler = handlers[service];
if (!handler) {
  process.stderr.write(`demo service: unknown WASMESH_SERVICE ${service}\n`);
  process.exit(2);
}

const server = http.createServer(async (req, res) => {
  const { status, body } = await handler(req);
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
});
server.keepAliveTimeout = 2000;
server.listen(port, '127.0.0.1');

// The traffic generator: a few requests per second to productpage, as users "alice" and "jason".
if (service === 'traffic') {
  const rate = Number(process.env.DEMO_RPS ?? 3);
  const users = ['alice', 'jason', 'bob'];
  setInterval(() => {
    const user = users[sent % users.length];
    sent += 1;
    void call('productpage', '/productpage', { 'end-user': user }).then((r) => (r.status === 200 ? (ok += 1) : (failed += 1)));
  }, Math.max(50, Math.round(1000 / rate)));
}

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
