// Config documents: parsing YAML/JSON text into Kubernetes-style documents that remember where they
// came from, and the TypeScript shapes of the Istio kinds we accept (mirroring schemas/json/).
//
// Parsing never judges content: a document that is not an object, or has an unknown kind, is still
// returned, and validation (validate.ts) reports it with its source. Only text that is not YAML/JSON
// at all, or that passes a limit of input-limits.ts, produces errors here.

import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { INPUT_LIMITS, formatSize, jsonNestingPast, valueLimitProblem } from './input-limits.ts';
import { parseYamlText, type TextPosition } from './yaml-text.ts';

export type { TextPosition } from './yaml-text.ts';
import type { RateLimitPolicy } from './translate/ratelimit.ts';
import type { MeshConfig, Telemetry } from './telemetry/documents.ts';

export type { RateLimitPolicy } from './translate/ratelimit.ts';

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
  /**
   * For documents parsed from YAML text: the 1-based line of the node a JSON pointer names (a
   * mapping key's line for a field), or of its nearest ancestor in the text when the node is not
   * there (a missing field).
   */
  readonly lineOf?: (pointer: string) => number | undefined;
  /** The same with the 1-based column (the key's first character for a field). */
  readonly positionOf?: (pointer: string) => TextPosition | undefined;
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
  /** 1-based line of the offending field in its file, when the document came from YAML text. */
  readonly line?: number;
  /** 1-based column there (the field's key), when known. */
  readonly column?: number;
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
 * document `{kind: List, items: [...]}`, are flattened into their items. Text past a limit of
 * INPUT_LIMITS (size, documents, depth, YAML aliases) gives an error naming the document.
 */
export function parseDocuments(text: string, file: string): ParseResult {
  const documents: ConfigDocument[] = [];
  const errors: ConfigError[] = [];
  let index = 0;
  type PositionOf = (pointer: string) => TextPosition | undefined;
  const push = (value: unknown, line?: number, positionOf?: PositionOf): void => {
    index += 1;
    const lineOf = positionOf && ((pointer: string) => positionOf(pointer)?.line);
    documents.push({ source: line === undefined ? { file, index } : { file, index, line }, value, ...(positionOf ? { lineOf, positionOf } : {}) });
  };
  const pushAll = (value: unknown, line?: number, itemLines?: readonly (number | undefined)[], positionOf?: PositionOf): void => {
    // Items of a flattened array or List are looked up below their place in the whole document.
    const below = (prefix: string): PositionOf | undefined => positionOf && ((pointer) => positionOf(`${prefix}${pointer}`));
    if (Array.isArray(value)) {
      value.forEach((item, i) => push(item, itemLines?.[i], below(`/${i}`)));
    } else if (isListObject(value)) {
      (value.items as unknown[]).forEach((item, i) => push(item, itemLines?.[i], below(`/items/${i}`)));
    } else {
      push(value, line, positionOf);
    }
  };
  const wholeText = (message: string): ParseResult => ({ documents: [], errors: [{ document: file, path: '', message }] });

  const bytes = Buffer.byteLength(text);
  if (bytes > INPUT_LIMITS.maxTextBytes) {
    return wholeText(`${formatSize(bytes)} of text, more than the limit of ${formatSize(INPUT_LIMITS.maxTextBytes)}: split it into several files`);
  }

  // JSON first when it looks like JSON: JSON.parse is exact about JSON, and accepts tab indentation
  // that YAML forbids. On failure fall through to YAML, which reports a position.
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    const deep = jsonNestingPast(text, INPUT_LIMITS.maxDepth + 2);
    if (deep !== undefined) return wholeText(`nests deeper than ${INPUT_LIMITS.maxDepth} levels (the limit) at line ${lineAt(text, deep)}`);
    let json: unknown;
    let isJson = true;
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      isJson = false; // not JSON: parse as YAML below
    }
    if (isJson) {
      pushAll(json);
      const problems = documentLimitErrors(documents);
      return problems.length > 0 ? { documents: [], errors: problems } : { documents, errors };
    }
  }

  const yaml = parseYamlText(text);
  for (const entry of yaml.entries) {
    if (entry.ok) {
      pushAll(entry.value, entry.line, entry.itemLines, entry.positionOf);
      continue;
    }
    index += 1;
    const source: DocumentSource = entry.line === undefined ? { file, index } : { file, index, line: entry.line };
    const ref = resourceRef(entry.identity);
    for (const problem of entry.problems) {
      errors.push({
        document: ref ? `${formatResource(ref)} (${formatSource(source)})` : formatSource(source),
        path: '',
        message: problem.message,
        source,
        ...(ref ? { resource: formatResource(ref) } : {}),
        ...(problem.line !== undefined ? { line: problem.line } : {}),
        ...(problem.column !== undefined ? { column: problem.column } : {}),
      });
    }
  }
  if (yaml.textProblem) errors.push({ document: file, path: '', message: yaml.textProblem });
  else if (documents.length > INPUT_LIMITS.maxDocuments) errors.push({ document: file, path: '', message: `${documents.length} documents, more than the limit of ${INPUT_LIMITS.maxDocuments}: split the text` });
  return { documents, errors };
}

/**
 * Documents that came as objects (a JSON body, a JSON file) against INPUT_LIMITS: how many, how
 * deep and how large each is. YAML text is checked as it is parsed (parseDocuments).
 */
export function documentLimitErrors(documents: readonly ConfigDocument[]): ConfigError[] {
  if (documents.length > INPUT_LIMITS.maxDocuments) {
    const file = documents[0]!.source.file;
    return [{ document: file, path: '', message: `${documents.length} documents, more than the limit of ${INPUT_LIMITS.maxDocuments}: split them` }];
  }
  const errors: ConfigError[] = [];
  for (const doc of documents) {
    const problem = valueLimitProblem(doc.value);
    if (problem) errors.push({ document: describeDocument(doc), path: problem.path, message: problem.message, source: doc.source, ...resourceOf(doc) });
  }
  return errors;
}

function resourceOf(doc: ConfigDocument): { resource?: string } {
  const ref = resourceRef(doc.value);
  return ref ? { resource: formatResource(ref) } : {};
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
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
  // A file past the text limit is refused before it is read into memory.
  const readFileWithin = async (file: string, size: number): Promise<void> => {
    if (size > INPUT_LIMITS.maxTextBytes) {
      errors.push({ document: file, path: '', message: `${formatSize(size)} of text, more than the limit of ${formatSize(INPUT_LIMITS.maxTextBytes)}: split it into several files` });
      return;
    }
    add(parseDocuments(await readFile(file, 'utf8'), file));
  };
  for (const path of paths) {
    try {
      if (path === '-') {
        const text = await readStdin(INPUT_LIMITS.maxTextBytes);
        if (text === undefined) errors.push({ document: '<stdin>', path: '', message: `more than ${formatSize(INPUT_LIMITS.maxTextBytes)} of text (the limit): split it into several files` });
        else add(parseDocuments(text, '<stdin>'));
        continue;
      }
      const info = await stat(path);
      if (info.isDirectory()) {
        const names = (await readdir(path)).filter((n) => CONFIG_EXTENSIONS.test(n)).sort();
        for (const name of names) {
          const file = join(path, name);
          await readFileWithin(file, (await stat(file)).size);
        }
        continue;
      }
      await readFileWithin(path, info.size);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      errors.push({ document: path, path: '', message: `cannot read: ${e.code ?? e.message}` });
    }
  }
  return { documents, errors };
}

/** Standard input as text, or undefined once it passes `limit` bytes. */
async function readStdin(limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isListObject(value: unknown): value is { kind: 'List'; items: unknown[] } {
  return isRecord(value) && value.kind === 'List' && Array.isArray(value.items);
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

/** MONGO, MYSQL and REDIS are opaque to the proxy: proxied as TCP, as Envoy does without their protocol filters. */
export type PortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'HTTPS' | 'TLS' | 'TCP' | 'MONGO' | 'MYSQL' | 'REDIS';

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
  /** Only on these gateways (`mesh` = the sidecars); replaces the VirtualService's `gateways` for this match. */
  gateways?: string[];
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

/** VirtualService `tcp[].match[]` (Istio L4MatchAttributes). */
export interface L4MatchAttributes {
  destinationSubnets?: string[];
  port?: number;
  sourceLabels?: Labels;
  gateways?: string[];
  sourceNamespace?: string;
}

/** VirtualService `tls[].match[]` (Istio TLSMatchAttributes): sniHosts is required. */
export interface TLSMatchAttributes extends L4MatchAttributes {
  sniHosts: string[];
}

export interface RouteDestination {
  destination: DestinationSpec;
  weight?: number;
}

export interface TCPRoute {
  match?: L4MatchAttributes[];
  route?: RouteDestination[];
}

export interface TLSRoute {
  match: TLSMatchAttributes[];
  route?: RouteDestination[];
}

export interface VirtualServiceSpec {
  hosts: string[];
  gateways?: string[];
  exportTo?: string[];
  http?: HTTPRoute[];
  tcp?: TCPRoute[];
  tls?: TLSRoute[];
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
  /** SIMPLE, MUTUAL: PEM roots file on the proxy's host (default: the system's roots). */
  caCertificates?: string;
  /** MUTUAL: PEM client certificate chain file on the proxy's host. */
  clientCertificate?: string;
  /** MUTUAL: PEM private key file on the proxy's host. */
  privateKey?: string;
  insecureSkipVerify?: boolean;
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
  targetRefs?: { group?: string; kind: string; name: string; namespace?: string }[];
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
  /** wasmesh extension: VMs in the plugin's pool in each proxy (1..16); a trap fails only its own VM's streams. */
  vms?: number;
  vmConfig?: { env?: { name: string; value?: string; valueFrom?: 'INLINE' | 'HOST' }[] };
  match?: { mode?: WorkloadMode; ports?: { number: number }[] }[];
  /** HTTP (default): the HTTP filter chain; NETWORK: the TCP proxy's L4 filter chain. */
  type?: 'UNSPECIFIED_PLUGIN_TYPE' | 'HTTP' | 'NETWORK';
}

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationSpec {
  selector?: WorkloadSelector;
  mtls?: { mode?: MtlsMode };
  portLevelMtls?: Readonly<Record<string, { mode?: MtlsMode }>>;
}

export interface AuthorizationPolicySpec {
  selector?: WorkloadSelector;
  targetRefs?: { group?: string; kind: string; name: string; namespace?: string }[];
  action?: 'ALLOW' | 'DENY' | 'AUDIT';
  rules?: {
    from?: { source: Readonly<Record<string, string[]>> }[];
    to?: { operation: Readonly<Record<string, string[]>> }[];
    when?: { key: string; values?: string[]; notValues?: string[] }[];
  }[];
}

export interface JWTRule {
  issuer: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: { name: string; prefix?: string }[];
  fromParams?: string[];
  fromCookies?: string[];
  outputPayloadToHeader?: string;
  outputClaimToHeaders?: { header: string; claim: string }[];
  forwardOriginalToken?: boolean;
  timeout?: string;
}

export interface RequestAuthenticationSpec {
  selector?: WorkloadSelector;
  targetRefs?: { group?: string; kind: string; name: string; namespace?: string }[];
  jwtRules?: JWTRule[];
}

export type GatewayTLSProtocol = 'TLS_AUTO' | 'TLSV1_0' | 'TLSV1_1' | 'TLSV1_2' | 'TLSV1_3';

export interface GatewayServer {
  port: { number: number; protocol: 'HTTP' | 'HTTPS' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS'; name?: string; targetPort?: number };
  /** wasmesh: the address the listener binds (default: the gateway proxy's --host). */
  bind?: string;
  /** `[namespace/]host`: `*\/x`, `./x`, `ns/x`, or a bare host (any namespace). */
  hosts: string[];
  tls?: {
    httpsRedirect?: boolean;
    mode?: 'PASSTHROUGH' | 'SIMPLE' | 'MUTUAL' | 'AUTO_PASSTHROUGH' | 'ISTIO_MUTUAL' | 'OPTIONAL_MUTUAL';
    serverCertificate?: string;
    privateKey?: string;
    caCertificates?: string;
    credentialName?: string;
    subjectAltNames?: string[];
    verifyCertificateSpki?: string[];
    verifyCertificateHash?: string[];
    minProtocolVersion?: GatewayTLSProtocol;
    maxProtocolVersion?: GatewayTLSProtocol;
    cipherSuites?: string[];
  };
  name?: string;
}

export interface GatewaySpec {
  selector?: Labels;
  servers: GatewayServer[];
}

export type ServiceEntry = Resource<'ServiceEntry', ServiceEntrySpec>;
export type WorkloadEntry = Resource<'WorkloadEntry', WorkloadEntrySpec>;
export type VirtualService = Resource<'VirtualService', VirtualServiceSpec>;
export type DestinationRule = Resource<'DestinationRule', DestinationRuleSpec>;
export type WasmPlugin = Resource<'WasmPlugin', WasmPluginSpec>;
export type PeerAuthentication = Resource<'PeerAuthentication', PeerAuthenticationSpec>;
export type AuthorizationPolicy = Resource<'AuthorizationPolicy', AuthorizationPolicySpec>;
export type RequestAuthentication = Resource<'RequestAuthentication', RequestAuthenticationSpec>;
export type Gateway = Resource<'Gateway', GatewaySpec>;

/** wasmesh's secret kind for Gateway credentialName (mesh/src/tls-secret.ts). */
export interface TLSSecretSpec {
  cert?: string;
  key?: string;
  cacert?: string;
}
export type TLSSecret = Resource<'TLSSecret', TLSSecretSpec>;
export type { Telemetry, MeshConfig } from './telemetry/documents.ts';

export type MeshResource =
  | ServiceEntry
  | WorkloadEntry
  | VirtualService
  | DestinationRule
  | WasmPlugin
  | PeerAuthentication
  | AuthorizationPolicy
  | RequestAuthentication
  | RateLimitPolicy
  | Gateway
  | TLSSecret
  | Telemetry
  | MeshConfig;

export type Kind = MeshResource['kind'];

export const KINDS: readonly Kind[] = [
  'ServiceEntry',
  'WorkloadEntry',
  'VirtualService',
  'DestinationRule',
  'WasmPlugin',
  'PeerAuthentication',
  'AuthorizationPolicy',
  'RequestAuthentication',
  'RateLimitPolicy',
  'Gateway',
  'TLSSecret',
  'Telemetry',
  'MeshConfig',
];

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && (KINDS as readonly string[]).includes(value);
}

/** The namespace of a resource, defaulted. */
export function namespaceOf(resource: { metadata: Metadata }): string {
  return resource.metadata.namespace || DEFAULT_NAMESPACE;
}
