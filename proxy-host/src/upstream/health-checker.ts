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
// - ISTIO_MUTUAL clusters (target.tls gives the options): HTTP and gRPC checks originate mTLS with the
//   workload certificate and check the peer's SPIFFE id, as routed requests do (a STRICT endpoint
//   refuses plaintext). A new identity (generation) drops the kept connections. TCP checks stay a TCP
//   connect.
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
import * as grpc from '@grpc/grpc-js';
import type { HealthCheckConfig, UpstreamProtocol } from '../../../mesh/src/proxy-config.ts';
import type { EndpointState } from './endpoint.ts';
import { healthOf, syncHealthy } from './endpoint-health.ts';
import { spiffeIdentityCheck, type UpstreamTlsOptions } from '../identity/tls-options.ts';

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
  /** mTLS options of an ISTIO_MUTUAL cluster with a workload identity, read at each check; undefined: plaintext. */
  tls?: () => UpstreamTlsOptions | undefined;
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
  #agent: http.Agent | undefined;
  /** Generation of the TLS options the kept connections were made with (undefined: plaintext). */
  #tlsGeneration: number | undefined;
  readonly #h2 = new Map<string, http2.ClientHttp2Session>();
  readonly #grpc = new Map<string, grpc.Client>();
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
    this.#agent?.destroy();
    this.#agent = undefined;
    for (const s of this.#h2.values()) s.destroy();
    this.#h2.clear();
    for (const c of this.#grpc.values()) c.close();
    this.#grpc.clear();
  }

  /** The TLS options for this check; a changed identity lets the kept connections go (gracefully). */
  #tls(): UpstreamTlsOptions | undefined {
    const tls = this.#target.tls?.();
    const generation = tls?.generation;
    if (generation !== this.#tlsGeneration) {
      this.#tlsGeneration = generation;
      const agent = this.#agent;
      this.#agent = undefined;
      if (agent) {
        // Checks in flight on it finish (or time out) first.
        const t = setTimeout(() => agent.destroy(), this.config.timeoutMs + 100);
        t.unref();
      }
      for (const s of this.#h2.values()) s.close();
      this.#h2.clear();
      for (const c of this.#grpc.values()) c.close();
      this.#grpc.clear();
    }
    return tls;
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
      const tls = kind === 'tcp' ? undefined : this.#tls();
      abort =
        kind === 'tcp'
          ? this.#tcp(endpoint, finish)
          : kind === 'grpc'
            ? this.#grpcCheck(endpoint, finish, tls)
            : this.#target.protocol === 'http1'
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

  #http1(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: UpstreamTlsOptions | undefined): () => void {
    this.#agent ??= tls
      ? new https.Agent({ keepAlive: true, maxSockets: 1, key: tls.key, cert: tls.cert, ca: tls.ca, checkServerIdentity: spiffeIdentityCheck(tls.subjectAltNames) })
      : new http.Agent({ keepAlive: true, maxSockets: 1 });
    const { path, authority } = this.#httpTarget();
    const req = (tls ? https : http).request(
      {
        host: endpoint.config.address,
        port: endpoint.config.port,
        method: 'GET',
        path,
        headers: { host: authority, 'user-agent': USER_AGENT },
        agent: this.#agent,
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

  #http2(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: UpstreamTlsOptions | undefined): () => void {
    const key = endpoint.key;
    let session = this.#h2.get(key);
    if (session === undefined || session.closed || session.destroyed) {
      const s = tls
        ? http2.connect(`https://${key}`, { key: tls.key, cert: tls.cert, ca: tls.ca, checkServerIdentity: spiffeIdentityCheck(tls.subjectAltNames) })
        : http2.connect(`http://${key}`);
      s.unref();
      s.on('error', () => {});
      s.on('close', () => {
        if (this.#h2.get(key) === s) this.#h2.delete(key);
      });
      this.#h2.set(key, s);
      session = s;
    }
    const s = session;
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

  #grpcCheck(endpoint: EndpointState, finish: (o: CheckOutcome) => void, tls: UpstreamTlsOptions | undefined): () => void {
    const key = endpoint.key;
    let client = this.#grpc.get(key);
    if (client === undefined) {
      const credentials = tls
        ? grpc.credentials.createSsl(Buffer.from(tls.ca.join('')), Buffer.from(tls.key), Buffer.from(tls.cert), { checkServerIdentity: spiffeIdentityCheck(tls.subjectAltNames) })
        : grpc.credentials.createInsecure();
      client = new grpc.Client(key, credentials);
      this.#grpc.set(key, client);
    }
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

function networkFailure(err: NodeJS.ErrnoException): CheckOutcome {
  return { result: 'network_failure', detail: `connect ${err.code ?? err.message}` };
}

const SERVING_STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

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
