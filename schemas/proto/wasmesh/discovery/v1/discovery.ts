// TypeScript view of discovery.proto, loaded at runtime with @grpc/proto-loader (keepCase: field
// names as in the .proto). The orchestrator's server and the proxy's client both load it from here,
// so the two sides cannot disagree about the wire.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { installPath } from '../../../../repo-files.ts';

/** The one resource type so far: a workload's whole ProxyConfig (see the .proto header). */
export const PROXY_CONFIG_TYPE_URL = 'type.wasmesh.io/ProxyConfig';

export const PROTO_PATH = installPath('schemas', 'proto', 'wasmesh', 'discovery', 'v1', 'discovery.proto');

export interface NodeMessage {
  id: string;
  workload: string;
  namespace: string;
  labels: Record<string, string>;
  service_account: string;
  /** The endpoint to auto-register (see Endpoint in the .proto); null when absent. */
  endpoint: EndpointMessage | null;
}

export interface EndpointMessage {
  address: string;
  /** Port numbers keyed by service port name. */
  ports: Record<string, number>;
}

export interface StatusMessage {
  code: number;
  message: string;
}

export interface DiscoveryRequest {
  node: NodeMessage | null;
  type_url: string;
  version_info: string;
  response_nonce: string;
  resource_names: string[];
  error_detail: StatusMessage | null;
  /** The proxy is shutting down: its auto-registered endpoint goes at once (no grace period). */
  leaving: boolean;
}

export interface ResourceMessage {
  name: string;
  version: string;
  body: Buffer;
}

export interface DiscoveryResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: ResourceMessage[];
  removed_resources: string[];
}

export interface ModuleRequest {
  sha256: string;
}

export interface ModuleChunk {
  data: Buffer;
}

export interface CertificateRequest {
  /** PEM PKCS#10 CSR. */
  csr: string;
  /** Requested lifetime in seconds; 0 = default. int64: a decimal string when received (longs: String). */
  ttl_seconds: string | number;
}

export interface CertificateResponse {
  /** PEM certificates, leaf first (intermediates after it, no root). */
  cert_chain: string[];
  /** PEM roots. */
  trust_bundle: string[];
}

export type TrustBundleRequest = Record<string, never>;

export interface TrustBundleMessage {
  /** PEM roots. */
  roots: string[];
  trust_domain: string;
}

export interface FilterVersionStatsMessage {
  /** "<namespace>/<name>" of the WasmPlugin. */
  plugin: string;
  sha256: string;
  canary: boolean;
  /** uint64: decimal strings when received (longs: String). */
  streams: string | number;
  failed_streams: string | number;
  traps: string | number;
  bad: boolean;
  /** Traps by cause (cpu_budget, memory, ...); uint64 values: decimal strings when received. Absent from older proxies. */
  traps_by_cause?: Record<string, string | number>;
  /** Event-loop stalls of the proxy since this version was loaded; uint64. Absent from older proxies. */
  stalls?: string | number;
}

export interface EdgeStatsMessage {
  destination_service: string;
  destination_namespace: string;
  destination_app: string;
  destination_version: string;
  mtls: boolean;
  /** uint64: decimal strings when received (longs: String). */
  requests: string | number;
  errors: string | number;
  client_errors: string | number;
  latency_buckets: Array<string | number>;
}

/** A proxy's outbound golden signals per edge (see TrafficReport in the .proto). */
export interface TrafficReportMessage {
  source_namespace: string;
  source_app: string;
  source_version: string;
  latency_bounds_ms: number[];
  edges: EdgeStatsMessage[];
  cert_not_after: string;
}

export interface FilterStatsReport {
  node_id: string;
  config_version: string;
  filters: FilterVersionStatsMessage[];
  /** Absent (null when received) from proxies without traffic to report. */
  traffic?: TrafficReportMessage | null;
}

/** What a sender may leave out (proto3 defaults). */
export type DiscoveryRequestInput = Partial<Omit<DiscoveryRequest, 'node' | 'error_detail'>> & {
  node?: Partial<NodeMessage> | null;
  error_detail?: StatusMessage | null;
};

export interface DiscoveryClient extends grpc.Client {
  StreamResources(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<DiscoveryRequestInput, DiscoveryResponse>;
  FetchModule(request: ModuleRequest, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<ModuleChunk>;
  CreateCertificate(
    request: Partial<CertificateRequest>,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: CertificateResponse) => void,
  ): grpc.ClientUnaryCall;
  CreateCertificate(
    request: Partial<CertificateRequest>,
    metadata: grpc.Metadata,
    callback: (err: grpc.ServiceError | null, response?: CertificateResponse) => void,
  ): grpc.ClientUnaryCall;
  WatchTrustBundle(request: TrustBundleRequest, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<TrustBundleMessage>;
  ReportFilterStats(
    request: FilterStatsReport,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: Record<string, never>) => void,
  ): grpc.ClientUnaryCall;
}

export interface DiscoveryDefinition {
  service: grpc.ServiceDefinition;
  Client: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => DiscoveryClient;
}

let loaded: DiscoveryDefinition | undefined;

/** Loads the service once per process. `defaults`: absent scalars read as '' / 0 / [], absent messages as null. */
export function discoveryDefinition(): DiscoveryDefinition {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    wasmesh: { discovery: { v1: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } };
  };
  const ctor = pkg.wasmesh.discovery.v1.AggregatedDiscoveryService;
  loaded = { service: ctor.service, Client: ctor as unknown as DiscoveryDefinition['Client'] };
  return loaded;
}
