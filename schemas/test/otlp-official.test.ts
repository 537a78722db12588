// Our copy of opentelemetry-proto (schemas/proto/opentelemetry/, which the tests' collectors and the
// demo's receiver load) against the official definitions (the code the OpenTelemetry JS project generated
// from opentelemetry-proto, schemas/proto/opentelemetry/official.ts). Every message, field, enum value and
// service method of our copy, walked with protobufjs reflection, must exist in the official definitions
// with the same name, number and type: each field is written alone by our definition and read back by the
// official one, which puts it under the same name with the same value only if the number and the wire type
// agree; a value is chosen per type so that a different type reads differently (a negative int32 that
// sint32 would read otherwise, a varint that fixed32 cannot read, bytes that are not a string...).
import protobuf from 'protobufjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OTLP_PROTO_DIR } from '../proto/opentelemetry/otlp.ts';
import { officialLookup, type StaticMessage } from '../proto/opentelemetry/official.ts';

const FILES = ['opentelemetry/proto/collector/trace/v1/trace_service.proto', 'opentelemetry/proto/collector/logs/v1/logs_service.proto'];

function loadOurs(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${OTLP_PROTO_DIR}/${target}`;
  root.loadSync(FILES);
  root.resolveAll();
  return root;
}

const ours = loadOurs();

function walk(ns: protobuf.NamespaceBase, out: protobuf.ReflectionObject[] = []): protobuf.ReflectionObject[] {
  for (const o of ns.nestedArray) {
    out.push(o);
    if (o instanceof protobuf.Namespace) walk(o, out);
  }
  return out;
}
const all = walk(ours);
const types = all.filter((o): o is protobuf.Type => o instanceof protobuf.Type);
const enums = all.filter((o): o is protobuf.Enum => o instanceof protobuf.Enum);
const services = all.filter((o): o is protobuf.Service => o instanceof protobuf.Service);
const name = (o: protobuf.ReflectionObject) => o.fullName.slice(1);

/** A value of the field's type that no other type reads back the same; messages filled to a depth. */
function sample(field: protobuf.Field, depth: number): unknown {
  const one = (): unknown => {
    if (field.resolvedType instanceof protobuf.Enum) {
      const values = Object.keys(field.resolvedType.values);
      return values[values.length - 1]; // the highest: non-zero, so it is written
    }
    if (field.resolvedType instanceof protobuf.Type) return filled(field.resolvedType, depth + 1);
    switch (field.type) {
      case 'double': return 1.5;
      case 'float': return 1.5;
      case 'int32': case 'sint32': case 'sfixed32': return -7;
      case 'uint32': case 'fixed32': return 300;
      case 'int64': case 'sint64': case 'sfixed64': return '-1234567890123';
      case 'uint64': case 'fixed64': return '1700000000000250001';
      case 'bool': return true;
      case 'string': return `text of ${field.name}`;
      case 'bytes': return Buffer.from([0xff, 0x00, 0x80, 0x01]).toString('base64');
      default: throw new Error(`${name(field)}: type ${field.type} not handled by the test`);
    }
  };
  if (field.map) throw new Error(`${name(field)}: map fields not handled by the test`);
  return field.repeated ? [one()] : one();
}

/** Every field set (the first member of each oneof); past depth 3, empty (AnyValue nests itself). */
function filled(type: protobuf.Type, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (depth > 3) return out;
  for (const f of type.fieldsArray) {
    if (f.partOf && f.partOf.fieldsArray[0] !== f) continue;
    out[f.name] = sample(f, depth);
  }
  return out;
}

const CONVERT = { longs: String, enums: String, bytes: String, defaults: false, arrays: false, oneofs: false };

/** The object written by our definition and read back by the official one, beside what ours reads back. */
function roundTrip(type: protobuf.Type, object: Record<string, unknown>): { official: unknown; ours: unknown } {
  const bytes = type.encode(type.fromObject(object)).finish();
  const expected = type.toObject(type.decode(bytes), CONVERT);
  const official = officialLookup(name(type)) as unknown as StaticMessage;
  try {
    return { official: official.toObject(official.decode(bytes), CONVERT), ours: expected };
  } catch (err) {
    return { official: `the official definition cannot read it: ${(err as Error).message}`, ours: expected };
  }
}

test('the copy has what the proxy writes: both requests, spans and log records', () => {
  for (const t of ['opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest', 'opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest', 'opentelemetry.proto.trace.v1.Span', 'opentelemetry.proto.logs.v1.LogRecord']) {
    assert.ok(types.some((x) => name(x) === t), t);
  }
  assert.ok(types.length >= 15, `${types.length} messages`);
});

test('every message and enum of the copy exists in the official definitions under the same full name', () => {
  const missing = [...types, ...enums, ...services].map(name).filter((n) => officialLookup(n) === undefined);
  assert.equal(missing, [], 'not in the official definitions');
});

test('every field has the same name, number and type as the official one', () => {
  const wrong: string[] = [];
  let checked = 0;
  for (const type of types) {
    for (const field of type.fieldsArray) {
      const { official, ours: expected } = roundTrip(type, { [field.name]: sample(field, 0) });
      checked++;
      try {
        assert.equal(official, expected);
        assert.ok(Object.keys(expected as object).length === 1, 'the sample was written');
      } catch {
        wrong.push(`${name(field)} = ${field.id} (${field.repeated ? 'repeated ' : ''}${field.type}): ours reads ${JSON.stringify(expected)}, the official definition ${JSON.stringify(official)}`);
      }
    }
  }
  assert.equal(wrong, []);
  assert.ok(checked >= 60, `${checked} fields`);
});

test('a message with every field set reads back whole (nested messages included)', () => {
  for (const type of types) {
    const { official, ours: expected } = roundTrip(type, filled(type, 0));
    assert.equal(official, expected, name(type));
  }
});

test('every enum value has the same number in the official definitions', () => {
  for (const e of enums) {
    const official = officialLookup(name(e)) as Record<string, number>;
    for (const [key, number] of Object.entries(e.values)) assert.is(official[key], number, `${name(e)}.${key}`);
  }
});

test('each service method takes and answers the same messages (the official stub encodes and decodes them)', async () => {
  for (const service of services) {
    const Official = officialLookup(name(service)) as new (rpc: protobuf.RPCImpl) => Record<string, (req: object) => Promise<object>>;
    for (const method of service.methodsArray) {
      const req = method.resolvedRequestType!;
      const res = method.resolvedResponseType!;
      const request = filled(req, 0);
      const response = filled(res, 0);
      let called = '';
      let sent: Uint8Array = new Uint8Array();
      const stub = new Official((m, data, cb) => {
        called = (m as { name: string }).name;
        sent = data;
        cb(null, res.encode(res.fromObject(response)).finish());
      });
      const officialRequest = (officialLookup(name(req)) as StaticMessage).fromObject(request);
      const answer = await stub[method.name.charAt(0).toLowerCase() + method.name.slice(1)]!(officialRequest);
      assert.is(called, method.name, `${name(service)}/${method.name}`);
      assert.equal(req.toObject(req.decode(sent), CONVERT), req.toObject(req.fromObject(request), CONVERT), `${name(method)} request`);
      assert.equal((officialLookup(name(res)) as StaticMessage).toObject(answer, CONVERT), res.toObject(res.fromObject(response), CONVERT), `${name(method)} response`);
    }
  }
});

test('the check fails on a copy that drifts: a wrong number, a wrong type, a wrong name', () => {
  const drift = (text: string) => {
    const root = protobuf.parse(`syntax = "proto3"; package opentelemetry.proto.trace.v1; ${text}`).root;
    root.resolveAll();
    const type = root.lookupType('opentelemetry.proto.trace.v1.Status');
    const field = type.fieldsArray[0]!;
    const { official, ours: expected } = roundTrip(type, { [field.name]: sample(field, 0) });
    return JSON.stringify(official) === JSON.stringify(expected);
  };
  assert.ok(drift('message Status { string message = 2; }'), 'the real field passes');
  assert.not.ok(drift('message Status { string message = 4; }'), 'a wrong number');
  assert.not.ok(drift('message Status { bytes message = 2; }'), 'a wrong type');
  assert.not.ok(drift('message Status { string text = 2; }'), 'a wrong name');
  assert.not.ok(drift('message Status { sint32 code = 3; }'), 'sint32 for an enum');
});

test.run();
