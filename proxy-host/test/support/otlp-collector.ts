// OTLP receivers for tests: a real gRPC server (grpc-js) implementing TraceService/Export and
// LogsService/Export, and an HTTP server taking OTLP/HTTP protobuf POSTs. Both decode the bytes they
// receive twice, not with the proxy's own encoder: with the proto definitions in schemas/proto/opentelemetry/
// (protobufjs through @grpc/proto-loader, as the demo's receiver does) and with the official
// OpenTelemetry definitions (schemas/proto/opentelemetry/official.ts), and keep both.
import * as grpc from '@grpc/grpc-js';
import { createServer, type Server } from 'node:http';
import {
  otlpDefinitions,
  type ExportLogsServiceRequestMessage,
  type ExportTraceServiceRequestMessage,
  type PartialSuccess,
} from '../../../schemas/proto/opentelemetry/otlp.ts';
import { officialDecodeLogsRequest, officialDecodeTraceRequest, type OfficialLogsRequest, type OfficialTraceRequest } from '../../../schemas/proto/opentelemetry/official.ts';

export interface GrpcCollector {
  port: number;
  /** Each Export: decoded with our copy (request) and with the official definitions (official). */
  traces: { request: ExportTraceServiceRequestMessage; official: OfficialTraceRequest; metadata: Record<string, string> }[];
  logs: { request: ExportLogsServiceRequestMessage; official: OfficialLogsRequest; metadata: Record<string, string> }[];
  /** What the next trace Export answers (default: full success). */
  traceAnswer: PartialSuccess;
  close(): Promise<void>;
}

const flat = (md: grpc.Metadata): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = String(v);
  return out;
};

interface Both<Ours, Official> {
  ours: Ours;
  official: Official;
}

/** The service with its Export message deserialized by both definitions, from the bytes off the wire. */
function decodingWithBoth<Ours, Official>(service: grpc.ServiceDefinition, official: (bytes: Uint8Array) => Official): grpc.ServiceDefinition {
  const exp = service.Export!;
  return { ...service, Export: { ...exp, requestDeserialize: (bytes: Buffer): Both<Ours, Official> => ({ ours: exp.requestDeserialize(bytes) as Ours, official: official(bytes) }) } };
}

export async function startGrpcCollector(): Promise<GrpcCollector> {
  const defs = otlpDefinitions();
  const server = new grpc.Server();
  const c: GrpcCollector = {
    port: 0,
    traces: [],
    logs: [],
    traceAnswer: {},
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
  server.addService(decodingWithBoth(defs.traceService, officialDecodeTraceRequest), {
    Export: (call: grpc.ServerUnaryCall<Both<ExportTraceServiceRequestMessage, OfficialTraceRequest>, PartialSuccess>, cb: grpc.sendUnaryData<PartialSuccess>) => {
      c.traces.push({ request: call.request.ours, official: call.request.official, metadata: flat(call.metadata) });
      cb(null, c.traceAnswer);
    },
  });
  server.addService(decodingWithBoth(defs.logsService, officialDecodeLogsRequest), {
    Export: (call: grpc.ServerUnaryCall<Both<ExportLogsServiceRequestMessage, OfficialLogsRequest>, PartialSuccess>, cb: grpc.sendUnaryData<PartialSuccess>) => {
      c.logs.push({ request: call.request.ours, official: call.request.official, metadata: flat(call.metadata) });
      cb(null, {});
    },
  });
  c.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return c;
}

export interface HttpCollector {
  port: number;
  /** Each POST: decoded with our copy (request) and with the official definitions (official). */
  requests: { path: string; contentType: string; request: ExportTraceServiceRequestMessage; official: OfficialTraceRequest }[];
  server: Server;
  close(): Promise<void>;
}

/** OTLP/HTTP with the protobuf encoding: answers 200 with an empty ExportTraceServiceResponse. */
export async function startHttpCollector(): Promise<HttpCollector> {
  const defs = otlpDefinitions();
  const requests: HttpCollector['requests'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => {
      const contentType = String(req.headers['content-type'] ?? '');
      if (contentType !== 'application/x-protobuf') {
        res.writeHead(415).end();
        return;
      }
      const body = Buffer.concat(chunks);
      requests.push({ path: req.url ?? '', contentType, request: defs.decodeTraceRequest(body), official: officialDecodeTraceRequest(body) });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(defs.encodeTraceResponse({}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, requests, server, close: () => new Promise<void>((r) => server.close(() => r())) };
}
