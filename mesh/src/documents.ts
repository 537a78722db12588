// Config documents: parsing YAML/JSON text into Kubernetes-style documents that remember where they
// came from, and the TypeScript shapes of the Istio kinds we accept (mirroring schemas/json/).
//
// Parsing never judges content: a document that is not an object, or has an unknown kind, is still
// returned, and validation (validate.ts) reports it with its source. Only text that is not YAML/JSON
// at all produces errors here.

import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, isMap, isSeq, parseAllDocuments } from 'yaml';
import type { Node as YamlNode } from 'yaml';

// ---------------------------------------------------------------------------------------------
// Documents and errors

export interface DocumentSource {
  /** File name as the caller gave it ("mesh.yaml", "/etc/wasmesh/mesh.yaml", "<stdin>", "<inline>"). */
  readonly file: string;
  /**
   * 1-based position of the document in the file, counting documents after a JSON array or a
   * `kind: List` has been flattened into its items. Empty YAML documents are not counted.
   */
  readonly index: number;
  /** 1-based line where the document starts, when known. */
  readonly line?: number;
}

export interface ConfigDocument {
  readonly source: DocumentSource;
  /** The document as parsed. Nothing in this package modifies it. */
  readonly value: unknown;
}

/** A problem with one document (or a file), as validation and parsing report it. */
export interface ConfigError {
  /** "VirtualService default/reviews (mesh.yaml#3)", or "mesh.yaml#3" when kind or name is unknown. */
  readonly document: string;
  /** JSON pointer to the offending field ("/spec/http/0/route/1/weight"); "" for the whole document. */
  readonly path: string;
  readonly message: string;
  readonly source?: DocumentSource;
  /** "VirtualService default/reviews", when the document has a kind and a name. */
  readonly resource?: string;
}

export interface ParseResult {
  readonly documents: readonly ConfigDocument[];
  readonly errors: readonly ConfigError[];
}

/** `<file>#<index>`, the short form of a source used in messages. */
export function formatSource(source: DocumentSource): string {
  return `${source.file}#${source.index}`;
}

/**
 * Parses YAML (one or more `---`-separated documents) or JSON text. A top-level array, and a
 * document `{kind: List, items: [...]}`, are flattened into their items.
 */
export function parseDocuments(text: string, file: string): ParseResult {
  const documents: ConfigDocument[] = [];
  const errors: ConfigError[] = [];
  let index = 0;
  const push = (value: unknown, line?: number): void => {
    index += 1;
    documents.push({ source: line === undefined ? { file, index } : { file, index, line }, value });
  };
  const pushAll = (value: unknown, line?: number, itemLines?: readonly (number | undefined)[]): void => {
    if (Array.isArray(value)) {
      value.forEach((item, i) => push(item, itemLines?.[i]));
    } else if (isListObject(value)) {
      (value.items as unknown[]).forEach((item, i) => push(item, itemLines?.[i]));
    } else {
      push(value, line);
    }
  };

  // JSON first when it looks like JSON: JSON.parse is exact about JSON, and accepts tab indentation
  // that YAML forbids. On failure fall through to YAML, which reports a position.
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      pushAll(JSON.parse(text) as unknown);
      return { documents, errors };
    } catch {
      // not JSON: parse as YAML below
    }
  }

  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const yamlDocs = Array.isArray(parsed) ? parsed : [];
  for (const doc of yamlDocs) {
    if (doc.errors.length > 0) {
      index += 1;
      const source: DocumentSource = { file, index };
      for (const e of doc.errors) {
        const pos = lineCounter.linePos(e.pos[0]);
        errors.push({
          document: formatSource(source),
          path: '',
          message: `invalid YAML at line ${pos.line}, column ${pos.col}: ${firstLine(e.message)}`,
          source,
        });
      }
      continue;
    }
    const contents = doc.contents as YamlNode | null;
    if (contents === null) continue;
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    const line = nodeLine(contents, lineCounter);
    let itemLines: (number | undefined)[] | undefined;
    if (isSeq(contents)) {
      itemLines = contents.items.map((n) => nodeLine(n as YamlNode, lineCounter));
    } else if (isMap(contents) && isListObject(value)) {
      const items = contents.get('items', true);
      if (isSeq(items)) itemLines = items.items.map((n) => nodeLine(n as YamlNode, lineCounter));
    }
    pushAll(value, line, itemLines);
  }
  return { documents, errors };
}

/** Wraps already-parsed objects (from an API, or tests) as documents of a pseudo file. */
export function fromObjects(values: readonly unknown[], file = '<inline>'): ConfigDocument[] {
  return values.map((value, i) => ({ source: { file, index: i + 1 }, value }));
}

const CONFIG_EXTENSIONS = /\.(ya?ml|json)$/i;

/**
 * Reads and parses files. A directory contributes its *.yaml, *.yml and *.json files (not
 * recursively, in name order). "-" reads standard input. Unreadable files are reported as errors.
 */
export async function readDocumentFiles(paths: readonly string[]): Promise<ParseResult> {
  const documents: ConfigDocument[] = [];
  const errors: ConfigError[] = [];
  const add = (result: ParseResult): void => {
    documents.push(...result.documents);
    errors.push(...result.errors);
  };
  for (const path of paths) {
    try {
      if (path === '-') {
        add(parseDocuments(await readStdin(), '<stdin>'));
        continue;
      }
      if ((await stat(path)).isDirectory()) {
        const names = (await readdir(path)).filter((n) => CONFIG_EXTENSIONS.test(n)).sort();
        for (const name of names) {
          const file = join(path, name);
          add(parseDocuments(await readFile(file, 'utf8'), file));
        }
        continue;
      }
      add(parseDocuments(await readFile(path, 'utf8'), path));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      errors.push({ document: path, path: '', message: `cannot read: ${e.code ?? e.message}` });
    }
  }
  return { documents, errors };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function isListObject(value: unknown): value is { kind: 'List'; items: unknown[] } {
  return isRecord(value) && value.kind === 'List' && Array.isArray(value.items);
}

function nodeLine(node: YamlNode | null | undefined, lineCounter: LineCounter): number | undefined {
  const range = node?.range;
  return range ? lineCounter.linePos(range[0]).line : undefined;
}

function firstLine(message: string): string {
  return message.split('\n')[0]!;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Resource identity

/** Istio's default namespace for resources that do not name one. */
export const DEFAULT_NAMESPACE = 'default';
/** Istio's root namespace: selector-less policies there apply to the whole mesh. */
export const ROOT_NAMESPACE = 'istio-system';

export interface ResourceRef {
  kind: string;
  name: string;
  namespace: string;
}

/** Kind, name and namespace of a document, when it has a kind and a string name. */
export function resourceRef(value: unknown): ResourceRef | undefined {
  if (!isRecord(value) || typeof value.kind !== 'string' || !isRecord(value.metadata)) return undefined;
  const { name, namespace } = value.metadata;
  if (typeof name !== 'string' || name === '') return undefined;
  return { kind: value.kind, name, namespace: typeof namespace === 'string' && namespace !== '' ? namespace : DEFAULT_NAMESPACE };
}

/** "VirtualService default/reviews". */
export function formatResource(ref: ResourceRef): string {
  return `${ref.kind} ${ref.namespace}/${ref.name}`;
}

/** "VirtualService default/reviews (mesh.yaml#3)", or "mesh.yaml#3" for a document without identity. */
export function describeDocument(doc: ConfigDocument): string {
  const ref = resourceRef(doc.value);
  return ref ? `${formatResource(ref)} (${formatSource(doc.source)})` : formatSource(doc.source);
}

// ---------------------------------------------------------------------------------------------
// The Istio kinds we accept, as TypeScript shapes (schemas/json/*.schema.json are authoritative).

export type Labels = Readonly<Record<string, string>>;

export interface Metadata {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Labels;
  resourceVersion?: string;
  generation?: number;
}

export interface Resource<K extends string, S> {
  apiVersion: string;
  kind: K;
  metadata: Metadata;
  spec: S;
}

export interface WorkloadSelector {
  matchLabels?: Labels;
}

export type PortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'HTTPS' | 'TLS' | 'TCP';

export interface ServicePort {
  number: number;
  protocol?: PortProtocol;
  name: string;
  targetPort?: number;
}

export interface WorkloadEntrySpec {
  address: string;
  ports?: Readonly<Record<string, number>>;
  labels?: Labels;
  weight?: number;
  network?: string;
  locality?: string;
  serviceAccount?: string;
}

export interface ServiceEntrySpec {
  hosts: string[];
  addresses?: string[];
  ports: ServicePort[];
  location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution?: 'NONE' | 'STATIC' | 'DNS';
  endpoints?: Omit<WorkloadEntrySpec, 'serviceAccount'>[];
  workloadSelector?: { labels: Labels };
  exportTo?: string[];
}

export interface StringMatchSpec {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface HeaderOperationsSpec {
  set?: Readonly<Record<string, string>>;
  add?: Readonly<Record<string, string>>;
  remove?: string[];
}

export interface HeadersSpec {
  request?: HeaderOperationsSpec;
  response?: HeaderOperationsSpec;
}

export interface DestinationSpec {
  host: string;
  subset?: string;
  port?: { number: number };
}

export interface HTTPMatchRequest {
  name?: string;
  uri?: StringMatchSpec;
  method?: StringMatchSpec;
  authority?: StringMatchSpec;
  headers?: Readonly<Record<string, StringMatchSpec>>;
  withoutHeaders?: Readonly<Record<string, StringMatchSpec>>;
  queryParams?: Readonly<Record<string, StringMatchSpec>>;
  port?: number;
  sourceLabels?: Labels;
  ignoreUriCase?: boolean;
}

export interface HTTPRouteDestination {
  destination: DestinationSpec;
  weight?: number;
  headers?: HeadersSpec;
}

export interface Percent {
  value?: number;
}

export interface HTTPRoute {
  name?: string;
  match?: HTTPMatchRequest[];
  route?: HTTPRouteDestination[];
  redirect?: { uri?: string; authority?: string; port?: number; scheme?: string; redirectCode?: number };
  directResponse?: { status: number; body?: { string: string } };
  rewrite?: { uri?: string; authority?: string };
  timeout?: string;
  retries?: { attempts?: number; perTryTimeout?: string; retryOn?: string; retryRemoteLocalities?: boolean };
  fault?: {
    delay?: { fixedDelay: string; percentage?: Percent };
    abort?: { httpStatus?: number; grpcStatus?: string; percentage?: Percent };
  };
  mirror?: DestinationSpec;
  mirrorPercentage?: Percent;
  headers?: HeadersSpec;
}

export interface VirtualServiceSpec {
  hosts: string[];
  gateways?: string[];
  exportTo?: string[];
  http?: HTTPRoute[];
}

export type SimpleLB = 'UNSPECIFIED' | 'LEAST_CONN' | 'RANDOM' | 'PASSTHROUGH' | 'ROUND_ROBIN' | 'LEAST_REQUEST';

export interface LoadBalancerSettings {
  simple?: SimpleLB;
  consistentHash?: {
    httpHeaderName?: string;
    httpCookie?: { name: string; path?: string; ttl?: string };
    useSourceIp?: boolean;
    httpQueryParameterName?: string;
    minimumRingSize?: number;
  };
}

export interface ConnectionPoolSettings {
  tcp?: { maxConnections?: number; connectTimeout?: string; idleTimeout?: string };
  http?: {
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    maxRequestsPerConnection?: number;
    maxRetries?: number;
    idleTimeout?: string;
    h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
  };
}

export interface OutlierDetectionSpec {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  interval?: string;
  baseEjectionTime?: string;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

/** wasmesh extension (no Istio field): active health checks, Envoy semantics. Exactly one of http, grpc, tcp. */
export interface HealthCheckSpec {
  http?: { path: string; host?: string; expectedStatuses?: Array<number | { start: number; end: number }> };
  grpc?: { serviceName?: string };
  tcp?: Record<string, never>;
  interval?: string;
  timeout?: string;
  healthyThreshold?: number;
  unhealthyThreshold?: number;
}

export interface ClientTLSSettings {
  mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  sni?: string;
  subjectAltNames?: string[];
}

export interface PortTrafficPolicy {
  port: { number: number };
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetectionSpec;
  /** wasmesh extension. */
  healthCheck?: HealthCheckSpec;
  tls?: ClientTLSSettings;
}

export interface TrafficPolicy {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetectionSpec;
  /** wasmesh extension. */
  healthCheck?: HealthCheckSpec;
  tls?: ClientTLSSettings;
  portLevelSettings?: PortTrafficPolicy[];
}

export interface Subset {
  name: string;
  labels?: Labels;
  trafficPolicy?: TrafficPolicy;
}

export interface DestinationRuleSpec {
  host: string;
  trafficPolicy?: TrafficPolicy;
  subsets?: Subset[];
  exportTo?: string[];
  workloadSelector?: WorkloadSelector;
}

export type WasmPhase = 'UNSPECIFIED_PHASE' | 'AUTHN' | 'AUTHZ' | 'STATS';
export type WorkloadMode = 'UNDEFINED' | 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER';

export interface WasmPluginSpec {
  selector?: WorkloadSelector;
  url: string;
  sha256?: string;
  /** wasmesh extension: a second module version taking `weight` percent of the streams. */
  canary?: { url: string; sha256?: string; weight: number };
  imagePullPolicy?: 'UNSPECIFIED_POLICY' | 'IfNotPresent' | 'Always';
  pluginName?: string;
  pluginConfig?: Record<string, unknown>;
  phase?: WasmPhase;
  priority?: number;
  failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
  /** wasmesh extension: fuel units (about one wasm instruction each) one callback may use. */
  cpuBudget?: number;
  /** wasmesh extension: the same for VM startup (_initialize, on_vm_start, on_configure). */
  startupCpuBudget?: number;
  vmConfig?: { env?: { name: string; value?: string; valueFrom?: 'INLINE' | 'HOST' }[] };
  match?: { mode?: WorkloadMode; ports?: { number: number }[] }[];
  type?: 'UNSPECIFIED_PLUGIN_TYPE' | 'HTTP';
}

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationSpec {
  selector?: WorkloadSelector;
  mtls?: { mode?: MtlsMode };
  portLevelMtls?: Readonly<Record<string, { mode?: MtlsMode }>>;
}

export interface AuthorizationPolicySpec {
  selector?: WorkloadSelector;
  action?: 'ALLOW' | 'DENY' | 'AUDIT';
  rules?: {
    from?: { source: Readonly<Record<string, string[]>> }[];
    to?: { operation: Readonly<Record<string, string[]>> }[];
    when?: { key: string; values?: string[]; notValues?: string[] }[];
  }[];
}

export type ServiceEntry = Resource<'ServiceEntry', ServiceEntrySpec>;
export type WorkloadEntry = Resource<'WorkloadEntry', WorkloadEntrySpec>;
export type VirtualService = Resource<'VirtualService', VirtualServiceSpec>;
export type DestinationRule = Resource<'DestinationRule', DestinationRuleSpec>;
export type WasmPlugin = Resource<'WasmPlugin', WasmPluginSpec>;
export type PeerAuthentication = Resource<'PeerAuthentication', PeerAuthenticationSpec>;
export type AuthorizationPolicy = Resource<'AuthorizationPolicy', AuthorizationPolicySpec>;

export type MeshResource =
  | ServiceEntry
  | WorkloadEntry
  | VirtualService
  | DestinationRule
  | WasmPlugin
  | PeerAuthentication
  | AuthorizationPolicy;

export type Kind = MeshResource['kind'];

export const KINDS: readonly Kind[] = [
  'ServiceEntry',
  'WorkloadEntry',
  'VirtualService',
  'DestinationRule',
  'WasmPlugin',
  'PeerAuthentication',
  'AuthorizationPolicy',
];

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && (KINDS as readonly string[]).includes(value);
}

/** The namespace of a resource, defaulted. */
export function namespaceOf(resource: { metadata: Metadata }): string {
  return resource.metadata.namespace || DEFAULT_NAMESPACE;
}
