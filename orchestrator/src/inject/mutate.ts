// Sidecar injection into Kubernetes objects: finds the pod template of a workload kind, decides
// whether to inject (opt-out annotations, already injected, host network), works out the workload's
// name, labels, app port and traffic capture from the pod and its annotations, and adds the
// containers and volumes sidecar.ts builds. Pure: the input is never modified, nothing is read.
//
// Kinds and where their pod template is (any other kind, or one of these kinds from another API
// group, is left alone):
//   Pod (v1)                                            the object itself
//   Deployment, StatefulSet, DaemonSet, ReplicaSet      spec.template
//   Job                                                 spec.template
//   CronJob                                             spec.jobTemplate.spec.template
//   List                                                each of items
//
// Pod template annotations read (Istio's names are accepted so that existing manifests keep working):
//   sidecar.istio.io/inject, wasmesh.io/inject: "false"   opt out (label or annotation; on the pod
//                                                          template, else on the resource)
//   wasmesh.io/app-port                                    the app's port, instead of the first containerPort
//   traffic.sidecar.istio.io/<x> or traffic.wasmesh.io/<x> (the latter wins), x one of
//     includeInboundPorts (default: the app port; "*" for all), excludeInboundPorts,
//     includeOutboundIPRanges (default "*"), excludeOutboundIPRanges, includeOutboundPorts,
//     excludeOutboundPorts

import { TLS_MODE_LABEL } from '../../../mesh/src/proxy-config.ts';
import { DEFAULT_ADMIN_PORT, DEFAULT_STATUS_PORT, DEFAULT_INBOUND_PORT, DEFAULT_OUTBOUND_PORT, DISCOVERY_PORT, PROXY_GID, PROXY_UID, parseCidrList, parsePortList, type TrafficRedirect } from './iptables.ts';
import { escapePointerToken, pointer } from './json-patch.ts';
import { DATA_VOLUME, INIT_CONTAINER, PROXY_CONTAINER, TOKEN_VOLUME, initContainer, proxyContainer, sidecarVolumes, type InjectOptions, type SidecarParams } from './sidecar.ts';

export const STATUS_ANNOTATION = 'wasmesh.io/status';
export const INJECT_ANNOTATION = 'wasmesh.io/inject';
export const ISTIO_INJECT_ANNOTATION = 'sidecar.istio.io/inject';
export const APP_PORT_ANNOTATION = 'wasmesh.io/app-port';
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

/** Labels that differ per pod or per rollout: not passed to the proxy. */
const VOLATILE_LABELS = new Set(['pod-template-hash', 'controller-revision-hash', 'statefulset.kubernetes.io/pod-name', 'batch.kubernetes.io/controller-uid', 'controller-uid', 'batch.kubernetes.io/job-name', 'job-name']);

/** Kind -> API groups it is injected in, and the path of its pod template. */
const WORKLOAD_KINDS: Readonly<Record<string, { groups: readonly string[]; template: readonly string[] }>> = {
  Pod: { groups: [''], template: [] },
  Deployment: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  StatefulSet: { groups: ['apps'], template: ['spec', 'template'] },
  DaemonSet: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  ReplicaSet: { groups: ['apps', 'extensions'], template: ['spec', 'template'] },
  Job: { groups: ['batch'], template: ['spec', 'template'] },
  CronJob: { groups: ['batch'], template: ['spec', 'jobTemplate', 'spec', 'template'] },
};

/** A workload that cannot be injected as written; `path` is a JSON pointer into the document. */
export class InjectError extends Error {
  readonly code = 'WASMESH_ORCH_INJECT_INVALID';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'InjectError';
  }
}

export interface TemplateResult {
  /** JSON pointer of the pod template in the document ("" for a Pod). */
  path: string;
  /** "Deployment bookinfo/reviews-v1". */
  resource: string;
  injected: boolean;
  /** Why it was left alone (not injected). */
  reason?: string;
  /** Set when injected. */
  workload?: string;
  /** Something the user may want to know (a skipped host-network pod, ...). */
  warnings: string[];
}

export interface InjectResult {
  /** The document with sidecars; the input object itself when nothing changed, else a copy. */
  object: unknown;
  changed: boolean;
  /** One per pod template found (none for kinds that are not injected). */
  templates: TemplateResult[];
}

export interface InjectContext {
  /** The namespace the object is created in when its metadata has none (the admission request's). */
  namespace?: string;
}

/**
 * Injects every pod template of `doc`. Throws InjectError when a workload kind is malformed (no pod
 * template, no containers, an annotation with a bad value, a name already taken by the sidecar's).
 */
export function injectResource(doc: unknown, opts: InjectOptions, ctx: InjectContext = {}): InjectResult {
  if (!isObject(doc)) return { object: doc, changed: false, templates: [] };
  if (doc.kind === 'List' && Array.isArray(doc.items)) {
    const templates: TemplateResult[] = [];
    let items: unknown[] | undefined;
    doc.items.forEach((item, i) => {
      let r: InjectResult;
      try {
        r = injectResource(item, opts, ctx);
      } catch (e) {
        if (e instanceof InjectError) throw new InjectError(`/items/${i}${e.path}`, e.message);
        throw e;
      }
      templates.push(...r.templates.map((t) => ({ ...t, path: `/items/${i}${t.path}` })));
      if (r.changed) {
        items ??= [...(doc.items as unknown[])];
        items[i] = r.object;
      }
    });
    return items ? { object: { ...doc, items }, changed: true, templates } : { object: doc, changed: false, templates };
  }
  const kind = typeof doc.kind === 'string' ? doc.kind : '';
  const spec = WORKLOAD_KINDS[kind];
  if (!spec || !spec.groups.includes(apiGroup(doc.apiVersion))) return { object: doc, changed: false, templates: [] };

  const metadata = isObject(doc.metadata) ? doc.metadata : {};
  const resource = describe(kind, metadata, ctx);
  let template: unknown = doc;
  for (let i = 0; i < spec.template.length; i++) {
    template = isObject(template) ? template[spec.template[i]!] : undefined;
    if (!isObject(template)) {
      throw new InjectError(pointer(spec.template.slice(0, i + 1)), `${resource} has no ${spec.template.slice(0, i + 1).join('.')}: a ${kind} needs a pod template at ${spec.template.join('.')}`);
    }
  }
  const at = pointer(spec.template);
  let result: { template: Record<string, unknown> | undefined; result: TemplateResult };
  try {
    result = injectTemplate(template as Record<string, unknown>, { kind, metadata, resource, namespace: stringOr(metadata.namespace, ctx.namespace) }, opts);
  } catch (e) {
    if (e instanceof InjectError) throw new InjectError(`${at}${e.path}`, e.message);
    throw e;
  }
  result.result.path = at;
  if (!result.template) return { object: doc, changed: false, templates: [result.result] };
  return { object: setAt(doc, spec.template, result.template), changed: true, templates: [result.result] };
}

interface Owner {
  kind: string;
  metadata: Record<string, unknown>;
  resource: string;
  namespace: string | undefined;
}

function injectTemplate(template: Record<string, unknown>, owner: Owner, opts: InjectOptions): { template: Record<string, unknown> | undefined; result: TemplateResult } {
  const result: TemplateResult = { path: '', resource: owner.resource, injected: false, warnings: [] };
  const skip = (reason: string, warn = false) => {
    result.reason = reason;
    if (warn) result.warnings.push(`${owner.resource}: not injected: ${reason}`);
    return { template: undefined, result };
  };
  if (template.metadata !== undefined && !isObject(template.metadata)) throw new InjectError('/metadata', 'metadata must be an object');
  const metadata = isObject(template.metadata) ? template.metadata : {};
  const annotations = stringMap(metadata.annotations, '/metadata/annotations');
  const labels = stringMap(metadata.labels, '/metadata/labels');

  // The pod template's say wins; the resource's counts when the template says nothing.
  const decision = injectionSetting(annotations, labels) ?? injectionSetting(looseStringMap(owner.metadata.annotations), looseStringMap(owner.metadata.labels));
  if (decision?.enabled === false) return skip(`${decision.by} is "false"`);

  if (!isObject(template.spec)) throw new InjectError('/spec', `${owner.resource}: the pod spec is missing`);
  const spec = template.spec;
  const containers = objectList(spec.containers, '/spec/containers');
  const initContainers = spec.initContainers === undefined ? [] : objectList(spec.initContainers, '/spec/initContainers');
  const volumes = spec.volumes === undefined ? [] : objectList(spec.volumes, '/spec/volumes');
  if (containers.length === 0) throw new InjectError('/spec/containers', `${owner.resource}: the pod has no containers`);

  if (containers.some((c) => c.name === PROXY_CONTAINER)) return skip(`already injected (it has a ${PROXY_CONTAINER} container)`);
  if (spec.hostNetwork === true) return skip('hostNetwork pods share the node\'s network: their traffic cannot be redirected per pod', true);

  initContainers.forEach((c, i) => {
    if (c.name === INIT_CONTAINER || c.name === PROXY_CONTAINER) throw new InjectError(`/spec/initContainers/${i}/name`, `${owner.resource}: an init container is already named ${String(c.name)}, the name of the sidecar's`);
  });
  volumes.forEach((v, i) => {
    if (v.name === TOKEN_VOLUME || v.name === DATA_VOLUME) throw new InjectError(`/spec/volumes/${i}/name`, `${owner.resource}: a volume is already named ${String(v.name)}, the name of the sidecar's`);
  });

  const workload = labels.app || labels['app.kubernetes.io/name'] || resourceName(owner, labels);
  if (!workload) throw new InjectError('/metadata', `${owner.resource}: no workload name: give the pod template an app label or the resource a name`);

  const { app, tcp } = podPorts(annotations, containers);
  const redirect = trafficRedirect(annotations, app?.port, tcp.map((t) => t.port));
  const proxyLabels: Array<[string, string]> = Object.entries(labels).filter(([k]) => !VOLATILE_LABELS.has(k));
  if (!proxyLabels.some(([k]) => k === 'app')) proxyLabels.unshift(['app', workload]);
  const serviceAccount = stringOr(spec.serviceAccountName, stringOr(spec.serviceAccount, 'default'))!;
  const params: SidecarParams = {
    workload,
    namespace: owner.namespace,
    serviceAccount,
    labels: proxyLabels,
    appPort: app?.port,
    appPortName: app?.name ?? 'http',
    tcpPorts: tcp,
    redirect,
  };

  const status = {
    initContainers: [INIT_CONTAINER],
    containers: [PROXY_CONTAINER],
    volumes: [TOKEN_VOLUME, DATA_VOLUME],
    image: opts.image,
  };
  const newAnnotations: Record<string, unknown> = { ...(isObject(metadata.annotations) ? metadata.annotations : {}), [STATUS_ANNOTATION]: JSON.stringify(status) };
  if (newAnnotations[DEFAULT_CONTAINER_ANNOTATION] === undefined && typeof containers[0]!.name === 'string') newAnnotations[DEFAULT_CONTAINER_ANNOTATION] = containers[0]!.name;
  const out: Record<string, unknown> = {
    ...template,
    // Istio's sidecar label: clients' auto mTLS sends mTLS to pods that carry it. A pod that sets it
    // itself (e.g. "disabled") keeps its value, which also reaches the proxy's --labels and so the
    // endpoint it registers (registration adds "istio" otherwise).
    metadata: { ...metadata, labels: { ...(isObject(metadata.labels) ? metadata.labels : {}), ...(labels[TLS_MODE_LABEL] === undefined ? { [TLS_MODE_LABEL]: 'istio' } : {}) }, annotations: newAnnotations },
    spec: {
      ...spec,
      // Last: the app's own init containers run before the redirection exists, so they reach the
      // network without a proxy (one is not running yet).
      initContainers: [...((spec.initContainers as unknown[] | undefined) ?? []), initContainer(opts, redirect)],
      containers: [...(spec.containers as unknown[]), proxyContainer(opts, params)],
      volumes: [...((spec.volumes as unknown[] | undefined) ?? []), ...sidecarVolumes(opts)],
    },
  };
  result.injected = true;
  result.workload = workload;
  if (app === undefined && tcp.length === 0) result.warnings.push(`${owner.resource}: no containerPort and no ${APP_PORT_ANNOTATION} annotation: inbound traffic is not captured and the workload registers no endpoint`);
  return { template: out, result };
}

/** What the inject annotations or labels say (and which one said it); undefined when none is set. */
function injectionSetting(annotations: Record<string, string>, labels: Record<string, string>): { enabled: boolean; by: string } | undefined {
  for (const key of [INJECT_ANNOTATION, ISTIO_INJECT_ANNOTATION]) {
    for (const [where, map] of [['label', labels], ['annotation', annotations]] as const) {
      const v = map[key]?.trim();
      if (v === undefined) continue;
      // Go's strconv.ParseBool, which Istio uses; anything else is ignored.
      if (/^(false|f|0)$/i.test(v)) return { enabled: false, by: `${where} ${key}` };
      if (/^(true|t|1)$/i.test(v)) return { enabled: true, by: `${where} ${key}` };
    }
  }
  return undefined;
}

/**
 * Istio's protocol selection by port name (`<protocol>[-<suffix>]`) or `appProtocol`: these ports
 * carry TCP the sidecar proxies as bytes, not HTTP.
 */
const TCP_PROTOCOLS = new Set(['tcp', 'tls', 'mongo', 'mysql', 'redis']);

function isTcpPort(name: string | undefined, appProtocol: unknown): boolean {
  if (typeof appProtocol === 'string' && appProtocol !== '') return TCP_PROTOCOLS.has(appProtocol.toLowerCase());
  if (name === undefined) return false;
  return TCP_PROTOCOLS.has(name.toLowerCase().split('-')[0]!);
}

/**
 * The app's HTTP port (the annotation's, else the first containerPort that is not a TCP port) and its
 * TCP ports (named tcp, tcp-*, tls-*, mongo-*, ... or with such an appProtocol), each served by the
 * sidecar's inbound TCP path under capture and registered under its name (`tcp` for an unnamed port,
 * which Kubernetes allows only when the container has one).
 */
function podPorts(annotations: Record<string, string>, containers: Record<string, unknown>[]): { app: { port: number; name: string | undefined } | undefined; tcp: Array<{ port: number; name: string }> } {
  const declared: Array<{ port: number; name: string | undefined; tcp: boolean }> = [];
  containers.forEach((c, i) => {
    if (c.ports === undefined) return;
    objectList(c.ports, `/spec/containers/${i}/ports`).forEach((p, j) => {
      const protocol = p.protocol === undefined ? 'TCP' : p.protocol;
      if (protocol !== 'TCP') return;
      const n = Number(p.containerPort);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InjectError(`/spec/containers/${i}/ports/${j}/containerPort`, `containerPort must be a port number (1-65535), got ${JSON.stringify(p.containerPort)}`);
      const name = typeof p.name === 'string' && p.name !== '' ? p.name : undefined;
      declared.push({ port: n, name, tcp: isTcpPort(name, p.appProtocol) });
    });
  });
  const fromAnnotation = annotations[APP_PORT_ANNOTATION];
  let app: { port: number; name: string | undefined } | undefined;
  if (fromAnnotation !== undefined) {
    const n = Number(fromAnnotation.trim());
    if (!/^\d{1,5}$/.test(fromAnnotation.trim()) || n < 1 || n > 65535) throw new InjectError(`/metadata/annotations/${escapePointerToken(APP_PORT_ANNOTATION)}`, `${APP_PORT_ANNOTATION} must be a port number (1-65535), got "${fromAnnotation}"`);
    app = { port: n, name: declared.find((d) => d.port === n)?.name };
  } else {
    const first = declared.find((d) => !d.tcp);
    app = first && { port: first.port, name: first.name };
  }
  const tcp: Array<{ port: number; name: string }> = [];
  for (const d of declared) if (d.tcp && d.port !== app?.port && !tcp.some((t) => t.port === d.port)) tcp.push({ port: d.port, name: d.name ?? 'tcp' });
  return { app, tcp };
}

function trafficRedirect(annotations: Record<string, string>, app: number | undefined, tcp: readonly number[]): TrafficRedirect {
  const read = <T>(name: string, parse: (v: string) => T): T | undefined => {
    for (const key of [`traffic.wasmesh.io/${name}`, `traffic.sidecar.istio.io/${name}`]) {
      const v = annotations[key];
      if (v === undefined) continue;
      try {
        return parse(v);
      } catch (e) {
        throw new InjectError(`/metadata/annotations/${escapePointerToken(key)}`, `annotation ${key}: ${(e as Error).message}`);
      }
    }
    return undefined;
  };
  const ports = (v: string) => parsePortList(v, false) as number[];
  const meshPorts = [DEFAULT_ADMIN_PORT, DEFAULT_STATUS_PORT, DISCOVERY_PORT];
  return {
    outboundPort: DEFAULT_OUTBOUND_PORT,
    inboundPort: DEFAULT_INBOUND_PORT,
    proxyUid: PROXY_UID,
    proxyGid: PROXY_GID,
    // The proxy forwards inbound HTTP to one port (--app-port) and each TCP port to itself, so only
    // those ports are captured unless the annotation says otherwise.
    includeInboundPorts: read('includeInboundPorts', (v) => parsePortList(v, true)) ?? [...(app === undefined ? [] : [app]), ...tcp],
    excludeInboundPorts: [...(read('excludeInboundPorts', ports) ?? []), ...meshPorts],
    includeOutboundIPRanges: read('includeOutboundIPRanges', (v) => parseCidrList(v, true)) ?? '*',
    excludeOutboundIPRanges: (read('excludeOutboundIPRanges', (v) => parseCidrList(v, false)) as string[] | undefined) ?? [],
    includeOutboundPorts: read('includeOutboundPorts', ports) ?? [],
    excludeOutboundPorts: [...(read('excludeOutboundPorts', ports) ?? []), ...meshPorts],
  };
}

/** The name of the workload when no label gives one: the resource's, a pod's without its generated suffix. */
function resourceName(owner: Owner, labels: Record<string, string>): string | undefined {
  const name = stringOr(owner.metadata.name, undefined);
  if (name) return name;
  const generate = stringOr(owner.metadata.generateName, undefined);
  if (!generate) return undefined;
  let base = generate.replace(/-+$/, '');
  const hash = labels['pod-template-hash'];
  if (hash && base.endsWith(`-${hash}`)) base = base.slice(0, -hash.length - 1);
  return base || undefined;
}

function describe(kind: string, metadata: Record<string, unknown>, ctx: InjectContext): string {
  const ns = stringOr(metadata.namespace, ctx.namespace);
  const name = stringOr(metadata.name, undefined) ?? (typeof metadata.generateName === 'string' ? `${metadata.generateName}<generated>` : '<unnamed>');
  return `${kind} ${ns ? `${ns}/` : ''}${name}`;
}

function apiGroup(apiVersion: unknown): string {
  if (typeof apiVersion !== 'string') return '';
  const i = apiVersion.indexOf('/');
  return i < 0 ? '' : apiVersion.slice(0, i);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringOr<T extends string | undefined>(v: unknown, fallback: T): string | T {
  return typeof v === 'string' && v !== '' ? v : fallback;
}

/** Labels or annotations as strings (YAML may have read `version: 1` as a number). */
function stringMap(v: unknown, path: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new InjectError(path, `${path.split('/').pop()} must be a map of strings`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (val !== undefined && val !== null) out[k] = String(val);
  return out;
}

/** The resource's own labels or annotations, for the opt-out only: anything malformed reads as none. */
function looseStringMap(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

function objectList(v: unknown, path: string): Record<string, unknown>[] {
  if (!Array.isArray(v)) throw new InjectError(path, `${path.split('/').pop()} must be a list`);
  v.forEach((item, i) => {
    if (!isObject(item)) throw new InjectError(`${path}/${i}`, `${path.split('/').pop()}[${i}] must be an object`);
  });
  return v as Record<string, unknown>[];
}

/** A copy of `obj` with the value at `path` replaced (copies only along the path). */
function setAt(obj: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  if (path.length === 0) return value as Record<string, unknown>;
  const [head, ...rest] = path as [string, ...string[]];
  return { ...obj, [head]: setAt(obj[head] as Record<string, unknown>, rest, value) };
}
