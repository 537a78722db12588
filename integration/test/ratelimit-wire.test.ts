// The lyft/ratelimit and Envoy compatibility claim, as far as it can be tested without their binaries:
// the messages on the wire are encoded and decoded here by hand from the field numbers of Envoy's
// official rls.proto (envoy/service/ratelimit/v3/rls.proto and envoy/extensions/common/ratelimit/v3/
// ratelimit.proto, which lyft/ratelimit compiles through go-control-plane), not with this repository's
// copy of the .proto, so a mistake in that copy shows here.
//   1. wasmesh's service answers a RateLimitRequest framed and encoded as Envoy's gRPC client sends it.
//   2. The sidecar's policy filter sends what lyft/ratelimit decodes (domain, descriptors of non-empty
//      entries, on the method path with gRPC's headers), and takes lyft's answers (OK, OVER_LIMIT
//      with its statuses and headers) as Envoy's filter would.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http2, { type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { parseDocuments } from '../../mesh/src/documents.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import type { RateLimitServiceConfig } from '../../mesh/src/translate/ratelimit.ts';
import { startRateLimitServer, type RateLimitServer } from '../../orchestrator/src/ratelimit/server.ts';
import { TestRedis, ensureRedis, reportRedisSkip } from '../../orchestrator/test/support/redis.ts';
import { policyWasm } from '../../filters/policy/test/support.ts';
import type { Proxy } from '../../proxy-host/src/proxy.ts';
import { startProxy } from '../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';

const METHOD_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

// ---------------------------------------------------------------------------------------------
// Protocol Buffers by hand: varints and length-delimited fields, no library, no .proto.

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}
const tag = (field: number, wire: number) => varint((field << 3) | wire);
const uintField = (field: number, n: number) => Buffer.from([...tag(field, 0), ...varint(n)]);
const bytesField = (field: number, body: Buffer | string) => {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return Buffer.concat([Buffer.from([...tag(field, 2), ...varint(b.length)]), b]);
};

type Fields = Map<number, (number | Buffer)[]>;

/** Decodes one message level: field number -> values (varints as numbers, length-delimited as bytes). */
function decode(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let i = 0;
  const readVarint = (): number => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[i++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return Number(result);
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const field = key >> 3;
    const wire = key & 7;
    let value: number | Buffer;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const len = readVarint();
      value = buf.subarray(i, i + len);
      i += len;
    } else throw new Error(`unexpected wire type ${wire} for field ${field}`);
    const list = fields.get(field) ?? [];
    list.push(value);
    fields.set(field, list);
  }
  return fields;
}
const str = (f: Fields, n: number): string => ((f.get(n)?.[0] as Buffer | undefined) ?? Buffer.alloc(0)).toString('utf8');
const num = (f: Fields, n: number): number => (f.get(n)?.[0] as number | undefined) ?? 0;
const msgs = (f: Fields, n: number): Fields[] => ((f.get(n) ?? []) as Buffer[]).map(decode);

/** RateLimitRequest { domain = 1; repeated RateLimitDescriptor descriptors = 2; uint32 hits_addend = 3; } */
function encodeRequest(domain: string, descriptors: { entries: [string, string][]; limit?: { requestsPerUnit: number; unit: number }; hitsAddend?: number }[], hitsAddend = 0): Buffer {
  const parts = [bytesField(1, domain)];
  for (const d of descriptors) {
    // RateLimitDescriptor { repeated Entry entries = 1 { key = 1; value = 2 }; RateLimitOverride limit = 2
    // { requests_per_unit = 1; unit = 2 }; google.protobuf.UInt64Value hits_addend = 3 { value = 1 } }
    const inner = d.entries.map(([k, v]) => bytesField(1, Buffer.concat([bytesField(1, k), bytesField(2, v)])));
    if (d.limit) inner.push(bytesField(2, Buffer.concat([uintField(1, d.limit.requestsPerUnit), uintField(2, d.limit.unit)])));
    if (d.hitsAddend !== undefined) inner.push(bytesField(3, uintField(1, d.hitsAddend)));
    parts.push(bytesField(2, Buffer.concat(inner)));
  }
  if (hitsAddend) parts.push(uintField(3, hitsAddend));
  return Buffer.concat(parts);
}

const frame = (message: Buffer) => Buffer.concat([Buffer.from([0, ...[24, 16, 8, 0].map((s) => (message.length >>> s) & 0xff)]), message]);

const CODE = { UNKNOWN: 0, OK: 1, OVER_LIMIT: 2 };
const UNIT = { SECOND: 1, MINUTE: 2, HOUR: 3, DAY: 4 };

// ---------------------------------------------------------------------------------------------

const redisBin = ensureRedis();
let redis: TestRedis;
let service: RateLimitServer;
let app: TestServer;
const proxies: Proxy[] = [];
const run = `${process.pid}-${Date.now()}`;

const CONFIG: RateLimitServiceConfig = {
  domains: {
    edge: [
      { key: 'remote_address', rateLimit: { requestsPerUnit: 2, unit: 'MINUTE', name: 'per-client' } },
      { key: 'client_id', value: 'bulk', rateLimit: { requestsPerUnit: 5, unit: 'HOUR' } },
    ],
  },
};

/** One unary call as Envoy's gRPC client makes it: raw HTTP/2, its headers, a length-prefixed message. */
function envoyCall(port: number, message: Buffer, path = METHOD_PATH): Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      ':authority': 'rate_limit_cluster',
      ':scheme': 'http',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '20m',
      'x-envoy-internal': 'true',
      'x-envoy-expected-rq-timeout-ms': '20',
    });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    stream.on('error', reject);
    stream.end(frame(message));
  });
}

function responseOf(body: Buffer): Fields {
  assert.is(body[0], 0, 'not compressed');
  assert.is(body.readUInt32BE(1), body.length - 5, 'one length-prefixed message');
  return decode(body.subarray(5));
}

if (!redisBin.bin) {
  reportRedisSkip('the rate-limit wire tests (integration/test/ratelimit-wire.test.ts)', redisBin.reason);
} else {
  test.before(async () => {
    await policyWasm();
    redis = await TestRedis.start(redisBin.bin!);
    service = await startRateLimitServer({ redisUrl: redis.url, config: CONFIG, log: () => {} });
    app = await startHttp1('app');
  });

  test.after(async () => {
    for (const p of proxies) await p.stop(100);
    await app?.close();
    await service?.close();
    await redis?.stop();
  });

  test('the service answers a request encoded as Envoy encodes it: statuses, limits, headers, OVER_LIMIT on the third', async () => {
    const client = `10.0.${process.pid % 250}.${Date.now() % 250}`;
    const message = encodeRequest('edge', [{ entries: [['remote_address', client]] }]);
    const codes: number[] = [];
    let last: Fields | undefined;
    for (let i = 0; i < 3; i++) {
      const r = await envoyCall(service.port, message);
      assert.is(r.headers[':status'], 200);
      assert.match(String(r.headers['content-type']), /^application\/grpc/);
      assert.is(r.trailers['grpc-status'], '0');
      last = responseOf(r.body);
      codes.push(num(last, 1)); // overall_code = 1
    }
    assert.equal(codes, [CODE.OK, CODE.OK, CODE.OVER_LIMIT]);
    const [status] = msgs(last!, 2); // statuses = 2
    assert.is(num(status!, 1), CODE.OVER_LIMIT); // code = 1
    const [limit] = msgs(status!, 2); // current_limit = 2
    assert.is(num(limit!, 1), 2); // requests_per_unit = 1
    assert.is(num(limit!, 2), UNIT.MINUTE); // unit = 2
    assert.is(str(limit!, 3), 'per-client'); // name = 3
    assert.is(num(status!, 3), 0); // limit_remaining = 3
    const [reset] = msgs(status!, 4); // duration_until_reset = 4 (Duration seconds = 1)
    assert.ok(num(reset!, 1) >= 1 && num(reset!, 1) <= 60, `reset in ${num(reset!, 1)} s`);
    const headers = Object.fromEntries(msgs(last!, 3).map((h) => [str(h, 1), str(h, 2)])); // response_headers_to_add = 3 (HeaderValue key = 1, value = 2)
    assert.equal(headers, { 'RateLimit-Limit': '2', 'RateLimit-Remaining': '0', 'RateLimit-Reset': String(num(reset!, 1)) });
  });

  test('Envoy\'s descriptor fields: a limit override, a descriptor hits_addend, the request hits_addend; a descriptor without a limit is OK', async () => {
    const id = `c-${run}`;
    // limit = 2: 3 per hour instead of the service's; hits_addend = 3 on the descriptor: 2 hits per call.
    const override = encodeRequest('edge', [{ entries: [['client_id', id]], limit: { requestsPerUnit: 3, unit: UNIT.HOUR }, hitsAddend: 2 }]);
    const first = responseOf((await envoyCall(service.port, override)).body);
    assert.is(num(first, 1), CODE.OK);
    assert.is(num(msgs(first, 2)[0]!, 3), 1, '3 - 2 hits remain 1');
    assert.is(num(responseOf((await envoyCall(service.port, override)).body), 1), CODE.OVER_LIMIT);
    // The request's hits_addend (field 3 of RateLimitRequest) on the configured 5/hour of client_id=bulk.
    const bulk = encodeRequest('edge', [{ entries: [['client_id', 'bulk']] }], 4);
    const r = responseOf((await envoyCall(service.port, bulk)).body);
    assert.is(num(r, 1), CODE.OK);
    assert.is(num(msgs(r, 2)[0]!, 3), 1, '5 - 4 = 1 remaining');
    // Nothing configured for this key: OK, and a status without current_limit.
    const unknown = responseOf((await envoyCall(service.port, encodeRequest('edge', [{ entries: [['no_such_key', 'x']] }]))).body);
    assert.is(num(unknown, 1), CODE.OK);
    assert.is(msgs(unknown, 2).length, 1);
    assert.is(msgs(msgs(unknown, 2)[0]!, 2).length, 0, 'no current_limit');
  });

  test('gRPC errors Envoy can read: an empty domain is INVALID_ARGUMENT, an unknown method UNIMPLEMENTED', async () => {
    const bad = await envoyCall(service.port, encodeRequest('', [{ entries: [['remote_address', '10.0.0.9']] }]));
    assert.is(bad.headers[':status'], 200);
    assert.is(bad.headers['grpc-status'] ?? bad.trailers['grpc-status'], '3');
    assert.match(decodeURIComponent(String(bad.headers['grpc-message'] ?? bad.trailers['grpc-message'])), /domain/);
    const other = await envoyCall(service.port, encodeRequest('edge', [{ entries: [['remote_address', '10.0.0.9']] }]), '/envoy.service.ratelimit.v2.RateLimitService/ShouldRateLimit');
    assert.is(other.headers['grpc-status'] ?? other.trailers['grpc-status'], '12');
  });

  // ---------------------------------------------------------------------------------------------
  // The sidecar's side: what it sends, and how it takes lyft's answers.

  interface Captured {
    headers: IncomingHttpHeaders;
    message: Fields;
  }

  /** A stand-in for lyft/ratelimit on raw HTTP/2: records each call, answers with `answer(call)` (hand-encoded). */
  async function lyftStandIn(answer: (c: Captured) => Buffer): Promise<{ port: number; calls: Captured[]; close(): Promise<void> }> {
    const calls: Captured[] = [];
    const server = http2.createServer();
    const sessions = new Set<http2.Http2Session>();
    server.on('session', (session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        const call = { headers, message: decode(body.subarray(5, 5 + body.readUInt32BE(1))) };
        assert.is(body[0], 0);
        calls.push(call);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(frame(answer(call)));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as AddressInfo).port,
      calls,
      // The sidecar keeps its HTTP/2 session open: close it from this side.
      close: () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        for (const session of sessions) session.destroy();
        return closed;
      },
    };
  }

  async function sidecarTo(port: number): Promise<Proxy> {
    const text = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratelimit, namespace: default }
spec:
  hosts: [ratelimit.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8081, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${port} } }]
---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: quota, namespace: default }
spec:
  global:
    service: { host: ratelimit, port: 8081 }
    domain: edge
    timeout: 1s
    limits:
      - { name: per-client, descriptors: [{ remoteAddress: {} }], requestsPerUnit: 10, unit: MINUTE }
      - { name: per-user, descriptors: [{ header: { name: x-user, key: user } }, { genericKey: { value: api } }], requestsPerUnit: 10, unit: MINUTE }
`;
    const docs = parseDocuments(text, 'mesh.yaml').documents;
    const v = validateDocuments(docs);
    assert.ok(v.ok, formatErrors(v.errors));
    const proxy = await startProxy(translateProxyConfig(docs, { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' }, { telemetry: false }), app.port);
    proxies.push(proxy);
    return proxy;
  }

  /** RateLimitResponse as lyft/ratelimit encodes it: overall_code, one DescriptorStatus per descriptor, headers. */
  function lyftAnswer(code: number, descriptors: number, resetSeconds = 42): Buffer {
    const status = Buffer.concat([
      uintField(1, code),
      bytesField(2, Buffer.concat([uintField(1, 10), uintField(2, UNIT.MINUTE)])),
      uintField(3, code === CODE.OVER_LIMIT ? 0 : 9),
      bytesField(4, uintField(1, resetSeconds)),
    ]);
    const parts = [uintField(1, code)];
    for (let i = 0; i < descriptors; i++) parts.push(bytesField(2, status));
    parts.push(bytesField(3, Buffer.concat([bytesField(1, 'x-lyft-header'), bytesField(2, 'seen')])));
    return Buffer.concat(parts);
  }

  test('the sidecar sends what lyft/ratelimit decodes: the method path, gRPC headers, domain, one descriptor per limit of non-empty entries', async () => {
    const lyft = await lyftStandIn((c) => lyftAnswer(CODE.OK, msgs(c.message, 2).length));
    try {
      const proxy = await sidecarTo(lyft.port);
      const res = await request(proxy.inboundPort, { path: '/x', headers: { host: 'web', 'x-user': 'alice' } });
      assert.is(res.status, 200, res.body);
      assert.is(res.headers['x-lyft-header'], 'seen', 'response_headers_to_add reach the client');
      assert.is(lyft.calls.length, 1);
      const { headers, message } = lyft.calls[0]!;
      assert.is(headers[':method'], 'POST');
      assert.is(headers[':path'], METHOD_PATH);
      assert.is(headers['content-type'], 'application/grpc');
      assert.is(headers.te, 'trailers');
      assert.match(String(headers['grpc-timeout']), /^\d+m$/);
      assert.is(str(message, 1), 'edge'); // domain
      assert.is(num(message, 3), 0, 'no hits_addend: lyft counts 1');
      const descriptors = msgs(message, 2).map((d) => msgs(d, 1).map((e) => [str(e, 1), str(e, 2)]));
      assert.equal(descriptors, [
        [['wasmesh_limit', 'default.quota.per-client'], ['remote_address', '127.0.0.1']],
        [['wasmesh_limit', 'default.quota.per-user'], ['user', 'alice'], ['generic_key', 'api']],
      ]);
      for (const d of descriptors) for (const [k, v] of d) assert.ok(k.length > 0 && v.length > 0, 'Envoy requires non-empty keys and values (validate rules min_len 1)');
      // Without the header, the per-user descriptor is left out (as Envoy's request_headers action does).
      await request(proxy.inboundPort, { path: '/x', headers: { host: 'web' } });
      assert.equal(msgs(lyft.calls[1]!.message, 2).map((d) => str(msgs(d, 1)[0]!, 2)), ['default.quota.per-client']);
    } finally {
      await lyft.close();
    }
  });

  test('the sidecar takes lyft\'s OVER_LIMIT as Envoy does: 429 with retry-after from duration_until_reset and the answer\'s headers', async () => {
    const lyft = await lyftStandIn((c) => lyftAnswer(CODE.OVER_LIMIT, msgs(c.message, 2).length, 42));
    try {
      const proxy = await sidecarTo(lyft.port);
      const res = await request(proxy.inboundPort, { path: '/x', headers: { host: 'web', 'x-user': 'bob' } });
      assert.is(res.status, 429);
      assert.is(res.headers['retry-after'], '42');
      assert.is(res.headers['x-ratelimit-limit'], '10');
      assert.is(res.headers['x-ratelimit-remaining'], '0');
      assert.is(res.headers['x-lyft-header'], 'seen');
      assert.is(app.received.filter((r) => r.headers['x-user'] === 'bob').length, 0, 'the app never saw it');
    } finally {
      await lyft.close();
    }
  });
}

test.run();
