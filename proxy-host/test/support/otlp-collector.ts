// OTLP receivers for tests: a real gRPC server (grpc-js) implementing TraceService/Export and
// LogsService/Export, and an HTTP server taking OTLP/HTTP protobuf POSTs. Both decode with the proto
// definitions in schemas/proto/opentelemetry/ (protobufjs through @grpc/proto-loader), not with the
// proxy's own encoder, and keep what they received.
import * as grpc from '@grpc/grpc-js';
import { createServer, type Server } from 'node:http';
import {
  otlpDefinitions,
  type ExportLogsServiceRequestMessage,
  type ExportTraceServiceRequestMessage,
  type PartialSuccess,
} from '../../../schemas/proto/opentelemetry/otlp.ts';

export interface GrpcCollector {
  port: number;
  traces: { request: ExportTraceServiceRequestMessage; metadata: Record<string, string> }[];
  logs: { request: ExportLogsServiceRequestMessage; metadata: Record<string, string> }[];
  /** What the next trace Export answers (default: full success). */
  traceAnswer: PartialSuccess;
  close(): Promise<void>;
}

const flat = (md: grpc.Metadata): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = String(v);
  return out;
};

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
  server.addService(defs.traceService, {
    Export: (call: grpc.ServerUnaryCall<ExportTraceServiceRequestMessage, PartialSuccess>, cb: grpc.sendUnaryData<PartialSuccess>) => {
      c.traces.push({ request: call.request, metadata: flat(call.metadata) });
      cb(null, c.traceAnswer);
    },
  });
  server.addService(defs.logsService, {
    Export: (call: grpc.ServerUnaryCall<ExportLogsServiceRequestMessage, PartialSuccess>, cb: grpc.sendUnaryData<PartialSuccess>) => {
      c.logs.push({ request: call.request, metadata: flat(call.metadata) });
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
  requests: { path: string; contentType: string; request: ExportTraceServiceRequestMessage }[];
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
      requests.push({ path: req.url ?? '', contentType, request: defs.decodeTraceRequest(Buffer.concat(chunks)) });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(defs.encodeTraceResponse({}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, requests, server, close: () => new Promise<void>((r) => server.close(() => r())) };
}
