// Active health checking of one cluster's endpoints (Envoy cluster `health_checks`; configured through the
// wasmesh extension field DestinationRule trafficPolicy.healthCheck).
//
// Semantics, per endpoint:
// - One check at a time. The first runs as soon as the checker starts; each next one `intervalMs` after
//   the previous answered or timed out (Envoy starts the interval timer on the response too).
// - HTTP: GET `path` with the cluster's host (or `host`) as authority, over HTTP/1.1 for http1 clusters
//   and HTTP/2 (prior knowledge) for http2/grpc clusters, on a connection kept between checks. Passes when
//   the status is in `expectedStatuses` (Envoy's default: 200 only).
//   gRPC: grpc.health.v1.Health/Check for `serviceName` (empty: the whole server); passes on SERVING.
//   TCP: passes when a connection opens.
// - TLS clusters (target.tls decides per endpoint): HTTP and gRPC checks speak to each endpoint what
//   routed requests speak (auto mTLS to sidecars with the workload certificate and the peer's SPIFFE id
//   checked, plaintext to the others, or the DestinationRule's mode), so a STRICT endpoint is checked
//   over mTLS. New TLS options (generation) drop the kept connections. A refused one (mTLS without a
//   certificate) fails the check. TCP checks stay a TCP connect.
// - A check that does not answer within `timeoutMs` fails (and its connection is dropped).
// - `unhealthyThreshold` consecutive failures make a healthy endpoint unhealthy, `healthyThreshold`
//   consecutive successes bring it back. Deviation from Envoy: Envoy marks an endpoint unhealthy at once
//   when an HTTP check gets an unexpected status; here every kind of failure counts toward the threshold.
// - An endpoint new to the cluster is pending: out of the pool until its first check, which then decides
//   alone (one success: healthy; one failure: unhealthy), as Envoy does for hosts pending their first check.
// Timers are unref'd and stop() cancels everything: timers, checks in flight and connections.

import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { createRequire } from 'node:module';
import type * as Grpc from '@grpc/grpc-js';
import type { HealthCheckConfig, UpstreamProtocol } from '../../../mesh/src/proxy-config.ts';
import type { EndpointState } from './endpoint.ts';
import { healthOf, syncHealthy } from './endpoint-health.ts';
import { connectOptions, type UpstreamTlsOptions } from '../identity/tls-options.ts';
import type { EndpointTls } from './upstream-tls.ts';

export type CheckResult = 'success' | 'failure' | 'network_failure';

export interface CheckOutcome {
  result: CheckResult;
  /** "ok", "status 503", "NOT_SERVING", "timeout", "connect ECONNREFUSED"... */
  detail: string;
}

export interface HealthCheckHooks {
  /** An endpoint's combined `healthy` flag changed. */
  onChange?(endpoint: EndpointState): void;
  /** Every check outcome (for counters). */
  onCheck?(endpoint: EndpointState, outcome: CheckOutcome): void;
}

export interface HealthCheckTarget {
  /** Cluster name, for logs. */
  name: string;
  /** Default authority of HTTP checks. */
  host: string;
  protocol: UpstreamProtocol;
  endpoints: readonly EndpointState[];
  /** What a connection to an endpoint speaks, read at each check; absent: plaintext. */
  tls?: (endpoint: EndpointState) => EndpointTls;
}

const USER_AGENT = 'wasmesh-health-check';
const SERVING = 1;

/** Envoy's default expected statuses: [200, 201). */
export const DEFAULT_EXPECTED_STATUSES: readonly { start: number; end: number }[] = [{ start: 200, end: 201 }];

export class HealthChecker {
  readonly config: HealthCheckConfig;
  readonly #target: HealthCheckTarget;
  readonly #hooks: HealthCheckHooks;
  readonly #timers = new Map<EndpointState, NodeJS.Timeout>();
  /** Cancels of checks in flight. */
  readonly #inflight = new Set<() => void>();
  /** HTTP/1.1 agents per TLS slot ("plain" or the EndpointTls slot), with the options' generation. */
  readonly #agents = new Map<string, Kept<http.Agent>>();
  /** HTTP/2 sessions and gRPC clients per "<slot>|<endpoint>". */
  readonly #h2 = new Map<string, Kept<http2.ClientHttp2Session>>();
  readonly #grpc = new Map<string, Kept<Grpc.Client>>();
  #running = false;

  constructor(target: HealthCheckTarget, config: HealthCheckConfig, hooks: HealthCheckHooks = {}) {
    this.#target = target;
    this.config = config;
    this.#hooks = hooks;
  }

  get running(): boolean {
    return this.#running;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    for (const e of this.#target.endpoints) this.#schedule(e, 0);
  }

  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    for (const cancel of [...this.#inflight]) cancel();
    this.#inflight.clear();
    for (const a of this.#agents.values()) a.value.destroy();
    this.#agents.clear();
    for (const s of this.#h2.values()) s.value.destroy();
    this.#h2.clear();
    for (const c of this.#grpc.values()) c.value.close();
    this.#grpc.clear();
  }

  /** What this check speaks to `endpoint`. */
  #tls(endpoint: EndpointState): EndpointTls {
    return this.#target.tls?.(endpoint) ?? PLAINTEXT;
  }

  /**
   * The connection kept under `key` if it was made with the same TLS generation; otherwise the old
   * one is let go (checks in flight on it finish or time out first) and a new one is made.
   */
  #kept<T>(map: Map<string, Kept<T>>, key: string, generation: number | string | undefined, make: () => T, release: (value: T) => void, usable: (value: T) => boolean = () => true): T {
    const kept = map.get(key);
    if (kept && kept.generation === generation && usable(kept.value)) return kept.value;
    if (kept) {
      map.delete(key);
      const t = setTimeout(() => release(kept.value), this.config.timeoutMs + 100);
      t.unref();
    }
    const value = make();
    map.set(key, { value, generation });
    return value;
  }

  #schedule(endpoint: EndpointState, delayMs: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(endpoint);
      void this.#run(endpoint);
    }, delayMs);
    timer.unref();
    this.#timers.set(endpoint, timer);
  }

  async #run(endpoint: EndpointState): Promise<void> {
    if (!this.#running) return;
    const outcome = await this.check(endpoint);
    if (!this.#running) return;
    this.#record(endpoint, outcome);
    this.#schedule(endpoint, this.config.intervalMs);
  }

  #record(endpoint: EndpointState, outcome: CheckOutcome): void {
    const h = healthOf(endpoint);
    const cfg = this.config;
    h.lastCheck = outcome.detail;
    if (outcome.result === 'success') {
      h.checkFailures = 0;
      h.checkSuccesses++;
      if (!h.checkHealthy && (h.checkPending || h.checkSuccesses >= cfg.healthyThreshold)) h.checkHealthy = true;
    } else {
      h.checkSuccesses = 0;
      h.checkFailures++;
      if (h.checkHealthy && (h.checkPending || h.checkFailures >= cfg.unhealthyThreshold)) h.checkHealthy = false;
    }
    h.checkPending = false;
    const changed = syncHealthy(endpoint);
    this.#hooks.onCheck?.(endpoint, outcome);
    if (changed) this.#hooks.onChange?.(endpoint);
  }

  /** One check of one endpoint, bounded by timeoutMs. Never rejects. */
  check(endpoint: EndpointState): Promise<CheckOutcome> {
    return new Promise<CheckOutcome>((resolve) => {
      let settled = false;
      let abort: () => void = () => {};
      const finish = (outcome: CheckOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inflight.delete(cancel);
        resolve(outcome);
      };
      const cancel = (): void => {
        abort();
        finish({ result: 'network_failure', detail: 'cancelled' });
      };
      const timer = setTimeout(() => {
        abort();
        finish({ result: 'network_failure', detail: 'timeout' });
      }, this.config.timeoutMs);
      timer.unref();
      this.#inflight.add(cancel);
      const kind = this.config.check.kind;
      const decision = kind === 'tcp' ? PLAINTEXT : this.#tls(endpoint);
      if (decision.kind === 'refused') return finish({ result: 'network_failure', detail: decision.reason });
      const tls = decision.kind === 'tls' ? { slot: decision.slot, options: decision.options } : undefined;
      abort =
        kind === 'tcp'
          ? this.#tcp(endpoint, finish)
          : kind === 'grpc'
            ? this.#grpcCheck(endpoint, finish, tls)
            : this.#target.protocol === 'http1' || this.#target.protocol === 'tcp'
              ? this.#http1(endpoint, finish, tls)
              : this.#http2(endpoint, finish, tls);
    });
  }

  #expected(status: number): boolean {
    const check = this.config.check;
    const ranges = check.kind === 'http' && check.expectedStatuses.length > 0 ? check.expectedStatuses : DEFAULT_EXPECTED_STATUSES;
    return ranges.some((r) => status >= r.start && status < r.end);
  }

  #httpTarget(): { path: string; authority: string } {
    const check = this.config.check;
    return check.kind === 'http' ? { path: check.path, authority: check.host ?? this.#target.host } : { path: '/', authority: this.#target.host };
  }

  #statusOutcome(status: number): CheckOutcome {
    return this.#expected(status) ? { result: 'success', detail: 'ok' } : { result: 'failure', detail: `status ${status}` };
  }

  #http1(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: CheckTls | undefined): () => void {
    const agent = this.#kept(
      this.#agents,
      tls?.slot ?? 'plain',
      tls?.options.generation,
      () => (tls ? new https.Agent({ keepAlive: true, maxSockets: 1, ...connectOptions(tls.options) }) : new http.Agent({ keepAlive: true, maxSockets: 1 })),
      (a) => a.destroy(),
    );
    const { path, authority } = this.#httpTarget();
    const req = (tls ? https : http).request(
      {
        host: endpoint.config.address,
        port: endpoint.config.port,
        method: 'GET',
        path,
        headers: { host: authority, 'user-agent': USER_AGENT },
        agent,
      },
      (res) => {
        res.resume();
        finish(this.#statusOutcome(res.statusCode ?? 0));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => finish(networkFailure(err)));
    req.end();
    return () => req.destroy();
  }

  #http2(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: CheckTls | undefined): () => void {
    const key = `${tls?.slot ?? 'plain'}|${endpoint.key}`;
    const s = this.#kept(
      this.#h2,
      key,
      tls?.options.generation,
      () => {
        const made = tls ? http2.connect(`https://${endpoint.key}`, connectOptions(tls.options)) : http2.connect(`http://${endpoint.key}`);
        made.unref();
        made.on('error', () => {});
        made.on('close', () => {
          if (this.#h2.get(key)?.value === made) this.#h2.delete(key);
        });
        return made;
      },
      (old) => old.close(),
      (kept) => !kept.closed && !kept.destroyed,
    );
    const { path, authority } = this.#httpTarget();
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.request({ ':method': 'GET', ':path': path, ':authority': authority, 'user-agent': USER_AGENT }, { endStream: true });
    } catch (err) {
      s.destroy();
      finish(networkFailure(err as NodeJS.ErrnoException));
      return () => {};
    }
    stream.on('response', (headers) => {
      finish(this.#statusOutcome(Number(headers[':status']) || 0));
      stream.close();
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // A failed stream usually means a failed session: start afresh next time.
      s.destroy();
      finish(networkFailure(err));
    });
    stream.resume();
    return () => s.destroy();
  }

  #grpcCheck(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: CheckTls | undefined): () => void {
    const grpc = grpcLibrary();
    const client = this.#kept(
      this.#grpc,
      `${tls?.slot ?? 'plain'}|${endpoint.key}`,
      tls?.options.generation,
      () => new grpc.Client(endpoint.key, tls ? grpcCredentials(tls.options) : grpc.credentials.createInsecure()),
      (old) => old.close(),
    );
    const service = this.config.check.kind === 'grpc' ? this.config.check.serviceName : '';
    const call = client.makeUnaryRequest<HealthCheckRequest, HealthCheckResponse>(
      '/grpc.health.v1.Health/Check',
      encodeHealthCheckRequest,
      decodeHealthCheckResponse,
      { service },
      new grpc.Metadata(),
      { deadline: Date.now() + this.config.timeoutMs },
      (err, response) => {
        const status = response?.status;
        if (err) {
          const unreachable = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED;
          finish({ result: unreachable ? 'network_failure' : 'failure', detail: grpc.status[err.code] ?? String(err.code) });
        } else if (status === SERVING) {
          finish({ result: 'success', detail: 'ok' });
        } else {
          finish({ result: 'failure', detail: SERVING_STATUS_NAMES[status ?? 0] ?? `status ${status}` });
        }
      },
    );
    return () => call.cancel();
  }

  #tcp(endpoint: EndpointState, finish: (o: CheckOutcome) => void): () => void {
    const socket = net.connect({ host: endpoint.config.address, port: endpoint.config.port });
    socket.unref();
    socket.once('connect', () => {
      socket.destroy();
      finish({ result: 'success', detail: 'ok' });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => finish(networkFailure(err)));
    return () => socket.destroy();
  }
}

const PLAINTEXT: EndpointTls = { kind: 'plaintext' };

/** A connection kept between checks, with the TLS generation it was made with (undefined: plaintext). */
interface Kept<T> {
  value: T;
  generation: number | string | undefined;
}

interface CheckTls {
  slot: string;
  options: UpstreamTlsOptions;
}

/** gRPC channel credentials for TLS options (roots default to the system's). */
function grpcCredentials(tls: UpstreamTlsOptions): Grpc.ChannelCredentials {
  const grpc = grpcLibrary();
  const { checkServerIdentity, rejectUnauthorized } = connectOptions(tls);
  const roots = tls.ca ? Buffer.from(tls.ca.join('')) : null;
  const key = tls.key !== undefined ? Buffer.from(tls.key) : null;
  const cert = tls.cert !== undefined ? Buffer.from(tls.cert) : null;
  return grpc.credentials.createSsl(roots, key, cert, { checkServerIdentity, ...(rejectUnauthorized === false ? { rejectUnauthorized: false } : {}) });
}

function networkFailure(err: NodeJS.ErrnoException): CheckOutcome {
  return { result: 'network_failure', detail: `connect ${err.code ?? err.message}` };
}

const SERVING_STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/**
 * gRPC, loaded (synchronously: checks are started synchronously) on the first gRPC health check: the
 * library costs a sidecar megabytes, and most clusters never check over gRPC.
 */
let grpcModule: typeof Grpc | undefined;
function grpcLibrary(): typeof Grpc {
  return (grpcModule ??= createRequire(import.meta.url)('@grpc/grpc-js') as typeof Grpc);
}

// grpc.health.v1 messages, encoded by hand (two fields, no need for a proto loader):
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3

// Messages are objects, never bare '' or 0: grpc-js takes a falsy decoded message for a missing one.
export interface HealthCheckRequest {
  service: string;
}

export interface HealthCheckResponse {
  status: number;
}

export function encodeHealthCheckRequest({ service }: HealthCheckRequest): Buffer {
  if (service === '') return Buffer.alloc(0);
  const bytes = Buffer.from(service, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), varint(bytes.length), bytes]);
}

export function decodeHealthCheckRequest(buf: Buffer): HealthCheckRequest {
  let service = '';
  readFields(buf, (field, wire, _value, bytes) => {
    if (field === 1 && wire === 2 && bytes) service = bytes.toString('utf8');
  });
  return { service };
}

export function encodeHealthCheckResponse({ status }: HealthCheckResponse): Buffer {
  return status === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x08]), varint(status)]);
}

export function decodeHealthCheckResponse(buf: Buffer): HealthCheckResponse {
  let status = 0;
  readFields(buf, (field, wire, value) => {
    if (field === 1 && wire === 0) status = value;
  });
  return { status };
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

/** Walks protobuf fields (varint and length-delimited; fixed32/64 skipped). Stops at malformed input. */
function readFields(buf: Buffer, onField: (field: number, wire: number, value: number, bytes?: Buffer) => void): void {
  let i = 0;
  const readVarint = (): number | undefined => {
    let result = 0;
    let shift = 0;
    while (i < buf.length && shift < 35) {
      const b = buf[i++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    return undefined;
  };
  while (i < buf.length) {
    const tag = readVarint();
    if (tag === undefined) return;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      const v = readVarint();
      if (v === undefined) return;
      onField(field, wire, v);
    } else if (wire === 2) {
      const len = readVarint();
      if (len === undefined || i + len > buf.length) return;
      onField(field, wire, len, buf.subarray(i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else return;
  }
}
