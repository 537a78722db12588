// A finished request as access-log formats and filter expressions read it (RequestLogFacts): one
// object per logged request, reading the ActiveRequest lazily (a header is looked up only when a
// format or expression asks for it).
import type { RequestLogFacts } from '../../../mesh/src/telemetry/facts.ts';
import type { ActiveRequest } from '../http/active-request.ts';
import { getHeader } from '../http/request-headers.ts';

export class RequestFacts implements RequestLogFacts {
  readonly #ar: ActiveRequest;
  readonly responseCode: number;
  readonly durationMs: number;
  readonly downstreamLocalAddress: string;
  traceId = '';

  constructor(ar: ActiveRequest, status: number, durationMs: number, localAddress: string) {
    this.#ar = ar;
    this.responseCode = status;
    this.durationMs = durationMs;
    const s = ar.req.socket;
    this.downstreamLocalAddress = localAddress || (s?.localAddress ? `${s.localAddress}:${s.localPort ?? 0}` : '');
  }
  get startMs(): number {
    return this.#ar.startMs;
  }
  get responseFlags(): string {
    return this.#ar.responseFlags;
  }
  get responseCodeDetails(): string {
    return this.#ar.details || (this.responseCode ? 'via_upstream' : '');
  }
  get bytesReceived(): number {
    return this.#ar.bytesIn;
  }
  get bytesSent(): number {
    return this.#ar.bytesOut;
  }
  get protocol(): string {
    const req = this.#ar.req;
    return req.httpVersionMajor === 2 ? 'HTTP/2' : req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1';
  }
  get upstreamHost(): string {
    return this.#ar.endpoint?.key ?? '';
  }
  get upstreamCluster(): string {
    return this.#ar.cluster?.config.name ?? '';
  }
  get upstreamLocalAddress(): string {
    return '';
  }
  get downstreamRemoteAddress(): string {
    const s = this.#ar.req.socket;
    return s?.remoteAddress ? `${s.remoteAddress}:${s.remotePort ?? 0}` : '';
  }
  get routeName(): string {
    return this.#ar.route?.name ?? '';
  }
  get requestedServerName(): string {
    const s = this.#ar.req.socket as { servername?: unknown } | undefined;
    return typeof s?.servername === 'string' ? s.servername : '';
  }
  get attemptCount(): number {
    return this.#ar.attempts;
  }
  get mtls(): boolean {
    const s = this.#ar.req.socket as { encrypted?: boolean; authorized?: boolean } | undefined;
    return s?.encrypted === true && s.authorized === true;
  }
  requestHeader(name: string): string | undefined {
    return getHeader(this.#ar.headers, name);
  }
  responseHeader(name: string): string | undefined {
    const v = (this.#ar.res as unknown as { getHeader?(n: string): unknown }).getHeader?.(name);
    return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : String(v);
  }
}
