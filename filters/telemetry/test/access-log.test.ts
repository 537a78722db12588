// The telemetry filter's access log (through a foreign function the harness offers, or logged when
// the host has none), the host sink (proxy-host/src/telemetry-sinks.ts), and configuration errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness, WasmeshWasmError, WasmResult } from '../../../wasm/src/index.ts';
import { ACCESS_LOG_FOREIGN_FUNCTION, createTelemetryForeignFunctions } from '../../../proxy-host/src/telemetry-sinks.ts';
import { ensureBuilt, loadSide, peerHeader, PEER_HEADER, PRODUCTPAGE, REVIEWS, WASM } from './support/telemetry.ts';

test.before(async () => {
  await ensureBuilt();
});

const REQUEST = {
  ':method': 'POST',
  ':path': '/reviews/1?x=1',
  ':authority': 'reviews:9080',
  ':scheme': 'http',
  'user-agent': 'curl/8.5',
  'x-forwarded-for': '10.0.0.1',
  'x-request-id': 'abc-123',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  'content-type': 'text/plain',
};

async function withRecords(side: 'inbound' | 'outbound', fn: (h: FilterHarness, records: Array<Record<string, unknown>>) => Promise<void>, configuration?: object): Promise<void> {
  const records: Array<Record<string, unknown>> = [];
  const w = side === 'outbound' ? PRODUCTPAGE : REVIEWS;
  const h = await loadSide(side, w, {
    foreignFunctions: createTelemetryForeignFunctions((r) => records.push(r as Record<string, unknown>)),
    streamInfo: { sourceAddress: '10.0.0.1:40000', destinationAddress: '10.0.0.2:9080', protocol: 'HTTP/1.1', getProperty: (p) => (p.join('.') === 'upstream.address' ? '10.0.0.9:9080' : p.join('.') === 'xds.cluster_name' ? 'outbound|9080||reviews.default.svc.cluster.local' : undefined) },
    configuration,
  });
  try {
    await fn(h, records);
  } finally {
    await h.close();
  }
}

test('one JSON record per request through wasmesh_access_log, with Istio fields, workloads and trace id', async () => {
  await withRecords('outbound', async (h, records) => {
    await h.run({
      request: { headers: REQUEST, body: 'hello' },
      response: { headers: { ':status': '201', [PEER_HEADER]: peerHeader(REVIEWS) }, body: 'created!' },
    });
    assert.is(records.length, 1);
    const r = records[0];
    assert.match(String(r.start_time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(String(r.start_time)) - Date.now()) < 60_000, 'start_time is now');
    assert.equal(
      { ...r, start_time: undefined, duration: undefined },
      {
        start_time: undefined,
        method: 'POST',
        path: '/reviews/1?x=1',
        protocol: 'HTTP/1.1',
        response_code: 201,
        response_flags: '-',
        bytes_received: 5,
        bytes_sent: 8,
        duration: undefined,
        upstream_host: '10.0.0.9:9080',
        upstream_cluster: 'outbound|9080||reviews.default.svc.cluster.local',
        x_forwarded_for: '10.0.0.1',
        user_agent: 'curl/8.5',
        request_id: 'abc-123',
        authority: 'reviews:9080',
        downstream_remote_address: '10.0.0.1:40000',
        downstream_local_address: '10.0.0.2:9080',
        reporter: 'source',
        source_workload: 'productpage',
        source_namespace: 'default',
        source_app: 'productpage',
        source_version: 'v1',
        source_principal: 'unknown',
        destination_workload: 'reviews',
        destination_namespace: 'default',
        destination_app: 'reviews',
        destination_version: 'v2',
        destination_principal: 'unknown',
        destination_service: 'reviews.default.svc.cluster.local',
        destination_service_name: 'reviews',
        request_protocol: 'http',
        grpc_status: null,
        connection_security_policy: 'unknown',
        trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
        span_id: '00f067aa0ba902b7',
      },
    );
    assert.type(r.duration, 'number');
    assert.ok((r.duration as number) >= 0);
  });
});

test('inbound records name the caller from the exchange, and the trace the filter created', async () => {
  await withRecords('inbound', async (h, records) => {
    const result = await h.run({
      request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'reviews', [PEER_HEADER]: peerHeader(PRODUCTPAGE) } },
      response: { headers: { ':status': '200' } },
    });
    const r = records[0];
    assert.is(r.reporter, 'destination');
    assert.is(r.source_workload, 'productpage');
    assert.is(r.destination_workload, 'reviews');
    assert.is(r.connection_security_policy, 'none');
    const traceparent = String(result.request?.headers.traceparent);
    assert.is(r.trace_id, traceparent.slice(3, 35));
    assert.is(r.request_id, result.request?.headers['x-request-id']);
  });
});

test('field values are JSON-escaped (quotes, backslashes, tabs) and kept valid UTF-8', async () => {
  await withRecords('outbound', async (h, records) => {
    await h.run({ request: { headers: { ...REQUEST, 'user-agent': 'a "quoted"\\ agent\t', ':path': '/caf\u00e9' } }, response: { headers: { ':status': '200' } } });
    assert.is(records[0].user_agent, 'a "quoted"\\ agent\t');
    assert.is(records[0].path, '/caf\ufffd', 'a byte that is not UTF-8 becomes U+FFFD, so the record stays valid JSON');
  });
});

test('accessLog: false writes no record; metrics keep working', async () => {
  await withRecords(
    'outbound',
    async (h, records) => {
      await h.run({ request: { headers: REQUEST }, response: { headers: { ':status': '200' } } });
      assert.is(records.length, 0);
      assert.ok(h.metricsSnapshot().some((m) => m.name === 'istio_requests_total'));
    },
    { accessLog: false },
  );
});

test('without the foreign function (NotFound) the record is logged at info level', async () => {
  const h = await loadSide('outbound', PRODUCTPAGE);
  try {
    await h.run({ request: { headers: REQUEST }, response: { headers: { ':status': '200' } } });
    const line = h.logs.find((l) => l.message.startsWith('access log: '));
    assert.ok(line, 'logged');
    assert.is(line.level, 'info');
    const record = JSON.parse(line.message.slice('access log: '.length));
    assert.is(record.request_id, 'abc-123');
    assert.is(record.reporter, 'source');
  } finally {
    await h.close();
  }
});

test('a sink that fails is reported once at warn level, and the request is unaffected', async () => {
  const failing = new Map([[ACCESS_LOG_FOREIGN_FUNCTION, () => WasmResult.InternalFailure]]);
  const h = await loadSide('outbound', PRODUCTPAGE, { foreignFunctions: failing });
  try {
    for (let i = 0; i < 3; i++) {
      const result = await h.run({ request: { headers: REQUEST }, response: { headers: { ':status': '200' } } });
      assert.is(result.response?.headers[':status'], '200');
    }
    const warnings = h.logs.filter((l) => l.level === 'warn' && l.message.includes('wasmesh_access_log'));
    assert.is(warnings.length, 1);
    assert.equal(h.plugin.state, 'running');
  } finally {
    await h.close();
  }
});

// ---- the host sink ---------------------------------------------------------------------------

test('createTelemetryForeignFunctions: a JSON object goes to write(); anything else is BadArgument', () => {
  const written: object[] = [];
  const fns = createTelemetryForeignFunctions((r) => written.push(r));
  const fn = fns.get(ACCESS_LOG_FOREIGN_FUNCTION)!;
  assert.ok(fn);
  const result = fn(Buffer.from('{"a":1,"b":"x"}'));
  assert.instance(result, Uint8Array);
  assert.is((result as Uint8Array).length, 0);
  assert.equal(written, [{ a: 1, b: 'x' }]);
  for (const bad of ['', 'not json', '[1,2]', 'null', '"s"', '{"a":', Buffer.from([0xff, 0xfe, 0x7b, 0x7d])]) {
    assert.is(fn(typeof bad === 'string' ? Buffer.from(bad) : bad), WasmResult.BadArgument, `refuses ${String(bad)}`);
  }
  assert.is(fn(Buffer.from(`{"a":"${'x'.repeat(70_000)}"}`)), WasmResult.BadArgument, 'too large');
  const throwing = createTelemetryForeignFunctions(() => {
    throw new Error('disk full');
  }).get(ACCESS_LOG_FOREIGN_FUNCTION)!;
  assert.is(throwing(Buffer.from('{}')), WasmResult.InternalFailure);
  assert.is(written.length, 1);
});

// ---- configuration ---------------------------------------------------------------------------

async function configureError(configuration: string): Promise<string> {
  try {
    const h = await FilterHarness.load(WASM, { rootId: 'telemetry', configuration });
    await h.close();
  } catch (err) {
    assert.instance(err, WasmeshWasmError);
    return (err as Error).message;
  }
  throw new Error(`configuration ${configuration} was accepted`);
}

test('configuration: defaults, switches and null', async () => {
  for (const configuration of ['', '{}', '{"metrics": true, "accessLog": false}', ' { "accessLog" : null } ']) {
    const h = await FilterHarness.load(WASM, { rootId: 'telemetry', configuration });
    await h.close();
  }
});

test('configuration errors: on_configure fails and the log names the field', async () => {
  const cases: Array<[string, string]> = [
    ['{"accessLog": 1}', 'accessLog: expected true, false or null (at line 1, column 15)'],
    ['{"metrics": "yes"}', 'metrics: expected true, false or null'],
    ['{"metrics": truex}', 'metrics: expected true, false or null'],
    ['{"sampling": 1}', 'sampling: unknown field (expected one of "metrics", "accessLog")'],
    ['{"metrics": true, "metrics": false}', 'metrics: listed twice'],
    ['{"metrics": true', 'metrics: expected \',\' or \'}\' after the value'],
    ['[]', '(configuration): expected a JSON object'],
    ['{"metrics": true} x', '(configuration): unexpected text after the configuration object'],
  ];
  for (const [configuration, expected] of cases) {
    const message = await configureError(configuration);
    assert.ok(message.includes('proxy_on_configure returned false'), message);
    assert.ok(message.includes(`telemetry: invalid plugin configuration: ${expected}`), `${configuration}: ${message}`);
  }
});

test.run();
