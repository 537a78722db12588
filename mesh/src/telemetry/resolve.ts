// Telemetry documents + the MeshConfig -> ProxyConfig.telemetry for one workload, with Istio's
// precedence: the root namespace's Telemetry without selector, then the workload's namespace's
// without selector, then one that selects the workload (selector or targetRefs); each level's fields
// override the level before, fields left out are inherited (customTags merge by key, metrics
// overrides accumulate). Within a level the first by name applies (Istio takes the oldest; wasmesh
// documents have no creation time). Providers left unset everywhere come from defaultProviders.
import { ROOT_NAMESPACE, namespaceOf, type ConfigDocument, type Gateway } from '../documents.ts';
import { selectGateways } from '../translate/gateways.ts';
import { GATEWAY_GROUP } from '../translate/target-refs.ts';
import type { WorkloadIdentity } from '../proxy-config.ts';
import { parseDuration } from '../translate/durations.ts';
import type { ExtensionProvider, MeshConfig, MetricsOverride, Telemetry, TelemetryAccessLogging, TelemetryTracing, WorkloadMode } from './documents.ts';
import type { AccessLogConfig, MetricOverrideConfig, ProxyTelemetryConfig, SideTelemetry, SpanTag, StandardMetric, TracingProviderConfig } from './proxy-telemetry.ts';

export type Side = 'inbound' | 'outbound';

/** Istio's MeshConfig default sampling (defaultConfig.tracing.sampling). */
export const DEFAULT_SAMPLING_PERCENTAGE = 1;
export const DEFAULT_MESH_ID = 'cluster.local';
/** Istio's default envoyOtelAls logName. */
export const DEFAULT_OTEL_LOG_NAME = 'otel_envoy_accesslog';

/** Istio's standard HTTP metrics as Telemetry names them, and their customMetric spelling (no istio_ prefix). */
export const STANDARD_METRICS: Readonly<Record<StandardMetric, string>> = {
  REQUEST_COUNT: 'requests_total',
  REQUEST_DURATION: 'request_duration_milliseconds',
  REQUEST_SIZE: 'request_bytes',
  RESPONSE_SIZE: 'response_bytes',
};
const ALL_STANDARD = Object.keys(STANDARD_METRICS) as StandardMetric[];

/** The standard metrics an override's match names (TCP and gRPC message metrics: none, wasmesh does not record them). */
export function matchedMetrics(match: MetricsOverride['match']): StandardMetric[] {
  if (match?.customMetric !== undefined) return ALL_STANDARD.filter((m) => STANDARD_METRICS[m] === match.customMetric);
  const metric = match?.metric ?? 'ALL_METRICS';
  if (metric === 'ALL_METRICS') return ALL_STANDARD;
  return (ALL_STANDARD as string[]).includes(metric) ? [metric as StandardMetric] : [];
}

const covers = (mode: WorkloadMode | undefined, side: Side): boolean =>
  mode === undefined || mode === 'CLIENT_AND_SERVER' || (mode === 'CLIENT' ? side === 'outbound' : side === 'inbound');

/** The one MeshConfig of the documents (validation refuses a second). */
export function meshConfigOf(documents: readonly ConfigDocument[]): MeshConfig | undefined {
  for (const d of documents) {
    const v = d.value as MeshConfig;
    if (v && typeof v === 'object' && v.kind === 'MeshConfig' && v.spec && typeof v.spec === 'object') return v;
  }
  return undefined;
}

/**
 * Whether a Telemetry selects the workload: selector, or targetRefs to a Service (by app label or
 * name) or to a Gateway (group networking.istio.io) that configures the workload, a gateway proxy
 * (`gateways`: selectGateways; translate/target-refs.ts).
 */
function selects(t: Telemetry, workload: WorkloadIdentity, gateways: () => readonly Gateway[]): boolean {
  const refs = t.spec.targetRefs;
  if (refs && refs.length > 0) {
    const service = workload.labels.app ?? workload.name;
    return refs.some((r) =>
      r.kind === 'Gateway'
        ? (r.group ?? '') === GATEWAY_GROUP && gateways().some((g) => namespaceOf(g) === namespaceOf(t) && g.metadata.name === r.name)
        : r.name === service,
    );
  }
  const labels = t.spec.selector?.matchLabels ?? {};
  return Object.entries(labels).every(([k, v]) => workload.labels[k] === v);
}

const hasSelector = (t: Telemetry): boolean => (t.spec.targetRefs?.length ?? 0) > 0 || Object.keys(t.spec.selector?.matchLabels ?? {}).length > 0;

/** The Telemetry of each level that applies to the workload, root first. */
export function telemetryLevels(documents: readonly ConfigDocument[], workload: WorkloadIdentity): Telemetry[] {
  const all: Telemetry[] = [];
  for (const d of documents) {
    const v = d.value as Telemetry;
    if (v && typeof v === 'object' && v.kind === 'Telemetry' && v.spec && typeof v.spec === 'object' && v.metadata) all.push(v);
  }
  all.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const root = all.find((t) => namespaceOf(t) === ROOT_NAMESPACE && !hasSelector(t));
  const ns = workload.namespace === ROOT_NAMESPACE ? undefined : all.find((t) => namespaceOf(t) === workload.namespace && !hasSelector(t));
  let gateways: Gateway[] | undefined;
  const served = (): Gateway[] => (gateways ??= selectGateways(documents, workload));
  const wl = all.find((t) => namespaceOf(t) === workload.namespace && hasSelector(t) && selects(t, workload, served));
  return [root, ns, wl].filter((t): t is Telemetry => t !== undefined);
}

/** ProxyConfig.telemetry for the workload; undefined when no Telemetry or MeshConfig exists (nothing changes). */
export function resolveTelemetry(documents: readonly ConfigDocument[], workload: WorkloadIdentity, env: Readonly<Record<string, string>> = {}): ProxyTelemetryConfig | undefined {
  const mesh = meshConfigOf(documents);
  const levels = telemetryLevels(documents, workload);
  if (mesh === undefined && levels.length === 0) return undefined;
  const providers = new Map<string, ExtensionProvider>((mesh?.spec.extensionProviders ?? []).map((p) => [p.name, p]));
  const side = (s: Side): SideTelemetry => resolveSide(s, levels, mesh, providers);
  void env;
  return { inbound: side('inbound'), outbound: side('outbound') };
}

function resolveSide(side: Side, levels: readonly Telemetry[], mesh: MeshConfig | undefined, providers: ReadonlyMap<string, ExtensionProvider>): SideTelemetry {
  // Tracing: the first entry of each level, when it covers this side.
  let tracingProviders: string[] | undefined;
  let sampling: number | undefined;
  let disabled = false;
  const tags: Record<string, SpanTag> = {};
  for (const t of levels) {
    const tr: TelemetryTracing | undefined = t.spec.tracing?.[0];
    if (!tr || !covers(tr.match?.mode, side)) continue;
    if (tr.providers !== undefined) tracingProviders = tr.providers.map((p) => p.name);
    if (tr.randomSamplingPercentage !== undefined) sampling = tr.randomSamplingPercentage;
    if (tr.disableSpanReporting !== undefined) disabled = tr.disableSpanReporting;
    Object.assign(tags, tr.customTags ?? {});
  }
  const tracingNames = tracingProviders ?? mesh?.spec.defaultProviders?.tracing ?? [];
  const tracers = tracingNames.map((n) => tracingProvider(providers.get(n))).filter((p): p is TracingProviderConfig => p !== undefined);

  // Access logging: every entry of a level that covers this side, field by field.
  let logProviders: string[] | undefined;
  let filter: string | undefined;
  let logsDisabled = false;
  for (const t of levels) {
    for (const al of (t.spec.accessLogging ?? []) as TelemetryAccessLogging[]) {
      if (!covers(al.match?.mode, side)) continue;
      if (al.providers !== undefined) logProviders = al.providers.map((p) => p.name);
      if (al.filter !== undefined) filter = al.filter.expression;
      if (al.disabled !== undefined) logsDisabled = al.disabled;
    }
  }
  const accessLogs: AccessLogConfig[] = [];
  if (!logsDisabled) {
    for (const name of logProviders ?? mesh?.spec.defaultProviders?.accessLogging ?? []) {
      const p = providers.get(name);
      const file = p?.envoyFileAccessLog;
      if (file) accessLogs.push({ provider: name, path: file.path ?? '/dev/stdout', format: { ...(file.logFormat ?? {}) }, ...(filter !== undefined ? { filter } : {}) });
      const als = p?.envoyOtelAls;
      if (als) {
        accessLogs.push({
          provider: name,
          path: '',
          otel: { host: als.service, port: als.port, logName: als.logName ?? DEFAULT_OTEL_LOG_NAME, timeoutMs: 5000 },
          format: { ...(als.logFormat ?? {}) },
          ...(filter !== undefined ? { filter } : {}),
        });
      }
    }
  }

  // Metrics: ALL_METRICS disabled for this side's reporter turns the standard metrics off (the
  // telemetry filter's `metrics: false`); single metrics disabled and tag overrides are applied by
  // the proxy where the filter defines its series, in order, root level first.
  let metrics = true;
  const overrides: MetricOverrideConfig[] = [];
  for (const t of levels) {
    for (const m of t.spec.metrics ?? []) {
      if (m.providers !== undefined) metrics = m.providers.some((p) => providers.get(p.name)?.prometheus !== undefined || !providers.has(p.name));
      for (const o of (m.overrides ?? []) as MetricsOverride[]) {
        if (!covers(o.match?.mode, side)) continue;
        const metric = o.match?.metric ?? (o.match?.customMetric === undefined ? 'ALL_METRICS' : undefined);
        if (metric === 'ALL_METRICS' && o.disabled !== undefined) {
          metrics = !o.disabled;
          // A later level re-enabling ALL_METRICS also re-enables the single metrics disabled before.
          if (!o.disabled) for (const prev of overrides) delete prev.disabled;
        }
        const names = matchedMetrics(o.match);
        if (names.length === 0) continue;
        const entry: MetricOverrideConfig = { metrics: names };
        if (o.disabled !== undefined && metric !== 'ALL_METRICS') entry.disabled = o.disabled;
        const tags = Object.entries(o.tagOverrides ?? {}).map(([label, op]) => [label, op.operation === 'REMOVE' ? { remove: true as const } : { value: op.value ?? '' }] as const);
        if (tags.length > 0) entry.tags = tags;
        if (entry.disabled !== undefined || entry.tags !== undefined) overrides.push(entry);
      }
    }
  }

  const out: SideTelemetry = { accessLogs, metrics };
  if (overrides.length > 0) out.metricOverrides = overrides;
  if (!disabled && tracers.length > 0) {
    out.tracing = { samplingPercentage: sampling ?? DEFAULT_SAMPLING_PERCENTAGE, providers: tracers, customTags: tags, meshId: mesh?.spec.meshId ?? DEFAULT_MESH_ID };
  }
  return out;
}

function tracingProvider(p: ExtensionProvider | undefined): TracingProviderConfig | undefined {
  if (p?.opentelemetry) {
    const o = p.opentelemetry;
    if (o.http === undefined) {
      // Istio: without http, OTLP over gRPC.
      return {
        name: p.name,
        kind: 'opentelemetry',
        protocol: 'otlp-grpc',
        host: o.service,
        port: o.port,
        path: '',
        timeoutMs: o.grpc?.timeout ? parseDuration(o.grpc.timeout) : 5000,
        headers: (o.grpc?.initialMetadata ?? []).map((h) => [h.name, h.value] as const),
        maxTagLength: o.maxTagLength ?? 256,
      };
    }
    return {
      name: p.name,
      kind: 'opentelemetry',
      protocol: o.http.encoding === 'json' ? 'otlp-http-json' : 'otlp-http-protobuf',
      host: o.service,
      port: o.port,
      path: o.http.path ?? '/v1/traces',
      timeoutMs: o.http.timeout ? parseDuration(o.http.timeout) : 5000,
      headers: (o.http.headers ?? []).map((h) => [h.name, h.value] as const),
      maxTagLength: o.maxTagLength ?? 256,
    };
  }
  if (p?.zipkin) {
    const z = p.zipkin;
    return { name: p.name, kind: 'zipkin', protocol: 'zipkin', host: z.service, port: z.port, path: z.path ?? '/api/v2/spans', timeoutMs: 5000, headers: [], maxTagLength: z.maxTagLength ?? 256 };
  }
  return undefined;
}
