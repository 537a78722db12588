// The shapes of the telemetry kinds (mirroring schemas/json/telemetry.schema.json and
// mesh-config.schema.json): Istio's Telemetry (telemetry.istio.io/v1) and the part of Istio's
// MeshConfig that names telemetry backends (extensionProviders, defaultProviders, meshId), which
// wasmesh keeps as a document of its own (wasmesh.io/v1alpha1 MeshConfig) so that the orchestrator and
// a standalone proxy read it the same way as every other kind.
import type { Resource, WorkloadSelector } from '../documents.ts';

export type WorkloadMode = 'CLIENT_AND_SERVER' | 'CLIENT' | 'SERVER';

export interface ProviderRef {
  name: string;
}

export type CustomTag =
  | { literal: { value: string } }
  | { header: { name: string; defaultValue?: string } }
  | { environment: { name: string; defaultValue?: string } };

export interface TelemetryTracing {
  match?: { mode?: WorkloadMode };
  providers?: ProviderRef[];
  randomSamplingPercentage?: number;
  disableSpanReporting?: boolean;
  customTags?: Readonly<Record<string, CustomTag>>;
  useRequestIdForTraceSampling?: boolean;
}

export interface TelemetryAccessLogging {
  match?: { mode?: WorkloadMode };
  providers?: ProviderRef[];
  disabled?: boolean;
  filter?: { expression: string };
}

export type IstioMetric =
  | 'ALL_METRICS'
  | 'REQUEST_COUNT'
  | 'REQUEST_DURATION'
  | 'REQUEST_SIZE'
  | 'RESPONSE_SIZE'
  | 'TCP_OPENED_CONNECTIONS'
  | 'TCP_CLOSED_CONNECTIONS'
  | 'TCP_SENT_BYTES'
  | 'TCP_RECEIVED_BYTES'
  | 'GRPC_REQUEST_MESSAGES'
  | 'GRPC_RESPONSE_MESSAGES';

export interface MetricsOverride {
  match?: { metric?: IstioMetric; customMetric?: string; mode?: WorkloadMode };
  disabled?: boolean;
  tagOverrides?: Readonly<Record<string, { operation?: 'UPSERT' | 'REMOVE'; value?: string }>>;
}

export interface TelemetryMetrics {
  providers?: ProviderRef[];
  overrides?: MetricsOverride[];
  reportingInterval?: string;
}

export interface TelemetrySpec {
  selector?: WorkloadSelector;
  targetRefs?: { group?: string; kind: 'Service' | 'Gateway'; name: string; namespace?: string }[];
  tracing?: TelemetryTracing[];
  accessLogging?: TelemetryAccessLogging[];
  metrics?: TelemetryMetrics[];
}

export interface ExtensionProvider {
  name: string;
  opentelemetry?: {
    service: string;
    port: number;
    maxTagLength?: number;
    http?: { path?: string; timeout?: string; headers?: { name: string; value: string }[]; encoding?: 'protobuf' | 'json' };
    grpc?: { timeout?: string; initialMetadata?: { name: string; value: string }[] };
  };
  zipkin?: { service: string; port: number; maxTagLength?: number; path?: string };
  envoyFileAccessLog?: { path?: string; logFormat?: { text?: string; labels?: Readonly<Record<string, string>> } };
  envoyOtelAls?: { service: string; port: number; logName?: string; logFormat?: { text?: string; labels?: Readonly<Record<string, string>> } };
  prometheus?: Record<string, never>;
}

export interface MeshConfigSpec {
  meshId?: string;
  extensionProviders?: ExtensionProvider[];
  defaultProviders?: { tracing?: string[]; accessLogging?: string[]; metrics?: string[] };
  /** Istio's outboundTrafficPolicy: captured connections to destinations outside the mesh. Absent: ALLOW_ANY. */
  outboundTrafficPolicy?: { mode?: 'ALLOW_ANY' | 'REGISTRY_ONLY' };
}

export type Telemetry = Resource<'Telemetry', TelemetrySpec>;
export type MeshConfig = Resource<'MeshConfig', MeshConfigSpec>;
