// What one finished request offers to access-log formats and filter expressions: the proxy builds
// one such object per logged request (proxy-host/src/telemetry/request-facts.ts); tests build plain ones.
// Absent values are undefined (or ""): formats print "-" (text) or null (JSON).

export interface RequestLogFacts {
  readonly startMs: number;
  readonly durationMs: number;
  /** 0 when no response was sent. */
  readonly responseCode: number;
  /** Envoy's short flags ("UH,UF"), "" when none. */
  readonly responseFlags: string;
  readonly responseCodeDetails: string;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /** "HTTP/1.1", "HTTP/2". */
  readonly protocol: string;
  readonly upstreamHost: string;
  readonly upstreamCluster: string;
  readonly upstreamLocalAddress: string;
  readonly downstreamRemoteAddress: string;
  readonly downstreamLocalAddress: string;
  readonly routeName: string;
  readonly requestedServerName: string;
  readonly attemptCount: number;
  readonly traceId: string;
  readonly mtls: boolean;
  /** A request header as the proxy forwarded it (lowercase name; pseudo-headers ":path" and the like). */
  requestHeader(name: string): string | undefined;
  responseHeader(name: string): string | undefined;
}
