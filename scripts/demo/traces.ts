// The demo's trace receiver: a tiny OTLP/HTTP collector in the demo process (loopback, a free port)
// that every sidecar exports its spans to (protobuf, as `http: {}` sends them), decoded with the OTLP
// definitions in schemas/proto/opentelemetry/, keeping the most recent traces in memory (bounded).
//
//   POST /v1/traces        ExportTraceServiceRequest (application/x-protobuf or application/json)
//   GET  /traces           the recent traces, newest first (JSON: id, spans, services, duration)
//   GET  /traces/<id>      one trace as an indented tree of spans (text; ?format=json for the spans)
//
// documents() is the MeshConfig and Telemetry that turn tracing on at 100 % to it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { attributesOf, otlpDefinitions } from '../../schemas/proto/opentelemetry/otlp.ts';

const MAX_TRACES = 200;
const MAX_SPANS_PER_TRACE = 128;
const MAX_BODY = 4 * 1024 * 1024;

export interface DemoSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: 'CLIENT' | 'SERVER' | 'OTHER';
  /** The exporting workload (resource service.name: app.namespace). */
  service: string;
  startNs: bigint;
  endNs: bigint;
  status: string;
  attributes: Record<string, string | number | boolean | undefined>;
}

export const DEMO_TRACING_PROVIDER = 'demo-traces';

export class DemoTraceReceiver {
  readonly #traces = new Map<string, DemoSpan[]>();
  #server: Server | undefined;
  port = 0;
  received = 0;

  async start(): Promise<this> {
    otlpDefinitions(); // load (and check) the protos before the first export arrives
    const server = createServer((req, res) => this.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.port = (server.address() as { port: number }).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The MeshConfig naming this receiver and the mesh-wide Telemetry sampling every request to it. */
  documents(): object[] {
    return [
      {
        apiVersion: 'wasmesh.io/v1alpha1',
        kind: 'MeshConfig',
        metadata: { name: 'mesh', namespace: 'istio-system' },
        spec: {
          meshId: 'demo',
          extensionProviders: [{ name: DEMO_TRACING_PROVIDER, opentelemetry: { service: '127.0.0.1', port: this.port, http: { path: '/v1/traces' } } }],
        },
      },
      {
        apiVersion: 'telemetry.istio.io/v1',
        kind: 'Telemetry',
        metadata: { name: 'mesh-default', namespace: 'istio-system' },
        spec: { tracing: [{ providers: [{ name: DEMO_TRACING_PROVIDER }], randomSamplingPercentage: 100 }] },
      },
    ];
  }

  spans(traceId: string): DemoSpan[] {
    return this.#traces.get(traceId) ?? [];
  }

  /** The recent traces, newest first. */
  list(): { traceId: string; spans: number; services: string[]; root: string; durationMs: number }[] {
    return [...this.#traces.entries()].reverse().map(([traceId, spans]) => {
      const ids = new Set(spans.map((s) => s.spanId));
      const root = spans.find((s) => !ids.has(s.parentSpanId)) ?? spans[0]!;
      const start = spans.reduce((m, s) => (s.startNs < m ? s.startNs : m), spans[0]!.startNs);
      const end = spans.reduce((m, s) => (s.endNs > m ? s.endNs : m), spans[0]!.endNs);
      return { traceId, spans: spans.length, services: [...new Set(spans.map((s) => s.service))], root: `${root.service} ${root.kind} ${root.name}`, durationMs: Number(end - start) / 1e6 };
    });
  }

  /** One trace as an indented tree: each span under its parent, children by start time. */
  tree(traceId: string): string {
    const spans = this.spans(traceId);
    if (spans.length === 0) return `trace ${traceId}: not received (yet)\n`;
    const ids = new Set(spans.map((s) => s.spanId));
    const children = new Map<string, DemoSpan[]>();
    for (const s of spans) {
      const parent = ids.has(s.parentSpanId) ? s.parentSpanId : '';
      children.set(parent, [...(children.get(parent) ?? []), s]);
    }
    for (const list of children.values()) list.sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
    const lines = [`trace ${traceId} (${spans.length} spans)`];
    const walk = (parent: string, depth: number): void => {
      for (const s of children.get(parent) ?? []) {
        const ms = (Number(s.endNs - s.startNs) / 1e6).toFixed(1);
        const code = s.attributes['http.status_code'] ?? '-';
        lines.push(`${'  '.repeat(depth + 1)}${s.service} ${s.kind} ${s.name} ${code} ${ms} ms  span ${s.spanId}${s.parentSpanId ? ` parent ${s.parentSpanId}` : ''}`);
        walk(s.spanId, depth + 1);
      }
    };
    walk('', 0);
    return `${lines.join('\n')}\n`;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://receiver');
    if (req.method === 'POST' && url.pathname === '/v1/traces') return this.#receive(req, res);
    if (req.method === 'GET' && url.pathname === '/traces') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(this.list(), null, 1)}\n`);
      return;
    }
    const m = /^\/traces\/([0-9a-f]{32})$/.exec(url.pathname);
    if (req.method === 'GET' && m) {
      const spans = this.spans(m[1]!);
      if (spans.length === 0) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`trace ${m[1]} is not among the ${this.#traces.size} kept\n`);
        return;
      }
      if (url.searchParams.get('format') === 'json') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(spans, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 1)}\n`);
      } else res.writeHead(200, { 'content-type': 'text/plain' }).end(this.tree(m[1]!));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('POST /v1/traces, GET /traces, GET /traces/<trace id>\n');
  }

  #receive(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const type = String(req.headers['content-type'] ?? '');
      if (type !== 'application/x-protobuf') {
        res.writeHead(415, { 'content-type': 'text/plain' }).end('application/x-protobuf only\n');
        return;
      }
      try {
        this.#store(Buffer.concat(chunks));
      } catch (e) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(otlpDefinitions().encodeTraceResponse({}));
    });
  }

  #store(body: Buffer): void {
    const request = otlpDefinitions().decodeTraceRequest(body);
    for (const rs of request.resource_spans) {
      const service = String(attributesOf(rs.resource?.attributes ?? [])['service.name'] ?? 'unknown');
      for (const ss of rs.scope_spans) {
        for (const s of ss.spans) {
          const traceId = s.trace_id.toString('hex');
          let list = this.#traces.get(traceId);
          if (list === undefined) {
            list = [];
            this.#traces.set(traceId, list);
            if (this.#traces.size > MAX_TRACES) this.#traces.delete(this.#traces.keys().next().value!);
          }
          if (list.length >= MAX_SPANS_PER_TRACE) continue;
          this.received++;
          list.push({
            traceId,
            spanId: s.span_id.toString('hex'),
            parentSpanId: s.parent_span_id.toString('hex'),
            name: s.name,
            kind: s.kind === 'SPAN_KIND_CLIENT' ? 'CLIENT' : s.kind === 'SPAN_KIND_SERVER' ? 'SERVER' : 'OTHER',
            service,
            startNs: BigInt(s.start_time_unix_nano),
            endNs: BigInt(s.end_time_unix_nano),
            status: s.status?.code ?? 'STATUS_CODE_UNSET',
            attributes: attributesOf(s.attributes),
          });
        }
      }
    }
  }

  close(): Promise<void> {
    const s = this.#server;
    if (!s) return Promise.resolve();
    s.closeAllConnections();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}

/**
 * Whether a trace went the demo's three hops with every span parented: a SERVER span of productpage,
 * reviews and ratings, each the child of a CLIENT span of the trace (the caller's sidecar), each CLIENT
 * span the child of a span of the trace or the trace's root. Returns what is missing, or undefined.
 */
export function checkThreeHops(spans: readonly DemoSpan[]): string | undefined {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  for (const service of ['productpage', 'reviews', 'ratings']) {
    const server = spans.find((s) => s.kind === 'SERVER' && s.service.startsWith(`${service}.`));
    if (!server) return `no SERVER span of ${service}`;
    const parent = byId.get(server.parentSpanId);
    if (!parent || parent.kind !== 'CLIENT') return `the SERVER span of ${service} is not the child of a CLIENT span of the trace`;
  }
  const roots = spans.filter((s) => !byId.has(s.parentSpanId));
  if (roots.length !== 1) return `${roots.length} spans without a parent in the trace (one expected)`;
  return undefined;
}
