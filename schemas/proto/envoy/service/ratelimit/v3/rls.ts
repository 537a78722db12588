// TypeScript view of rls.proto (Envoy's rate limit service, v3), loaded at runtime with
// @grpc/proto-loader (keepCase: field names as in the .proto; enums as their names; 64-bit integers as
// numbers). The service (orchestrator/src/ratelimit/) and its tests and benchmark load it from here.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { installPath } from '../../../../../repo-files.ts';

export const RLS_PROTO_PATH = installPath('schemas', 'proto', 'envoy', 'service', 'ratelimit', 'v3', 'rls.proto');

/** The service and method as they travel in the gRPC path: /envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit. */
export const RLS_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';
export const RLS_METHOD = 'ShouldRateLimit';

export type RateLimitUnitName = 'UNKNOWN' | 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY' | 'MONTH' | 'YEAR' | 'WEEK';
export type RateLimitCode = 'UNKNOWN' | 'OK' | 'OVER_LIMIT';

export interface DescriptorEntry {
  key: string;
  value: string;
}

export interface RateLimitDescriptorMessage {
  entries: DescriptorEntry[];
  /** A limit that replaces the service's own for this descriptor; null when absent. */
  limit: { requests_per_unit: number; unit: RateLimitUnitName } | null;
  /** Hits this descriptor adds (wins over the request's hits_addend); null when absent. */
  hits_addend: { value: number } | null;
}

export interface RateLimitRequestMessage {
  domain: string;
  descriptors: RateLimitDescriptorMessage[];
  /** 0 (absent) counts as 1. */
  hits_addend: number;
}

export interface RateLimitMessage {
  name: string;
  requests_per_unit: number;
  unit: RateLimitUnitName;
}

export interface DescriptorStatusMessage {
  code: RateLimitCode;
  current_limit: RateLimitMessage | null;
  limit_remaining: number;
  duration_until_reset: { seconds: number; nanos: number } | null;
}

export interface HeaderValueMessage {
  key: string;
  value: string;
}

export interface RateLimitResponseMessage {
  overall_code: RateLimitCode;
  statuses: DescriptorStatusMessage[];
  response_headers_to_add: HeaderValueMessage[];
  request_headers_to_add: HeaderValueMessage[];
}

export interface RateLimitServiceClient extends grpc.Client {
  ShouldRateLimit(
    request: Partial<RateLimitRequestMessage>,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: RateLimitResponseMessage) => void,
  ): grpc.ClientUnaryCall;
}

export interface RateLimitServiceDefinition {
  service: grpc.ServiceDefinition;
  Client: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => RateLimitServiceClient;
  /** Encodes and decodes messages the way the wire carries them (for tests and benchmarks). */
  encodeRequest(request: Partial<RateLimitRequestMessage>): Buffer;
  decodeResponse(bytes: Uint8Array): RateLimitResponseMessage;
  /** The service's side: a request off the wire, an answer onto it. */
  decodeRequest(bytes: Uint8Array): RateLimitRequestMessage;
  encodeResponse(response: RateLimitResponseMessage): Buffer;
}

let loaded: RateLimitServiceDefinition | undefined;

/** Loads the service once per process. `defaults`: absent scalars read as '' / 0 / [], absent messages as null. */
export function rateLimitServiceDefinition(): RateLimitServiceDefinition {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(RLS_PROTO_PATH, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    envoy: { service: { ratelimit: { v3: { RateLimitService: grpc.ServiceClientConstructor } } } };
  };
  const ctor = pkg.envoy.service.ratelimit.v3.RateLimitService;
  const method = ctor.service.ShouldRateLimit!;
  loaded = {
    service: ctor.service,
    Client: ctor as unknown as RateLimitServiceDefinition['Client'],
    encodeRequest: (request) => method.requestSerialize(request),
    decodeResponse: (bytes) => method.responseDeserialize(Buffer.from(bytes)) as RateLimitResponseMessage,
    decodeRequest: (bytes) => method.requestDeserialize(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes)) as RateLimitRequestMessage,
    encodeResponse: (response) => method.responseSerialize(response),
  };
  return loaded;
}
