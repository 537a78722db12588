// Spans of one listener (Istio's sidecar tracing): a SERVER span per inbound request, a CLIENT span
// per outbound one, each a child of the trace context the request carries, which is rewritten to
// name the new span before the request goes on (traceparent, and B3 headers when the request uses
// them), so the next hop's span is this one's child.
//
//   begin()   at request start, before the filters: the sampling decision. An incoming decision
//             (traceparent flags, B3 sampled/flags) is kept; otherwise randomSamplingPercentage decides.
//   forward() once the filters ran (the terminal's request headers): the span id, headers rewritten.
//   finish()  when the request is done: a sampled span goes to each provider's exporter queue.
//
// Cost when tracing is off: none (no Tracer). When on, unsampled: one decision and a header rewrite.
import { randomFillSync } from 'node:crypto';
import type { HeaderList } from '../../../wasm/src/index.ts';
import type { TracingConfig } from '../../../mesh/src/telemetry/proxy-telemetry.ts';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { getHeader } from '../http/request-headers.ts';
import type { FinishedSpan, SpanExporter } from './span-exporter.ts';
import type { RequestFacts } from './request-facts.ts';
import type { ListenerTelemetry } from './listener-telemetry.ts';

const HEX_POOL = 4096;
let pool = Buffer.alloc(0);
let poolAt = HEX_POOL;
/** `bytes` random bytes as lowercase hex, from a pool refilled 4 KiB at a time. */
function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    if (pool.length === 0) pool = Buffer.alloc(HEX_POOL);
    randomFillSync(pool);
    poolAt = 0;
  }
  const s = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return /^0+$/.test(s) ? randomHex(bytes) : s;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export class TraceState {
  traceId = '';
  spanId = '';
  parentSpanId = '';
  /** The listener telemetry the request started under (a config swap mid-request does not split it). */
  constructor(readonly tracer: Tracer, readonly listener: ListenerTelemetry, readonly sampled: boolean, readonly usesB3: boolean) {}
}

function setHeader(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value;
      return;
    }
  }
  list.push(name, value);
}

export class Tracer {
  readonly #config: TracingConfig;
  readonly #exporters: readonly SpanExporter[];
  readonly #kind: 'CLIENT' | 'SERVER';
  readonly #workload: WorkloadIdentity;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #canonicalService: string;
  readonly #canonicalRevision: string;

  constructor(config: TracingConfig, exporters: readonly SpanExporter[], side: 'inbound' | 'outbound', workload: WorkloadIdentity, env: Readonly<Record<string, string | undefined>> = process.env) {
    this.#config = config;
    this.#exporters = exporters;
    this.#kind = side === 'inbound' ? 'SERVER' : 'CLIENT';
    this.#workload = workload;
    this.#env = env;
    const l = workload.labels;
    this.#canonicalService = l['service.istio.io/canonical-name'] ?? l['app.kubernetes.io/name'] ?? l.app ?? workload.name;
    this.#canonicalRevision = l['service.istio.io/canonical-revision'] ?? l['app.kubernetes.io/version'] ?? l.version ?? 'latest';
  }

  /** The sampling decision, from the request as it arrived. */
  begin(headers: HeaderList, listener: ListenerTelemetry): TraceState {
    let decision: boolean | undefined;
    let usesB3 = false;
    const tp = getHeader(headers, 'traceparent');
    const m = tp === undefined ? null : TRACEPARENT.exec(tp);
    if (m && m[1] !== 'ff' && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN) decision = (parseInt(m[4]!, 16) & 1) === 1;
    const b3 = getHeader(headers, 'b3');
    if (b3 !== undefined) {
      usesB3 = true;
      if (decision === undefined) {
        const parts = b3.split('-');
        const s = parts.length === 1 ? parts[0] : parts[2];
        if (s === '1' || s === 'd') decision = true;
        else if (s === '0') decision = false;
      }
    } else if (getHeader(headers, 'x-b3-traceid') !== undefined || getHeader(headers, 'x-b3-sampled') !== undefined) {
      usesB3 = true;
      if (decision === undefined) {
        if (getHeader(headers, 'x-b3-flags') === '1') decision = true;
        else {
          const s = getHeader(headers, 'x-b3-sampled');
          if (s === '1' || s === 'true') decision = true;
          else if (s === '0' || s === 'false') decision = false;
        }
      }
    }
    const p = this.#config.samplingPercentage;
    if (decision === undefined) decision = p >= 100 ? true : p <= 0 ? false : Math.random() * 100 < p;
    return new TraceState(this, listener, decision, usesB3);
  }

  /** This hop's span: ids from the request's context (or a new trace), the headers rewritten to name it. */
  forward(state: TraceState, headers: HeaderList): void {
    if (state.spanId) return;
    const tp = getHeader(headers, 'traceparent');
    const m = tp === undefined ? null : TRACEPARENT.exec(tp);
    if (m && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN) {
      state.traceId = m[2]!;
      state.parentSpanId = m[3]!;
    } else {
      const b3 = getHeader(headers, 'b3')?.split('-');
      const tid = b3 && b3.length >= 2 ? b3[0] : getHeader(headers, 'x-b3-traceid');
      const sid = b3 && b3.length >= 2 ? b3[1] : getHeader(headers, 'x-b3-spanid');
      if (tid && sid && /^([0-9a-f]{16}|[0-9a-f]{32})$/.test(tid) && /^[0-9a-f]{16}$/.test(sid)) {
        state.traceId = tid.padStart(32, '0');
        state.parentSpanId = sid;
      } else state.traceId = randomHex(16);
    }
    state.spanId = randomHex(8);
    const flag = state.sampled ? '01' : '00';
    setHeader(headers, 'traceparent', `00-${state.traceId}-${state.spanId}-${flag}`);
    if (state.usesB3) {
      if (getHeader(headers, 'b3') !== undefined) {
        setHeader(headers, 'b3', `${state.traceId}-${state.spanId}-${state.sampled ? '1' : '0'}${state.parentSpanId ? `-${state.parentSpanId}` : ''}`);
      } else {
        setHeader(headers, 'x-b3-traceid', state.traceId);
        setHeader(headers, 'x-b3-spanid', state.spanId);
        if (state.parentSpanId) setHeader(headers, 'x-b3-parentspanid', state.parentSpanId);
        setHeader(headers, 'x-b3-sampled', state.sampled ? '1' : '0');
      }
    }
  }

  /** Reports the span of a finished request (when sampled). */
  finish(state: TraceState, headers: HeaderList, f: RequestFacts): void {
    if (!state.spanId) this.forward(state, headers.slice());
    f.traceId = state.traceId;
    if (!state.sampled) return;
    const method = f.requestHeader(':method') ?? '';
    const authority = f.requestHeader(':authority') ?? '';
    const path = f.requestHeader(':path') ?? '/';
    const w = this.#workload;
    const tags: Record<string, string> = {
      'istio.canonical_service': this.#canonicalService,
      'istio.canonical_revision': this.#canonicalRevision,
      'istio.mesh_id': this.#config.meshId,
      'istio.namespace': w.namespace,
      'node_id': `sidecar~${w.name}.${w.namespace}`,
      'component': 'proxy',
      'http.method': method,
      'http.url': `${f.requestHeader(':scheme') ?? 'http'}://${authority}${path}`,
      'http.protocol': f.protocol,
      'http.status_code': String(f.responseCode),
      'response_flags': f.responseFlags || '-',
      'response_size': String(f.bytesSent),
      'request_size': String(f.bytesReceived),
      'upstream_cluster': f.upstreamCluster || '-',
      'upstream_cluster.name': f.upstreamCluster || '-',
      'peer.address': f.downstreamRemoteAddress,
      'downstream_cluster': '-',
      'user_agent': f.requestHeader('user-agent') ?? '-',
      'guid:x-request-id': f.requestHeader('x-request-id') ?? '',
    };
    for (const [name, tag] of Object.entries(this.#config.customTags)) {
      let v: string | undefined;
      if ('literal' in tag) v = tag.literal.value;
      else if ('header' in tag) v = f.requestHeader(tag.header.name.toLowerCase()) ?? tag.header.defaultValue;
      else v = this.#env[tag.environment.name] ?? tag.environment.defaultValue;
      if (v !== undefined) tags[name] = v;
    }
    const span: FinishedSpan = {
      traceId: state.traceId,
      spanId: state.spanId,
      parentSpanId: state.parentSpanId,
      name: `${authority}/*`,
      kind: this.#kind,
      startMs: f.startMs,
      durationMs: f.durationMs,
      tags,
      error: f.responseCode === 0 || f.responseCode >= 500,
      localEndpoint: { serviceName: `${this.#canonicalService}.${w.namespace}` },
    };
    for (const e of this.#exporters) e.push(span);
  }
}
