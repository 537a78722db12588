// Validation of Telemetry and MeshConfig beyond their schemas, over the whole set of documents:
// one MeshConfig, in the root namespace; provider names unique and known, of the kind the field
// needs; access-log formats and filter expressions that compile; what wasmesh cannot do yet refused
// with the field's path rather than accepted and ignored.
import { ROOT_NAMESPACE, namespaceOf, type ConfigDocument } from '../documents.ts';
import { compileFilter } from './cel.ts';
import type { ExtensionProvider, MeshConfig, Telemetry } from './documents.ts';
import { compileLogFormat } from './log-format.ts';
import { GATEWAY_GROUP } from '../translate/target-refs.ts';

type Report = (path: string, message: string) => void;
type ProviderKind = 'opentelemetry' | 'zipkin' | 'envoyFileAccessLog' | 'prometheus';

const kindOf = (p: ExtensionProvider): ProviderKind | undefined =>
  p.opentelemetry ? 'opentelemetry' : p.zipkin ? 'zipkin' : p.envoyFileAccessLog ? 'envoyFileAccessLog' : p.prometheus ? 'prometheus' : undefined;

const FIELD_KINDS: Readonly<Record<'tracing' | 'accessLogging' | 'metrics', readonly ProviderKind[]>> = {
  tracing: ['opentelemetry', 'zipkin'],
  accessLogging: ['envoyFileAccessLog'],
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
      if (p.opentelemetry && !p.opentelemetry.http) {
        report(`${at}/opentelemetry`, 'OTLP/gRPC export is not supported yet: add http: {} to export OTLP over HTTP (JSON) to the same collector (its HTTP port, 4318 by default)');
      }
      if (p.envoyFileAccessLog) {
        const f = compileLogFormat(p.envoyFileAccessLog.logFormat);
        if ('message' in f) report(`${at}/envoyFileAccessLog/logFormat${f.path}`, f.message);
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
        const metric = o.match?.metric ?? (o.match?.customMetric === undefined ? 'ALL_METRICS' : undefined);
        if (o.tagOverrides && Object.keys(o.tagOverrides).length > 0) report(`${at}/tagOverrides`, 'tagOverrides are not supported yet by the telemetry filter (wasmesh applies disabled on ALL_METRICS only)');
        if (o.disabled !== undefined && metric !== 'ALL_METRICS') report(`${at}/match`, 'disabling one metric is not supported yet: wasmesh can disable ALL_METRICS (per reporter with match.mode)');
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
