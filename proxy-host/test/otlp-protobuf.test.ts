// The proxy's hand-written OTLP protobuf against the OpenTelemetry proto definitions in
// schemas/proto/opentelemetry/ (decoded by protobufjs) and against the official definitions (the code
// OpenTelemetry JS generated from opentelemetry-proto): every attribute type a log record carries,
// ids, times, status, and the partial_success a collector answers, including answers that do not parse.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { anyValueOf, attributesOf, otlpDefinitions } from '../../schemas/proto/opentelemetry/otlp.ts';
import { hexOf, officialAnyValueOf, officialAttributesOf, officialDecodeLogsRequest, officialDecodeTraceRequest, officialLookup, type StaticMessage } from '../../schemas/proto/opentelemetry/official.ts';
import { encodeLogsRequest, encodeTraceRequest, readPartialSuccess } from '../src/telemetry/otlp-protobuf.ts';

const defs = otlpDefinitions();

test('spans: ids as bytes, nanosecond times, kind, status only on error, tags cut to maxTagLength, the W3C sampled flag', () => {
  const start = Date.UTC(2026, 0, 2, 3, 4, 5, 6) + 0.25;
  const bytes = encodeTraceRequest(
    [
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', parentSpanId: '', name: 'a/*', kind: 'CLIENT', startMs: start, durationMs: 1.5, tags: { long: 'x'.repeat(40), 'ü': 'ünïcode' }, error: false, localEndpoint: { serviceName: 's' } },
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '1111111111111111', parentSpanId: '00f067aa0ba902b7', name: 'b/*', kind: 'SERVER', startMs: start, durationMs: 0, tags: {}, error: true, localEndpoint: { serviceName: 's' } },
    ],
    'reviews.default',
    16,
  );
  const req = defs.decodeTraceRequest(bytes);
  assert.is(req.resource_spans.length, 1);
  assert.equal(attributesOf(req.resource_spans[0]!.resource!.attributes), { 'service.name': 'reviews.default' });
  const [a, b] = req.resource_spans[0]!.scope_spans[0]!.spans;
  assert.is(a!.trace_id.toString('hex'), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.is(a!.span_id.toString('hex'), '00f067aa0ba902b7');
  assert.is(a!.parent_span_id.length, 0, 'a root span has no parent bytes');
  assert.is(a!.kind, 'SPAN_KIND_CLIENT');
  assert.is(a!.start_time_unix_nano, (BigInt(Date.UTC(2026, 0, 2, 3, 4, 5, 6)) * 1_000_000n + 250_000n).toString());
  assert.is(BigInt(a!.end_time_unix_nano) - BigInt(a!.start_time_unix_nano), 1_500_000n);
  assert.is(a!.status, null, 'UNSET is the absent message');
  assert.is(a!.flags, 1);
  assert.equal(attributesOf(a!.attributes), { long: 'x'.repeat(16), 'ü': 'ünïcode' });
  assert.is(b!.parent_span_id.toString('hex'), '00f067aa0ba902b7');
  assert.is(b!.kind, 'SPAN_KIND_SERVER');
  assert.is(b!.status?.code, 'STATUS_CODE_ERROR');
  assert.equal(b!.attributes, []);
});

test('log records: string, int (negative too), double and large int attributes; body; trace ids only when valid', () => {
  const bytes = encodeLogsRequest(
    [
      { startMs: 1_700_000_000_000, body: 'line', attributes: [['s', 'x'], ['code', 404], ['neg', -7], ['big', 2 ** 40], ['ratio', 0.5]], traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' },
      { startMs: 1_700_000_000_001, body: '', attributes: [], traceId: '0'.repeat(32), spanId: 'nothex' },
    ],
    [['log_name', 'otel_envoy_accesslog']],
    1_700_000_000_500,
  );
  const req = defs.decodeLogsRequest(bytes);
  const [r1, r2] = req.resource_logs[0]!.scope_logs[0]!.log_records;
  assert.equal(attributesOf(r1!.attributes), { s: 'x', code: 404, neg: -7, big: 2 ** 40, ratio: 0.5 });
  assert.is(r1!.attributes.find((a) => a.key === 'code')!.value!.value, 'int_value');
  assert.is(r1!.attributes.find((a) => a.key === 'ratio')!.value!.value, 'double_value');
  assert.is(anyValueOf(r1!.body), 'line');
  assert.is(r1!.time_unix_nano, '1700000000000000000');
  assert.is(r1!.observed_time_unix_nano, '1700000000500000000');
  assert.is(r1!.trace_id.toString('hex'), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.is(r1!.span_id.toString('hex'), '00f067aa0ba902b7');
  assert.is(r2!.trace_id.length, 0, 'an all-zero trace id is left out');
  assert.is(r2!.span_id.length, 0, 'a span id that is not 16 hex digits is left out');
  assert.equal(attributesOf(req.resource_logs[0]!.resource!.attributes), { log_name: 'otel_envoy_accesslog' });
});

test('the official OpenTelemetry definitions read the same spans and log records', () => {
  const start = Date.UTC(2026, 0, 2, 3, 4, 5, 6) + 0.25;
  const spans = encodeTraceRequest(
    [
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', parentSpanId: '', name: 'a/*', kind: 'CLIENT', startMs: start, durationMs: 1.5, tags: { 'http.status_code': '200', 'ü': 'ünïcode' }, error: false, localEndpoint: { serviceName: 's' } },
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '1111111111111111', parentSpanId: '00f067aa0ba902b7', name: 'b/*', kind: 'SERVER', startMs: start, durationMs: 0, tags: {}, error: true, localEndpoint: { serviceName: 's' } },
    ],
    'reviews.default',
    64,
  );
  const req = officialDecodeTraceRequest(spans);
  assert.equal(officialAttributesOf(req.resourceSpans[0]!.resource!.attributes), { 'service.name': 'reviews.default' });
  assert.is(req.resourceSpans[0]!.scopeSpans[0]!.scope!.name, 'wasmesh-proxy');
  const [a, b] = req.resourceSpans[0]!.scopeSpans[0]!.spans;
  assert.is(hexOf(a!.traceId), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.is(hexOf(a!.spanId), '00f067aa0ba902b7');
  assert.is(a!.parentSpanId.length, 0);
  assert.is(a!.kind, 'SPAN_KIND_CLIENT');
  assert.is(a!.flags, 1, 'Span.flags (opentelemetry-proto 1.1): the W3C sampled flag');
  assert.is(a!.startTimeUnixNano, (BigInt(Date.UTC(2026, 0, 2, 3, 4, 5, 6)) * 1_000_000n + 250_000n).toString());
  assert.is(BigInt(a!.endTimeUnixNano) - BigInt(a!.startTimeUnixNano), 1_500_000n);
  assert.is(a!.status, null);
  assert.equal(officialAttributesOf(a!.attributes), { 'http.status_code': '200', 'ü': 'ünïcode' });
  assert.is(hexOf(b!.parentSpanId), '00f067aa0ba902b7');
  assert.is(b!.kind, 'SPAN_KIND_SERVER');
  assert.is(b!.status?.code, 'STATUS_CODE_ERROR');
  // Nothing the official definitions do not know (the generated code skips unknown fields): re-encoded
  // by them, the message is as long as the proxy wrote it.
  const Request = officialLookup('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest') as StaticMessage;
  assert.is(Request.encode(Request.decode(spans)).finish().length, spans.length);

  const logs = encodeLogsRequest(
    [{ startMs: 1_700_000_000_000, body: 'line', attributes: [['s', 'x'], ['code', 404], ['neg', -7], ['big', 2 ** 40], ['ratio', 0.5]], traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }],
    [['log_name', 'otel_envoy_accesslog'], ['node_name', 'sidecar~r.default']],
    1_700_000_000_500,
  );
  const l = officialDecodeLogsRequest(logs);
  const r = l.resourceLogs[0]!.scopeLogs[0]!.logRecords[0]!;
  assert.equal(officialAttributesOf(r.attributes), { s: 'x', code: 404, neg: -7, big: 2 ** 40, ratio: 0.5 });
  assert.equal(r.attributes.map((kv) => kv.value?.value), ['stringValue', 'intValue', 'intValue', 'intValue', 'doubleValue']);
  assert.is(officialAnyValueOf(r.body), 'line');
  assert.is(r.timeUnixNano, '1700000000000000000');
  assert.is(r.observedTimeUnixNano, '1700000000500000000');
  assert.is(hexOf(r.traceId), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.is(hexOf(r.spanId), '00f067aa0ba902b7');
  assert.equal(officialAttributesOf(l.resourceLogs[0]!.resource!.attributes), { log_name: 'otel_envoy_accesslog', node_name: 'sidecar~r.default' });
  const LogsRequest = officialLookup('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest') as StaticMessage;
  assert.is(LogsRequest.encode(LogsRequest.decode(logs)).finish().length, logs.length);
});

test('partial_success: rejected count and message read; an empty, absent or malformed answer is undefined', () => {
  assert.equal(readPartialSuccess(defs.encodeTraceResponse({ partial_success: { rejected_spans: 300, error_message: 'quota' } })), { rejected: 300, message: 'quota' });
  assert.is(readPartialSuccess(defs.encodeTraceResponse({})), undefined);
  assert.is(readPartialSuccess(Buffer.alloc(0)), undefined);
  assert.is(readPartialSuccess(Buffer.from([0x0a, 0x05, 0x08])), undefined, 'a length past the end');
  assert.is(readPartialSuccess(Buffer.from([0x0f])), undefined, 'an unknown wire type');
  assert.is(readPartialSuccess(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), undefined, 'a varint that never ends');
});

test('a batch of 512 spans with every Istio tag stays one message the protos read back whole', () => {
  const tags: Record<string, string> = {};
  for (let i = 0; i < 20; i++) tags[`tag.${i}`] = `value-${i}-${'v'.repeat(50)}`;
  const spans = Array.from({ length: 512 }, (_, i) => ({ traceId: i.toString(16).padStart(32, '1'), spanId: i.toString(16).padStart(16, '2'), parentSpanId: '', name: `s${i}`, kind: 'SERVER' as const, startMs: Date.now(), durationMs: i, tags, error: i % 2 === 0, localEndpoint: { serviceName: 's' } }));
  const bytes = encodeTraceRequest(spans, 'svc', 256);
  const got = defs.decodeTraceRequest(bytes).resource_spans[0]!.scope_spans[0]!.spans;
  assert.is(got.length, 512);
  assert.is(got[511]!.name, 's511');
  assert.is(got[300]!.attributes.length, 20);
  assert.is(got.filter((s) => s.status?.code === 'STATUS_CODE_ERROR').length, 256);
});

test.run();
