// Zipkin's v2 model for tests: a span the proxy posted (Zipkin v2 JSON, /api/v2/spans) rebuilt through
// openzipkin/zipkin-js (`zipkin`, a devDependency: model.Span, model.Endpoint, and the JSON_V2 encoder
// Zipkin's own JavaScript tracer sends with), so a test can check the proxy writes what Zipkin's model
// writes for the same span; plus the constraints of zipkin2-api.yaml that the model does not enforce.
// Named imports: zipkin-js is CommonJS, and a default import is undefined when the suite runs under
// uvu's require hook (-r tsx) while it works under node --import tsx.
import { option, TraceId, model, jsonEncoder } from 'zipkin';

export interface PostedEndpoint {
  serviceName?: string;
  ipv4?: string;
  ipv6?: string;
  port?: number;
}
export interface PostedSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  kind?: string;
  timestamp?: number;
  duration?: number;
  debug?: boolean;
  shared?: boolean;
  localEndpoint?: PostedEndpoint;
  remoteEndpoint?: PostedEndpoint;
  annotations?: { timestamp: number; value: string }[];
  tags?: Record<string, unknown>;
}

const endpoint = (e: PostedEndpoint | undefined) => (e ? new model.Endpoint({ serviceName: e.serviceName, ipv4: e.ipv4, port: e.port }) : undefined);

/** The span as zipkin-js's model and JSON_V2 encoder write it (what the model cannot hold is lost). */
export function throughZipkinModel(posted: PostedSpan): unknown {
  const id = new TraceId({
    traceId: posted.traceId,
    parentId: posted.parentId === undefined ? option.None : new option.Some(posted.parentId),
    spanId: posted.id,
    sampled: new option.Some(true),
    debug: posted.debug === true,
    shared: posted.shared === true,
  });
  const span = new model.Span(id);
  if (posted.name !== undefined) span.setName(posted.name);
  if (posted.kind !== undefined) span.setKind(posted.kind as 'CLIENT' | 'SERVER');
  if (posted.timestamp !== undefined) span.setTimestamp(posted.timestamp);
  if (posted.duration !== undefined) span.setDuration(posted.duration);
  const local = endpoint(posted.localEndpoint);
  if (local) span.setLocalEndpoint(local);
  const remote = endpoint(posted.remoteEndpoint);
  if (remote) span.setRemoteEndpoint(remote);
  for (const a of posted.annotations ?? []) span.addAnnotation(a.timestamp, a.value);
  for (const [k, v] of Object.entries(posted.tags ?? {})) span.putTag(k, v as string);
  return JSON.parse(jsonEncoder.JSON_V2.encode(span)) as unknown;
}

/** What zipkin2-api.yaml (the v2 model) requires beyond the model's shape, as a list of problems. */
export function zipkinV2Problems(s: PostedSpan): string[] {
  const p: string[] = [];
  const id64 = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{16}$/.test(v);
  if (typeof s.traceId !== 'string' || !/^([0-9a-f]{16}|[0-9a-f]{32})$/.test(s.traceId)) p.push(`traceId ${s.traceId}: 16 or 32 lowercase hex digits`);
  if (!id64(s.id)) p.push(`id ${s.id}: 16 lowercase hex digits`);
  if (s.parentId !== undefined && (!id64(s.parentId) || s.parentId === s.id)) p.push(`parentId ${s.parentId}: 16 lowercase hex digits, not the span's own id`);
  if (s.kind !== undefined && !['CLIENT', 'SERVER', 'PRODUCER', 'CONSUMER'].includes(s.kind)) p.push(`kind ${s.kind}`);
  if (s.name !== undefined && s.name !== s.name.toLowerCase()) p.push(`name ${s.name}: lowercase`);
  if (!Number.isSafeInteger(s.timestamp) || s.timestamp! < 1e15) p.push(`timestamp ${s.timestamp}: integer epoch microseconds`);
  if (s.duration !== undefined && (!Number.isSafeInteger(s.duration) || s.duration < 1)) p.push(`duration ${s.duration}: integer microseconds, at least 1`);
  for (const [side, e] of [['localEndpoint', s.localEndpoint], ['remoteEndpoint', s.remoteEndpoint]] as const) {
    if (e?.serviceName !== undefined && e.serviceName !== e.serviceName.toLowerCase()) p.push(`${side}.serviceName ${e.serviceName}: lowercase`);
  }
  for (const [k, v] of Object.entries(s.tags ?? {})) if (typeof v !== 'string') p.push(`tags.${k}: a string`);
  return p;
}
