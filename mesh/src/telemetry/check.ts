// Validation of Telemetry and MeshConfig beyond their schemas, over the whole set of documents:
// one MeshConfig, in the root namespace; provider names unique and known, of the kind the field
// needs; access-log formats and filter expressions that compile; what wasmesh cannot do yet refused
// with the field's path rather than accepted and ignored.
import { ROOT_NAMESPACE, namespaceOf, type ConfigDocument } from '../documents.ts';
import { compileFilter, compileValue } from './cel.ts';
import type { ExtensionProvider, MeshConfig, Telemetry } from './documents.ts';
import { compileLogFormat } from './log-format.ts';
import { GATEWAY_GROUP } from '../translate/target-refs.ts';
import { STANDARD_METRICS } from './resolve.ts';

type Report = (path: string, message: string) => void;

/** A Prometheus label name, not reserved (as wasm/src/metrics/registry.ts accepts). */
const isValidLabelName = (n: string): boolean => /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(n) && !n.startsWith('__');
type ProviderKind = 'opentelemetry' | 'zipkin' | 'envoyFileAccessLog' | 'envoyOtelAls' | 'prometheus';

const kindOf = (p: ExtensionProvider): ProviderKind | undefined =>
  p.opentelemetry ? 'opentelemetry' : p.zipkin ? 'zipkin' : p.envoyFileAccessLog ? 'envoyFileAccessLog' : p.envoyOtelAls ? 'envoyOtelAls' : p.prometheus ? 'prometheus' : undefined;

const FIELD_KINDS: Readonly<Record<'tracing' | 'accessLogging' | 'metrics', readonly ProviderKind[]>> = {
  tracing: ['opentelemetry', 'zipkin'],
  accessLogging: ['envoyFileAccessLog', 'envoyOtelAls'],
  metrics: ['prometheus'],
};

/** Checks the schema-valid Telemetry and MeshConfig documents of a set. */
export function checkTelemetryDocuments(documents: readonly ConfigDocument[], reporterFor: (doc: ConfigDocument) => Report): void {
  const meshes = documents.filter((d) => (d.value as { kind?: string }).kind === 'MeshConfig');
  const known = new Map<string, ProviderKind>();
  meshes.forEach((doc, i) => {
    const report = reporterFor(doc);
    const mesh = doc.value as MeshConfig;
    if (i > 0) report('', 'a mesh has one MeshConfig: merge its extensionProviders into the first');
    if (namespaceOf(mesh) !== ROOT_NAMESPACE) report('/metadata/namespace', `a MeshConfig belongs in the root namespace ${JSON.stringify(ROOT_NAMESPACE)}`);
    (mesh.spec.extensionProviders ?? []).forEach((p, j) => {
      const at = `/spec/extensionProviders/${j}`;
      const kind = kindOf(p)!;
      if (known.has(p.name)) report(`${at}/name`, `provider name ${JSON.stringify(p.name)} is used twice`);
      if (i === 0) known.set(p.name, kind);
      if (p.opentelemetry?.http && p.opentelemetry.grpc) {
        report(`${at}/opentelemetry`, 'use http (OTLP/HTTP) or grpc (OTLP/gRPC, the default without http), not both');
      }
      if (p.envoyFileAccessLog) {
        const f = compileLogFormat(p.envoyFileAccessLog.logFormat);
        if ('message' in f) report(`${at}/envoyFileAccessLog/logFormat${f.path}`, f.message);
      }
      if (p.envoyOtelAls?.logFormat) {
        const { text, labels } = p.envoyOtelAls.logFormat;
        if (text !== undefined) {
          const f = compileLogFormat({ text });
          if ('message' in f) report(`${at}/envoyOtelAls/logFormat${f.path}`, f.message);
        }
        if (labels !== undefined) {
          const f = compileLogFormat({ labels });
          if ('message' in f) report(`${at}/envoyOtelAls/logFormat${f.path}`, f.message);
        }
      }
    });
  });
  const mesh = meshes[0]?.value as MeshConfig | undefined;
  if (mesh) {
    const report = reporterFor(meshes[0]);
    for (const field of ['tracing', 'accessLogging', 'metrics'] as const) {
      (mesh.spec.defaultProviders?.[field] ?? []).forEach((name, j) => checkRef(name, field, `/spec/defaultProviders/${field}/${j}`, known, mesh !== undefined, report));
    }
  }

  const gatewayNames = new Set<string>();
  for (const doc of documents) {
    const g = doc.value as { kind?: string; metadata?: { name: string; namespace?: string } };
    if (g.kind === 'Gateway' && g.metadata) gatewayNames.add(`${namespaceOf(g as { metadata: { name: string } })}/${g.metadata.name}`);
  }
  for (const doc of documents) {
    const t = doc.value as Telemetry;
    if (t.kind !== 'Telemetry') continue;
    const report = reporterFor(doc);
    const spec = t.spec;
    if (spec.selector && spec.targetRefs?.length) report('/spec/targetRefs', 'use selector or targetRefs, not both');
    (spec.targetRefs ?? []).forEach((r, i) => {
      if (r.namespace !== undefined && r.namespace !== namespaceOf(t)) report(`/spec/targetRefs/${i}/namespace`, `must be the Telemetry's namespace ${JSON.stringify(namespaceOf(t))}`);
      else if (r.kind === 'Gateway' && (r.group ?? '') !== GATEWAY_GROUP) report(`/spec/targetRefs/${i}/group`, `a Gateway is in group ${GATEWAY_GROUP} (wasmesh's Istio Gateways; got ${JSON.stringify(r.group ?? '')})`);
      else if (r.kind === 'Gateway' && !gatewayNames.has(`${namespaceOf(t)}/${r.name}`)) report(`/spec/targetRefs/${i}/name`, `no Gateway ${JSON.stringify(r.name)} in namespace ${JSON.stringify(namespaceOf(t))}`);
      else if (r.kind === 'Service' && r.group !== undefined && r.group !== '' && r.group !== 'core') report(`/spec/targetRefs/${i}/group`, `a Service is in the core group ("" or "core"; got ${JSON.stringify(r.group)})`);
    });
    for (const field of ['tracing', 'accessLogging', 'metrics'] as const) {
      (spec[field] ?? []).forEach((entry, i) => {
        (entry.providers ?? []).forEach((p, j) => checkRef(p.name, field, `/spec/${field}/${i}/providers/${j}/name`, known, mesh !== undefined, report));
      });
    }
    (spec.accessLogging ?? []).forEach((al, i) => {
      if (al.filter) {
        const c = compileFilter(al.filter.expression);
        if ('message' in c) report(`/spec/accessLogging/${i}/filter/expression`, c.message);
      }
    });
    (spec.metrics ?? []).forEach((m, i) => {
      (m.overrides ?? []).forEach((o, j) => {
        const at = `/spec/metrics/${i}/overrides/${j}`;
        const custom = o.match?.customMetric;
        if (custom !== undefined && !Object.values(STANDARD_METRICS).includes(custom)) {
          report(`${at}/match/customMetric`, `wasmesh has no custom metrics: customMetric names one of Istio's standard metrics without istio_ (${Object.values(STANDARD_METRICS).join(', ')})`);
        }
        for (const [label, op] of Object.entries(o.tagOverrides ?? {})) {
          const tat = `${at}/tagOverrides/${label.replace(/~/g, '~0').replace(/\//g, '~1')}`;
          if (!isValidLabelName(label)) report(tat, `${JSON.stringify(label)} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)`);
          if (label === 'reporter') report(tat, 'the reporter label says which side recorded the metric and cannot be changed');
          if (op.operation === 'REMOVE') {
            if (op.value !== undefined) report(`${tat}/value`, 'REMOVE takes no value');
          } else if (op.value === undefined || op.value === '') {
            report(`${tat}/value`, "UPSERT needs a value: a CEL expression such as request.host, or a quoted literal such as \"'v1'\"");
          } else {
            const c = compileValue(op.value);
            if ('message' in c) report(`${tat}/value`, c.message);
          }
        }
      });
    });
  }
}

function checkRef(name: string, field: 'tracing' | 'accessLogging' | 'metrics', at: string, known: ReadonlyMap<string, ProviderKind>, haveMesh: boolean, report: Report): void {
  const kind = known.get(name);
  if (kind === undefined) {
    const names = [...known.keys()];
    report(at, haveMesh ? `unknown provider ${JSON.stringify(name)}: the MeshConfig's extensionProviders are ${names.length ? names.map((n) => JSON.stringify(n)).join(', ') : 'empty'}` : `unknown provider ${JSON.stringify(name)}: no MeshConfig declares extensionProviders`);
    return;
  }
  if (!FIELD_KINDS[field].includes(kind)) report(at, `provider ${JSON.stringify(name)} is ${kind}, which ${field} cannot use (it takes ${FIELD_KINDS[field].join(' or ')})`);
}
