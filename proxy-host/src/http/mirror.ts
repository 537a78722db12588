// Request mirroring (VirtualService mirror + mirrorPercentage, Envoy request_mirror_policies): a copy
// of the request goes to another cluster with its authority suffixed "-shadow". Fire and forget: the
// mirror's response is read and dropped, and nothing about it reaches the client's response.
import { PassThrough } from 'node:stream';
import type { HeaderList } from '../../../wasm/src/index.ts';
import type { MirrorPolicy } from '../../../mesh/src/proxy-config.ts';
import type { UpstreamCall, UpstreamResponseHandler } from '../upstream/upstream-request.ts';
import type { UpstreamHost } from './request-host.ts';
import type { LbContext } from '../upstream/load-balancer.ts';

/** A mirror gets the route timeout, or this when the route has none (so a hung mirror never lingers). */
export const MIRROR_DEFAULT_TIMEOUT_MS = 15_000;

export const MIRROR_REQUESTS = 'wasmesh_proxy_mirror_requests_total';
export const MIRROR_FAILURES = 'wasmesh_proxy_mirror_failures_total';

/** Envoy's shadow host: "-shadow" appended to the host, before any port ("a:80" -> "a-shadow:80"). */
export function shadowAuthority(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon > 0 && authority.indexOf(']') < colon && /^[0-9]+$/.test(authority.slice(colon + 1))) {
    return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  }
  return `${authority}-shadow`;
}

/** Whether this request is mirrored under `policy` (percentage 0..100, fractions allowed). */
export function shouldMirror(policy: MirrorPolicy, random = Math.random()): boolean {
  return policy.percentage >= 100 || random * 100 < policy.percentage;
}

class MirrorCall implements UpstreamResponseHandler {
  call: UpstreamCall | undefined;
  #timer: NodeJS.Timeout | undefined;
  #done = false;
  readonly #finish: (ok: boolean) => void;

  constructor(timeoutMs: number, finish: (ok: boolean) => void) {
    this.#finish = finish;
    this.#timer = setTimeout(() => {
      this.call?.abort(new Error('mirror timeout'));
      this.#end(false);
    }, timeoutMs);
    this.#timer.unref();
  }

  #end(ok: boolean): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#finish(ok);
  }

  onUpstreamHeaders(_headers: HeaderList, endOfStream: boolean): void {
    if (endOfStream) this.#end(true);
  }

  onUpstreamData(_chunk: Buffer): boolean {
    return true;
  }

  onUpstreamEnd(): void {
    this.#end(true);
  }

  onUpstreamError(): void {
    this.#end(false);
  }
}

/**
 * Sends a copy of a request to the mirror cluster. `headers` is copied (the caller keeps its list);
 * `body` is the whole buffered request body, or null. Never throws; failures are only counted.
 */
export function sendMirror(cm: UpstreamHost, policy: MirrorPolicy, headers: HeaderList, body: Buffer | null, lb: LbContext, routeTimeoutMs: number, downstreamH2: boolean): void {
  const cluster = cm.clusters.get(policy.cluster);
  if (!cluster) return;
  const stats = cm.clusterStats(cluster);
  stats.counter(MIRROR_REQUESTS, 'Requests mirrored to a cluster').increment(1);
  const failed = (): void => {
    stats.counter(MIRROR_FAILURES, 'Mirrored requests that failed (no endpoint, overflow, error, timeout, body past the buffer bound)').increment(1);
  };
  try {
    const endpoint = cluster.pick(lb);
    if (!endpoint) return failed();
    const breaker = cm.breakers.get(cluster.config.name);
    const pool = cluster.config.connectionPool;
    const http1 = cm.upstreamProtocol(cluster, downstreamH2) === 'http1';
    if (!breaker.admitRequest(pool, endpoint, cluster.endpoints, http1)) {
      stats.counter('wasmesh_proxy_upstream_overflow_total', 'Requests refused by a circuit breaker (503 UO)').increment(1);
      return failed();
    }
    const copy = headers.slice();
    for (let i = 0; i < copy.length; i += 2) {
      if (copy[i] === ':authority') copy[i + 1] = shadowAuthority(copy[i + 1]!);
    }
    let stream: PassThrough | null = null;
    if (body !== null) {
      stream = new PassThrough();
      stream.end(body);
      setHeader(copy, 'content-length', String(body.length));
      removeHeader(copy, 'transfer-encoding');
    }
    breaker.requests++;
    endpoint.activeRequests++;
    const handler = new MirrorCall(routeTimeoutMs > 0 ? routeTimeoutMs : MIRROR_DEFAULT_TIMEOUT_MS, (ok) => {
      breaker.requests--;
      endpoint.activeRequests--;
      if (!ok) failed();
    });
    handler.call = cm.upstreamFor(cluster, endpoint, downstreamH2).request({ headers: copy, body: stream }, handler);
  } catch {
    failed();
  }
}

/** A mirror not sent because the request body outgrew the copy buffer: counted as a failed mirror. */
export function skipMirror(cm: UpstreamHost, policy: MirrorPolicy): void {
  const cluster = cm.clusters.get(policy.cluster);
  if (!cluster) return;
  const stats = cm.clusterStats(cluster);
  stats.counter(MIRROR_REQUESTS, 'Requests mirrored to a cluster').increment(1);
  stats.counter(MIRROR_FAILURES, 'Mirrored requests that failed (no endpoint, overflow, error, timeout, body past the buffer bound)').increment(1);
}

function setHeader(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value;
      return;
    }
  }
  list.push(name, value);
}

function removeHeader(list: HeaderList, name: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (list[i] === name) list.splice(i, 2);
}
