// Managed mode: the proxy's side of the discovery stream (discovery.proto). It subscribes for its
// workload, and for each response: fetches the modules it does not have by digest (checking sha256)
// into a content-addressed cache under the data dir, points each filter binding at its local file,
// applies the config (the caller's `apply`, which is Proxy.start the first time and
// Proxy.applyConfig after), then ACKs the new version, or NACKs with the error and the last good
// version. When the orchestrator is unreachable it reconnects with exponential backoff; the proxy
// keeps serving the last good config meanwhile, and that config is also cached on disk
// (<data dir>/config.json) so a restart without the orchestrator can serve it.
//
// Waiting for a module download is not a NACK: a transient fetch failure is retried for as long as
// the stream lives; only a config that cannot work (module missing on the server, bad digest, a
// filter that does not start) is NACKed.

import { readFile, rename, writeFile, mkdir, access } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  PROXY_CONFIG_TYPE_URL,
  discoveryDefinition,
  type FilterVersionStatsMessage,
  type TrafficReportMessage,
  type DiscoveryClient,
  type DiscoveryRequestInput,
  type DiscoveryResponse,
} from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { ModuleStore } from './module-store.ts';
import { allFilterBindings, mapFilterBindings, type FilterBinding, type ProxyConfig, type WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';

export type XdsClientLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface XdsClientOptions {
  /** The orchestrator's discovery service, host:port. */
  address: string;
  /** Bearer token (role proxy); omitted when the orchestrator runs without tokens. */
  token?: string;
  workload: WorkloadIdentity;
  /** Node id for the orchestrator's logs and status (default <name>.<namespace>~<hostname>~<pid>). */
  nodeId?: string;
  /** Module cache and last good config live here. */
  dataDir: string;
  /**
   * Applies a config whose modules are on disk. Rejecting NACKs it (the caller keeps its last good
   * config). Calls never overlap.
   */
  apply: (config: ProxyConfig) => Promise<void>;
  /**
   * Endpoint auto-registration: while the stream lives the orchestrator keeps a WorkloadEntry with
   * this address and ports (keyed by service port name) and the workload's labels, so ServiceEntries
   * selecting those labels route to this proxy. Absent: nothing is registered.
   */
  register?: { address: string; ports: Readonly<Record<string, number>> };
  /**
   * Filter outcomes per module version, reported every `statsIntervalMs` while non-empty (the proxy
   * returns the canaried filters only): what the orchestrator judges a rollout on.
   */
  filterStats?: () => FilterVersionStatsMessage[];
  /**
   * The proxy's outbound golden signals (the console's graph), sent with every report, canary or not;
   * undefined while the proxy has none (not started).
   */
  trafficStats?: () => TrafficReportMessage | undefined;
  /** Default 2000 ms. */
  statsIntervalMs?: number;
  /** Reconnect backoff: first delay and cap (default 250 ms and 10 s), doubling with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  log?: XdsClientLog;
}

export interface XdsClientStatus {
  connected: boolean;
  /** The last version applied (and ACKed, when the stream was up). */
  applied?: string;
  /** The last version refused, and why. */
  rejected?: { version: string; message: string };
  /** The last stream failure. */
  lastError?: string;
  reconnects: number;
}

/** gRPC codes that mean "try again later" rather than "this config is wrong". */
const TRANSIENT = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED, grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.RESOURCE_EXHAUSTED, grpc.status.ABORTED]);

const DIGEST_URL = /^(?:digest:)?sha256:([A-Fa-f0-9]{64})$/;
const CONFIG_FILE = 'config.json';

/** A config the orchestrator sent that this proxy cannot use: NACKed with the message. */
class RejectedConfig extends Error {}

interface Attempt {
  readonly id: number;
  readonly client: DiscoveryClient;
  readonly call: grpc.ClientDuplexStream<DiscoveryRequestInput, DiscoveryResponse>;
  ended: boolean;
  readyPoll?: NodeJS.Timeout;
}

export class XdsClient {
  readonly #opts: XdsClientOptions;
  readonly #log: XdsClientLog;
  readonly #modules: ModuleStore;
  readonly #node: DiscoveryRequestInput['node'];
  readonly #initialMs: number;
  readonly #maxMs: number;
  #delayMs: number;
  #attempt: Attempt | undefined;
  #attempts = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  /** Responses and local applies, one at a time. */
  #queue: Promise<void> = Promise.resolve();
  #applied: string | undefined;
  #rejected: { version: string; message: string } | undefined;
  #lastError: string | undefined;
  #reconnects = 0;
  #firstConfig: { promise: Promise<ProxyConfig>; resolve: (c: ProxyConfig) => void };
  #statsTimer: NodeJS.Timeout | undefined;
  #reporting = false;

  constructor(opts: XdsClientOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.#modules = new ModuleStore(join(opts.dataDir, 'modules'));
    const w = opts.workload;
    this.#node = {
      id: opts.nodeId ?? `${w.name}.${w.namespace}~${hostname()}~${process.pid}`,
      workload: w.name,
      namespace: w.namespace,
      labels: { ...w.labels },
      service_account: w.serviceAccount,
      ...(opts.register ? { endpoint: { address: opts.register.address, ports: { ...opts.register.ports } } } : {}),
    };
    this.#initialMs = opts.backoff?.initialMs ?? 250;
    this.#maxMs = opts.backoff?.maxMs ?? 10_000;
    this.#delayMs = this.#initialMs;
    let resolve!: (c: ProxyConfig) => void;
    const promise = new Promise<ProxyConfig>((r) => (resolve = r));
    this.#firstConfig = { promise, resolve };
  }

  /** Connects (and keeps reconnecting until stop()). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
    if (this.#opts.filterStats || this.#opts.trafficStats) {
      this.#statsTimer = setInterval(() => this.#reportStats(), this.#opts.statsIntervalMs ?? 2000);
      this.#statsTimer.unref();
    }
  }

  /** Sends the filter stats on the current connection; skipped while there is none (the next tick retries). */
  #reportStats(): void {
    const attempt = this.#attempt;
    if (attempt === undefined || attempt.ended || this.#reporting) return;
    const filters = this.#opts.filterStats?.() ?? [];
    const traffic = this.#opts.trafficStats?.();
    if (filters.length === 0 && traffic === undefined) return;
    this.#reporting = true;
    attempt.client.ReportFilterStats({ node_id: this.#node?.id ?? '', config_version: this.#applied ?? '', filters, ...(traffic ? { traffic } : {}) }, this.#metadata(), { deadline: Date.now() + 5000 }, (err) => {
      this.#reporting = false;
      if (err) this.#log('debug', `filter stats report failed: ${err.details || err.message}`);
    });
  }

  /**
   * Closes the stream; the proxy keeps its config. Waits for an apply in progress. It says goodbye
   * first (a request with `leaving`: the orchestrator takes this proxy's auto-registered endpoint out
   * of every config at once, while this proxy drains), then cancels once the orchestrator has closed
   * its side or after `goodbyeMs`.
   */
  async stop(goodbyeMs = 1000): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#statsTimer);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const attempt = this.#attempt;
    if (attempt && !attempt.ended && goodbyeMs > 0) {
      const closed = new Promise<void>((resolve) => {
        attempt.call.once('end', resolve);
        attempt.call.once('error', () => resolve());
        attempt.call.once('close', resolve);
      });
      attempt.call.write({ type_url: PROXY_CONFIG_TYPE_URL, leaving: true });
      attempt.call.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, goodbyeMs)))]);
      clearTimeout(timer);
    }
    this.#closeAttempt();
    await this.#queue;
  }

  /** Resolves with the first config applied (from the orchestrator or applyLocal). */
  firstConfig(): Promise<ProxyConfig> {
    return this.#firstConfig.promise;
  }

  status(): XdsClientStatus {
    return {
      connected: this.#attempt !== undefined && !this.#attempt.ended,
      ...(this.#applied !== undefined ? { applied: this.#applied } : {}),
      ...(this.#rejected ? { rejected: { ...this.#rejected } } : {}),
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      reconnects: this.#reconnects,
    };
  }

  /**
   * Applies a config that did not come from the stream (the one cached on disk, when the
   * orchestrator cannot be reached at startup), in turn with responses. It becomes the version the
   * next subscription reports, so the orchestrator only sends something newer.
   */
  applyLocal(config: ProxyConfig): Promise<void> {
    const run = async () => {
      if (this.#applied !== undefined) return; // the orchestrator was faster
      await this.#opts.apply(config);
      this.#applied = config.version;
      this.#firstConfig.resolve(config);
    };
    const next = this.#queue.then(run);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** The last config applied from the orchestrator, cached in the data dir; undefined when absent or its modules are gone. */
  static async loadCachedConfig(dataDir: string): Promise<ProxyConfig | undefined> {
    let config: ProxyConfig;
    try {
      config = JSON.parse(await readFile(join(dataDir, CONFIG_FILE), 'utf8')) as ProxyConfig;
    } catch {
      return undefined;
    }
    if (typeof config?.version !== 'string' || !Array.isArray(config.inboundFilters) || !Array.isArray(config.outboundFilters)) return undefined;
    if (!networkShapeOk(config)) return undefined;
    for (const b of allFilterBindings(config)) {
      if (b.path === undefined) return undefined;
      try {
        await access(b.path);
      } catch {
        return undefined;
      }
    }
    return config;
  }

  // ---- the stream ------------------------------------------------------------------------------

  #connect(): void {
    if (this.#stopped) return;
    const { Client } = discoveryDefinition();
    const client = new Client(this.#opts.address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // This class owns reconnecting: a fresh channel per attempt connects at once.
      'grpc.initial_reconnect_backoff_ms': this.#initialMs,
      'grpc.max_reconnect_backoff_ms': this.#maxMs,
    });
    const call = client.StreamResources(this.#metadata());
    const attempt: Attempt = { id: ++this.#attempts, client, call, ended: false };
    this.#attempt = attempt;
    call.on('data', (res: DiscoveryResponse) => {
      this.#delayMs = this.#initialMs;
      this.#enqueue(attempt, res);
    });
    call.on('error', (err: grpc.ServiceError) => this.#ended(attempt, `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    call.on('end', () => this.#ended(attempt, 'stream closed by the orchestrator'));
    call.on('close', () => this.#ended(attempt, 'stream closed'));
    // Connected: the next failure starts its backoff from the beginning. Polled (not
    // waitForReady) so that nothing outlives the attempt.
    attempt.readyPoll = setInterval(() => {
      if (attempt.ended || client.getChannel().getConnectivityState(false) !== grpc.connectivityState.READY) return;
      clearInterval(attempt.readyPoll);
      this.#delayMs = this.#initialMs;
      this.#log('info', `connected to orchestrator ${this.#opts.address}`);
    }, 50);
    attempt.readyPoll.unref();
    this.#send(attempt, { version_info: this.#applied ?? '', response_nonce: '' });
  }

  #ended(attempt: Attempt, why: string): void {
    if (attempt.ended) return;
    attempt.ended = true;
    clearInterval(attempt.readyPoll);
    attempt.call.cancel();
    attempt.client.close();
    if (this.#attempt !== attempt || this.#stopped) return;
    this.#attempt = undefined;
    this.#lastError = why;
    const delay = Math.round(this.#delayMs * (0.8 + Math.random() * 0.4));
    this.#delayMs = Math.min(this.#delayMs * 2, this.#maxMs);
    this.#reconnects++;
    this.#log('warn', `orchestrator stream ended (${why}); keeping config ${this.#applied?.slice(0, 12) ?? '(none)'}, reconnecting in ${delay} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
  }

  #closeAttempt(): void {
    const attempt = this.#attempt;
    this.#attempt = undefined;
    if (attempt && !attempt.ended) {
      attempt.ended = true;
      clearInterval(attempt.readyPoll);
      attempt.call.cancel();
      attempt.client.close();
    }
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.#opts.token) md.set('authorization', `Bearer ${this.#opts.token}`);
    return md;
  }

  #send(attempt: Attempt, fields: Pick<DiscoveryRequestInput, 'version_info' | 'response_nonce' | 'error_detail'>): void {
    if (attempt.ended) return;
    const w = this.#opts.workload;
    attempt.call.write({ node: this.#node, type_url: PROXY_CONFIG_TYPE_URL, resource_names: [`${w.namespace}/${w.name}`], error_detail: null, ...fields });
  }

  // ---- responses -------------------------------------------------------------------------------

  #enqueue(attempt: Attempt, res: DiscoveryResponse): void {
    const next = this.#queue.then(() => this.#handle(attempt, res));
    this.#queue = next.catch((err: unknown) => this.#log('error', `handling a response failed: ${messageOf(err)}`));
  }

  async #handle(attempt: Attempt, res: DiscoveryResponse): Promise<void> {
    if (attempt.ended) return; // a reconnect re-subscribes with what we run; the server resends if needed
    let config: ProxyConfig;
    try {
      config = this.#parse(res);
      if (config.version === this.#applied) {
        this.#send(attempt, { version_info: config.version, response_nonce: res.nonce });
        return;
      }
      config = await this.#localize(attempt, config);
    } catch (err) {
      if (err instanceof StreamGone) return;
      this.#nack(attempt, res, err);
      return;
    }
    try {
      await this.#opts.apply(config);
    } catch (err) {
      this.#nack(attempt, res, err);
      return;
    }
    this.#applied = config.version;
    this.#rejected = undefined;
    this.#log('info', `applied config ${config.version.slice(0, 12)} from the orchestrator`);
    this.#send(attempt, { version_info: config.version, response_nonce: res.nonce });
    this.#firstConfig.resolve(config);
    await this.#persist(config).catch((err: unknown) => this.#log('warn', `cannot cache config in ${this.#opts.dataDir}: ${messageOf(err)}`));
    // Modules are kept while the applied config (the one cached on disk too) references them, never
    // by age: once it no longer does, a module the orchestrator sends again is fetched again.
    const removed = await this.#modules.retain(moduleDigests(config)).catch((err: unknown) => {
      this.#log('warn', `cannot clean the module cache: ${messageOf(err)}`);
      return [];
    });
    if (removed.length > 0) this.#log('debug', `module cache: removed ${removed.length} module(s) no config references`);
  }

  #nack(attempt: Attempt, res: DiscoveryResponse, err: unknown): void {
    const message = messageOf(err);
    this.#rejected = { version: res.version_info, message };
    this.#log('error', `config ${res.version_info.slice(0, 12)} rejected, keeping ${this.#applied?.slice(0, 12) ?? '(none)'}: ${message}`);
    this.#send(attempt, { version_info: this.#applied ?? '', response_nonce: res.nonce, error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
  }

  #parse(res: DiscoveryResponse): ProxyConfig {
    if (res.type_url !== PROXY_CONFIG_TYPE_URL) throw new RejectedConfig(`unsupported type_url ${JSON.stringify(res.type_url)}`);
    const w = this.#opts.workload;
    const name = `${w.namespace}/${w.name}`;
    const resource = res.resources.find((r) => r.name === name);
    if (!resource) throw new RejectedConfig(`response has no resource ${name}`);
    let config: ProxyConfig;
    try {
      config = JSON.parse(Buffer.from(resource.body).toString('utf8')) as ProxyConfig;
    } catch (err) {
      throw new RejectedConfig(`resource ${name} is not JSON: ${messageOf(err)}`);
    }
    if (typeof config !== 'object' || config === null || !Array.isArray(config.virtualHosts) || typeof config.clusters !== 'object' || !Array.isArray(config.inboundFilters) || !Array.isArray(config.outboundFilters) || !networkShapeOk(config)) {
      throw new RejectedConfig(`resource ${name} is not a ProxyConfig`);
    }
    if (config.version !== resource.version || config.version !== res.version_info) {
      throw new RejectedConfig(`resource ${name} has version ${config.version}, response says ${res.version_info}`);
    }
    return config;
  }

  /** The config with every binding pointed at its module in the local cache (downloaded if missing). */
  async #localize(attempt: Attempt, config: ProxyConfig): Promise<ProxyConfig> {
    const paths = new Map<string, Promise<string>>();
    const localize = async (b: FilterBinding): Promise<FilterBinding> => {
      const sha = DIGEST_URL.exec(b.url)?.[1]?.toLowerCase();
      if (sha === undefined) throw new RejectedConfig(`WasmPlugin ${b.namespace}/${b.name}: url ${JSON.stringify(b.url)} is not a module digest; a managed proxy loads modules by digest only`);
      if (b.sha256 !== undefined && b.sha256.toLowerCase() !== sha) throw new RejectedConfig(`WasmPlugin ${b.namespace}/${b.name}: sha256 ${b.sha256} does not match url ${b.url}`);
      const fetch = (digest: string): Promise<string> => {
        let path = paths.get(digest);
        if (path === undefined) {
          path = this.#ensureModule(attempt, digest);
          paths.set(digest, path);
        }
        return path;
      };
      const c = b.canary;
      if (c === undefined) return { ...b, sha256: sha, path: await fetch(sha) };
      const canarySha = DIGEST_URL.exec(c.url)?.[1]?.toLowerCase();
      if (canarySha === undefined) throw new RejectedConfig(`WasmPlugin ${b.namespace}/${b.name}: canary url ${JSON.stringify(c.url)} is not a module digest`);
      const [path, canaryPath] = await Promise.all([fetch(sha), fetch(canarySha)]);
      return { ...b, sha256: sha, path, canary: { ...c, sha256: canarySha, path: canaryPath } };
    };
    // Every binding's module fetched (HTTP and network chains alike), then the config pointed at them.
    const local = new Map<FilterBinding, FilterBinding>();
    await Promise.all(allFilterBindings(config).map(async (b) => local.set(b, await localize(b))));
    return mapFilterBindings(config, (b) => local.get(b)!);
  }

  async #ensureModule(attempt: Attempt, sha: string): Promise<string> {
    if (await this.#modules.has(sha)) return this.#modules.pathOf(sha);
    let delay = this.#initialMs;
    for (;;) {
      if (attempt.ended) throw new StreamGone();
      try {
        const bytes = await this.#fetch(attempt, sha);
        const path = await this.#modules.put(sha, bytes);
        this.#log('info', `module sha256:${sha.slice(0, 12)} fetched (${bytes.length} bytes)`);
        return path;
      } catch (err) {
        const code = (err as Partial<grpc.ServiceError>).code;
        if (typeof code === 'number' && TRANSIENT.has(code)) {
          this.#log('warn', `fetching module sha256:${sha.slice(0, 12)} failed (${messageOf(err)}); retrying in ${delay} ms`);
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, this.#maxMs);
          continue;
        }
        throw new RejectedConfig(`module sha256:${sha}: ${messageOf(err)}`);
      }
    }
  }

  #fetch(attempt: Attempt, sha: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const call = attempt.client.FetchModule({ sha256: sha }, this.#metadata(), { deadline: Date.now() + 60_000 });
      call.on('data', (chunk: { data: Buffer }) => chunks.push(Buffer.from(chunk.data)));
      call.on('error', () => {}); // reported through 'status'
      // 'status' comes last and says whether every chunk arrived.
      call.on('status', (status: grpc.StatusObject) => {
        if (status.code === grpc.status.OK) resolve(Buffer.concat(chunks));
        else reject(Object.assign(new Error(status.details), { code: status.code, details: status.details }));
      });
    });
  }

  async #persist(config: ProxyConfig): Promise<void> {
    await mkdir(this.#opts.dataDir, { recursive: true });
    const file = join(this.#opts.dataDir, CONFIG_FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    // 0600: a gateway's config may carry a TLSSecret's private key.
    await writeFile(tmp, JSON.stringify(config), { mode: 0o600 });
    await rename(tmp, file);
  }
}

/** The stream a response came on has ended: drop the response (the next subscription gets it again). */
class StreamGone extends Error {}

function messageOf(err: unknown): string {
  if (err && typeof err === 'object' && 'details' in err && typeof (err as grpc.ServiceError).details === 'string' && (err as grpc.ServiceError).details !== '') {
    return (err as grpc.ServiceError).details;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Every module digest a config's bindings use (canaries included). */
function moduleDigests(config: ProxyConfig): Set<string> {
  const out = new Set<string>();
  for (const b of allFilterBindings(config)) {
    if (b.sha256) out.add(b.sha256.toLowerCase());
    if (b.canary?.sha256) out.add(b.canary.sha256.toLowerCase());
  }
  return out;
}

/** `networkFilters`, when present, has both lists. */
function networkShapeOk(config: ProxyConfig): boolean {
  const n = config.networkFilters;
  return n === undefined || (typeof n === 'object' && n !== null && Array.isArray(n.inbound) && Array.isArray(n.outbound));
}
