// Resource kinds as they appear in URLs: the plural lowercase form Kubernetes uses
// (`virtualservices`), or the Kind itself (`VirtualService`), or its lowercase singular.

import { RESOURCE_KINDS, type ResourceKind } from '../store/types.ts';

export const PLURALS: Readonly<Record<ResourceKind, string>> = {
  ServiceEntry: 'serviceentries',
  WorkloadEntry: 'workloadentries',
  VirtualService: 'virtualservices',
  DestinationRule: 'destinationrules',
  WasmPlugin: 'wasmplugins',
  PeerAuthentication: 'peerauthentications',
  AuthorizationPolicy: 'authorizationpolicies',
  RequestAuthentication: 'requestauthentications',
  RateLimitPolicy: 'ratelimitpolicies',
  Gateway: 'gateways',
  TLSSecret: 'tlssecrets',
  Telemetry: 'telemetries',
  MeshConfig: 'meshconfigs',
};

const BY_NAME = new Map<string, ResourceKind>();
for (const kind of RESOURCE_KINDS) {
  BY_NAME.set(kind, kind);
  BY_NAME.set(kind.toLowerCase(), kind);
  BY_NAME.set(PLURALS[kind], kind);
}

/** Every spelling of a kind accepted in a URL (for the OpenAPI enum). */
export const KIND_URL_NAMES: readonly string[] = [...BY_NAME.keys()];

/** The kind a URL segment names, or undefined. */
export function kindFromUrl(segment: string): ResourceKind | undefined {
  return BY_NAME.get(segment);
}
