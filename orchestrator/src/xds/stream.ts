// One proxy's discovery stream: its node, what was sent (version, nonce), what it ACKed or NACKed,
// and the rule for when to send. State-of-the-world semantics for one type URL:
//   - the first request subscribes; its version_info is what the proxy already runs, so a proxy that
//     reconnects with the current version is not sent it again;
//   - at most one response is outstanding; a snapshot that arrives meanwhile waits for the ACK/NACK
//     and only the latest is sent (pending pushes merge);
//   - a request whose nonce is not the last one sent is stale and ignored;
//   - a NACK keeps the state, is logged with its error detail, and that version is not sent again:
//     only a different version is.

import type * as grpc from '@grpc/grpc-js';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import type { DiscoveryRequest, DiscoveryResponse } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { digestOf, type ConfigProblem, type ProxySnapshot } from '../snapshot/snapshot.ts';

/** For `wasmesh proxy-status`: one connected proxy. */
export interface ProxyStatus {
  readonly node: string;
  readonly workload: WorkloadIdentity;
  readonly connectedAt: string;
  /** Latest version sent, its nonce and when. */
  readonly sent?: { version: string; nonce: string; at: string };
  /** The version the proxy last said it runs. */
  readonly acked?: string;
  /** Set when the proxy refused the latest version sent. */
  readonly nacked?: { version: string; message: string; at: string };
  /** The version the cache holds for this proxy (may be newer than sent while a response is outstanding). */
  readonly latest?: string;
  /** The WorkloadEntry auto-registered for this proxy's endpoint ("<namespace>/<name>"), when it registered one. */
  readonly registered?: string;
  /**
   * The canary modules of the config the proxy runs or was last sent: it should report on them
   * (ReportFilterStats), and a rollout waits for it, then rolls back, when it does not.
   */
  readonly canaries?: readonly CanaryRef[];
  /** Why the orchestrator cannot build this proxy's latest config (it keeps what it was sent). */
  readonly buildErrors?: readonly string[];
  /** Resources the proxy's config does not carry as written (left out, or stood in for), and why. */
  readonly problems?: readonly ConfigProblem[];
  /** The filter chains of the config the proxy runs or was last sent, in order (the console shows them). */
  readonly filters?: { readonly inbound: readonly ChainEntry[]; readonly outbound: readonly ChainEntry[] };
}

/** One filter of a chain: the WasmPlugin, its phase, its module, and the canary's share. */
export interface ChainEntry {
  readonly plugin: string;
  readonly phase: string;
  readonly sha256?: string;
  readonly canary?: { readonly sha256?: string; readonly weight: number };
}

/** A canary module in a proxy's config: the WasmPlugin ("<namespace>/<name>") and the module's sha256. */
export interface CanaryRef {
  readonly plugin: string;
  readonly sha256: string;
}

export interface StreamLog {
  (level: 'info' | 'warn' | 'error' | 'debug', message: string): void;
}

let nonceCounter = 0;

export class ProxyStream {
  readonly node: string;
  readonly workload: WorkloadIdentity;
  readonly #call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  readonly #log: StreamLog;
  readonly #connectedAt = new Date().toISOString();
  /** The version the proxy has, as far as we know: what it reported first, then what we sent. */
  #known: string;
  #sent: { version: string; nonce: string; at: string } | undefined;
  #awaiting = false;
  #acked: string | undefined;
  #nacked: { version: string; message: string; at: string } | undefined;
  #latest: ProxySnapshot | undefined;
  /** The canaries of the version the proxy has or was last sent. */
  #canaries: CanaryRef[] = [];
  #chains: { inbound: ChainEntry[]; outbound: ChainEntry[] } | undefined;
  #closed = false;
  readonly #onAck: ((version: string) => void) | undefined;

  constructor(
    call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
    node: string,
    workload: WorkloadIdentity,
    first: DiscoveryRequest,
    log: StreamLog,
    onAck?: (version: string) => void,
  ) {
    this.#call = call;
    this.#onAck = onAck;
    this.node = node;
    this.workload = workload;
    this.#log = log;
    this.#known = first.version_info;
    if (first.version_info !== '') this.#acked = first.version_info;
  }

  /** A new snapshot for this proxy's workload (from the cache). */
  onSnapshot(snapshot: ProxySnapshot): void {
    this.#latest = snapshot;
    this.#maybeSend();
  }

  /** A request after the first: an ACK or NACK of the last response, or a stale one. */
  onRequest(req: DiscoveryRequest): void {
    if (this.#sent === undefined || req.response_nonce !== this.#sent.nonce) {
      this.#log('debug', `${this.node}: ignoring request with stale nonce ${JSON.stringify(req.response_nonce)}`);
      return;
    }
    this.#awaiting = false;
    const detail = req.error_detail;
    if (detail !== null && detail !== undefined && (detail.code !== 0 || detail.message !== '')) {
      this.#nacked = { version: this.#sent.version, message: detail.message, at: new Date().toISOString() };
      if (req.version_info !== '') this.#acked = req.version_info;
      this.#log('warn', `${this.node} NACKed ${this.#sent.version.slice(0, 12)} (keeps ${req.version_info.slice(0, 12) || 'nothing'}): ${detail.message}`);
    } else {
      this.#acked = req.version_info;
      if (req.version_info === this.#sent.version) this.#nacked = undefined;
      this.#log('debug', `${this.node} ACKed ${req.version_info.slice(0, 12)}`);
      this.#onAck?.(req.version_info);
    }
    this.#maybeSend();
  }

  close(): void {
    this.#closed = true;
  }

  status(): ProxyStatus {
    return {
      node: this.node,
      workload: this.workload,
      connectedAt: this.#connectedAt,
      ...(this.#sent ? { sent: { ...this.#sent } } : {}),
      ...(this.#acked !== undefined ? { acked: this.#acked } : {}),
      ...(this.#nacked ? { nacked: { ...this.#nacked } } : {}),
      ...(this.#latest ? { latest: this.#latest.version } : {}),
      ...(this.#canaries.length > 0 ? { canaries: this.#canaries.map((c) => ({ ...c })) } : {}),
      ...(this.#chains ? { filters: { inbound: [...this.#chains.inbound], outbound: [...this.#chains.outbound] } } : {}),
    };
  }

  #maybeSend(): void {
    const snapshot = this.#latest;
    if (this.#closed || this.#awaiting || snapshot === undefined) return;
    // Already sent (ACKed, NACKed or known to the proxy): wait for a different version.
    if (snapshot.version === this.#known) {
      // A proxy that reconnected with the latest version runs its canaries without being sent them.
      if (this.#sent === undefined) {
        this.#canaries = canariesOf(snapshot);
        this.#chains = chainsOf(snapshot);
      }
      return;
    }
    const nonce = `${process.pid.toString(36)}-${(++nonceCounter).toString(36)}`;
    const response: DiscoveryResponse = {
      version_info: snapshot.version,
      type_url: snapshot.typeUrl,
      nonce,
      resources: snapshot.resources.map((r) => ({ name: r.name, version: r.version, body: r.body })),
      removed_resources: [],
    };
    this.#sent = { version: snapshot.version, nonce, at: new Date().toISOString() };
    this.#known = snapshot.version;
    this.#canaries = canariesOf(snapshot);
    this.#chains = chainsOf(snapshot);
    this.#awaiting = true;
    this.#call.write(response);
    this.#log('debug', `${this.node}: sent ${snapshot.version.slice(0, 12)} (nonce ${nonce})`);
  }
}

function canariesOf(snapshot: ProxySnapshot): CanaryRef[] {
  const out: CanaryRef[] = [];
  for (const b of [...snapshot.config.inboundFilters, ...snapshot.config.outboundFilters]) {
    const sha256 = b.canary ? (b.canary.sha256?.toLowerCase() ?? digestOf(b.canary.url)) : undefined;
    const plugin = `${b.namespace}/${b.name}`;
    if (sha256 !== undefined && !out.some((c) => c.plugin === plugin && c.sha256 === sha256)) out.push({ plugin, sha256 });
  }
  return out;
}

function chainsOf(snapshot: ProxySnapshot): { inbound: ChainEntry[]; outbound: ChainEntry[] } {
  const entry = (b: ProxySnapshot['config']['inboundFilters'][number]): ChainEntry => {
    const sha256 = b.sha256?.toLowerCase() ?? digestOf(b.url);
    const canarySha = b.canary ? (b.canary.sha256?.toLowerCase() ?? digestOf(b.canary.url)) : undefined;
    return {
      plugin: `${b.namespace}/${b.name}`,
      phase: b.phase,
      ...(sha256 !== undefined ? { sha256 } : {}),
      ...(b.canary ? { canary: { weight: b.canary.weight, ...(canarySha !== undefined ? { sha256: canarySha } : {}) } } : {}),
    };
  };
  return { inbound: snapshot.config.inboundFilters.map(entry), outbound: snapshot.config.outboundFilters.map(entry) };
}
