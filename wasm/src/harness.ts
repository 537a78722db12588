// Run requests through a filter without a proxy: the engine behind `wasmesh filter run`, and a test
// harness filter authors use with uvu. Everything is real: the module runs in the same runtime the
// proxy uses; only the network is replaced by what the caller describes (canned callout answers),
// and time by what the test steps (tick(), with manualTicks).
import { readFile } from 'node:fs/promises';
import { LOG_LEVEL_NAMES, type LogLevel } from './abi/constants.ts';
import { CannedCallouts, bodyBytes, headersToObject, type CalloutAnswer, type CalloutRecord, type GrpcCalloutAnswer, type GrpcCalloutRecord, type HeadersInput, type HeadersOutput } from './harness-callouts.ts';
import type { ConnectionPeer, ConnectionSide, FailStrategy, ForeignFunction, HeaderList, HttpStreamSink, LocalResponse, NetworkStreamSink, PropertyValue, StreamInfo } from './host.ts';
import type { HttpStream, StreamCallback, StreamObserver } from './http-stream.ts';
import type { ConnectionAction, NetworkStream } from './network-stream.ts';
import { isGrpcRequest, isTrailersOnly, localResponseHeaders } from './local-reply.ts';
import { MetricsRegistry, type MetricSnapshot } from './metrics/registry.ts';
import { compileModule } from './module.ts';
import { toHeaderList } from './pairs.ts';
import { Plugin } from './plugin.ts';
import type { PluginConfig } from './plugin-settings.ts';
import { SharedDataStore } from './shared-data.ts';
import { SharedQueueRegistry } from './shared-queue.ts';

export type { CalloutAnswer, CalloutRecord, GrpcCalloutAnswer, GrpcCalloutRecord, HeadersInput, HeadersOutput } from './harness-callouts.ts';
export { headersToObject } from './harness-callouts.ts';

export interface MessageInput {
  headers: HeadersInput;
  body?: string | Uint8Array;
  trailers?: HeadersInput;
}

export interface MessageOutput {
  headers: HeadersOutput;
  body: string;
  trailers?: HeadersOutput;
}

export interface HarnessOptions {
  /** pluginConfig: an object is passed as JSON. */
  configuration?: PluginConfig['configuration'];
  vmConfiguration?: PluginConfig['vmConfiguration'];
  name?: string;
  rootId?: string;
  vmId?: string;
  failStrategy?: FailStrategy;
  logLevel?: PluginConfig['logLevel'];
  env?: Record<string, string>;
  memoryLimitBytes?: number;
  maxBufferedBodyBytes?: number;
  /** Fuel per callback and for startup (the proxy's defaults otherwise): a test can prove a filter stays well inside them. */
  cpuBudget?: number;
  startupCpuBudget?: number;
  /** VMs in the plugin's pool (WasmPlugin spec.vms); default 1. Streams are spread over them as in a proxy. */
  vms?: number;
  /** Answers to HTTP callouts by cluster; a cluster not listed is unknown (the call gets BadArgument). */
  calloutResponses?: Record<string, CalloutAnswer>;
  /**
   * Answers to unary gRPC callouts by "cluster/service/method", "cluster/service" or "cluster" (the
   * most specific wins); a cluster not listed is unknown (the call gets ParseFailure).
   */
  grpcCalloutResponses?: Record<string, GrpcCalloutAnswer>;
  /**
   * on_tick runs only when the test calls tick(), never from a wall-clock timer, so a test steps
   * time as it likes. Default false: ticks follow the period the module set, as in a proxy.
   */
  manualTicks?: boolean;
  /**
   * Shared data and queues (proxy_set_shared_data, proxy_register_shared_queue, ...) to use instead
   * of this harness's own: pass another harness's `sharedData` and `sharedQueues` (and the same
   * vmId: both are scoped by it) and the two plugins see each other's data as two plugins of one
   * proxy do.
   */
  sharedData?: SharedDataStore;
  sharedQueues?: SharedQueueRegistry;
  /** Extra properties by dotted path ("source.principal") or NUL-joined path. */
  properties?: Record<string, PropertyValue>;
  /** Connection facts for every stream (source address, mTLS peer, ...). */
  streamInfo?: StreamInfo;
  /** How long run() waits for a paused stream to resume; default 5000 ms. */
  timeoutMs?: number;
  /** Foreign functions the module may call (proxy_call_foreign_function), besides the built-in ones. */
  foreignFunctions?: ReadonlyMap<string, ForeignFunction>;
}

export interface RunInput {
  request: MessageInput;
  /** The upstream's answer; omitted: the request's fate alone is reported. */
  response?: MessageInput;
  streamInfo?: StreamInfo;
}

export interface RunResult {
  /** The request as the upstream saw it; absent when the filter answered or reset first. */
  request?: MessageOutput;
  /** The filter (or the runtime, on failure) answered the request itself. */
  localResponse?: { status: number; details: string; headers: HeadersOutput; body: string; grpcStatus?: number };
  /** The response as the client saw it. */
  response?: MessageOutput;
  /** The filter reset the stream. */
  reset?: string;
  /** The stream was still paused when the timeout passed. */
  stalled?: 'request' | 'response';
  /** What the module logged while the stream ran, on_log, on_done and on_delete included. */
  logs: Array<{ level: string; message: string }>;
  callouts: CalloutRecord[];
  grpcCallouts: GrpcCalloutRecord[];
  /** What each stream callback returned, in the order they ran (calls that trapped are left out). */
  actions: CallbackAction[];
}

export interface CallbackAction {
  callback: StreamCallback;
  /** The ABI's Action: Continue (0) lets the headers, body or trailers through; Pause holds them. */
  action: 'Continue' | 'Pause';
  /** The value returned (the SDK's FilterHeadersStatusValues, FilterDataStatusValues, ...). */
  value: number;
}

/** What tick() ran and what it caused. */
export interface TickResult {
  /** on_tick calls made, over the pool's VMs (fewer than asked if a VM failed). */
  ticks: number;
  logs: Array<{ level: string; message: string }>;
  callouts: CalloutRecord[];
  grpcCallouts: GrpcCalloutRecord[];
}

class RecordingSink implements HttpStreamSink {
  request?: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList; ended: boolean };
  response?: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList; ended: boolean };
  local?: LocalResponse;
  resetReason?: string;
  readonly actions: CallbackAction[] = [];
  readonly observer: StreamObserver = {
    callbackReturned: (callback, value) => this.actions.push({ callback, action: value === 0 ? 'Continue' : 'Pause', value }),
  };

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.request = { headers: [...headers], body: [], ended: endOfStream };
  }
  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.request!.body.push(Buffer.from(data));
    this.request!.ended ||= endOfStream;
  }
  requestTrailers(trailers: HeaderList): void {
    this.request!.trailers = [...trailers];
    this.request!.ended = true;
  }
  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.response = { headers: [...headers], body: [], ended: endOfStream };
  }
  responseData(data: Uint8Array, endOfStream: boolean): void {
    this.response!.body.push(Buffer.from(data));
    this.response!.ended ||= endOfStream;
  }
  responseTrailers(trailers: HeaderList): void {
    this.response!.trailers = [...trailers];
    this.response!.ended = true;
  }
  localResponse(response: LocalResponse): void {
    this.local = response;
  }
  reset(reason: string): void {
    this.resetReason = reason;
  }
}

/** One step of a TCP connection run through a network filter (FilterHarness.runConnection). */
export type ConnectionStep =
  /** Bytes from the client; `end`: the client half-closes after them. */
  | { downstream: string | Uint8Array; end?: boolean }
  /** Bytes from the upstream; `end`: the upstream half-closes after them. */
  | { upstream: string | Uint8Array; end?: boolean }
  /** A socket closed: on_downstream/upstream_connection_close with that PeerType (default remote). */
  | { close: ConnectionSide; peer?: ConnectionPeer };

export interface ConnectionRunInput {
  steps: ConnectionStep[];
  streamInfo?: StreamInfo;
}

/** What one direction's receiver got. */
export interface ConnectionOutput {
  /** Everything the filter let through, as UTF-8 text (`bytes` holds the raw bytes). */
  data: string;
  bytes: Buffer;
  /** The end of stream (half-close) went through. */
  ended: boolean;
}

export interface ConnectionRunResult {
  /** What on_new_connection decided. */
  newConnection: ConnectionAction;
  /** What each data step returned, in order (after any pause the filter resumed while the harness settled). */
  actions: ConnectionAction[];
  /** What reached the upstream (client bytes the filter let through) and the client (upstream bytes). */
  upstream: ConnectionOutput;
  downstream: ConnectionOutput;
  /** The filter (or the runtime, on failure or a bound) closed the connection. */
  closed?: { side: ConnectionSide; reason: string };
  logs: Array<{ level: string; message: string }>;
  callouts: CalloutRecord[];
  grpcCallouts: GrpcCalloutRecord[];
}

/** Records what a network filter lets through and whether it closed the connection. */
export class ConnectionRecorder implements NetworkStreamSink {
  readonly upstream: Buffer[] = [];
  readonly downstream: Buffer[] = [];
  upstreamEnded = false;
  downstreamEnded = false;
  closed: { side: ConnectionSide; reason: string } | undefined;

  toUpstream(data: Uint8Array, endOfStream: boolean): void {
    if (data.length > 0) this.upstream.push(Buffer.from(data));
    this.upstreamEnded ||= endOfStream;
  }
  toDownstream(data: Uint8Array, endOfStream: boolean): void {
    if (data.length > 0) this.downstream.push(Buffer.from(data));
    this.downstreamEnded ||= endOfStream;
  }
  close(side: ConnectionSide, reason: string): void {
    this.closed ??= { side, reason };
  }

  output(to: 'upstream' | 'downstream'): ConnectionOutput {
    const bytes = Buffer.concat(to === 'upstream' ? this.upstream : this.downstream);
    return { data: bytes.toString('utf8'), bytes, ended: to === 'upstream' ? this.upstreamEnded : this.downstreamEnded };
  }
}

function toMessageOutput(m: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList }): MessageOutput {
  const out: MessageOutput = { headers: headersToObject(m.headers), body: Buffer.concat(m.body).toString('utf8') };
  if (m.trailers) out.trailers = headersToObject(m.trailers);
  return out;
}

export class FilterHarness {
  readonly plugin: Plugin;
  readonly metrics: MetricsRegistry;
  readonly logs: Array<{ level: string; message: string }>;
  readonly callouts: CalloutRecord[];
  readonly grpcCallouts: GrpcCalloutRecord[];
  /** The stores this plugin's shared data and queues live in: pass them to another harness to share. */
  readonly sharedData: SharedDataStore;
  readonly sharedQueues: SharedQueueRegistry;
  readonly #canned: CannedCallouts;
  readonly #timeoutMs: number;
  readonly #streamInfo: StreamInfo | undefined;

  private constructor(plugin: Plugin, metrics: MetricsRegistry, logs: FilterHarness['logs'], canned: CannedCallouts, options: HarnessOptions, stores: { sharedData: SharedDataStore; sharedQueues: SharedQueueRegistry }) {
    this.plugin = plugin;
    this.metrics = metrics;
    this.logs = logs;
    this.callouts = canned.http;
    this.grpcCallouts = canned.grpc;
    this.sharedData = stores.sharedData;
    this.sharedQueues = stores.sharedQueues;
    this.#canned = canned;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#streamInfo = options.streamInfo;
  }

  /** Loads a module (a path or bytes) and starts the plugin. Throws WasmeshWasmError naming what is wrong. */
  static async load(module: string | Uint8Array, options: HarnessOptions = {}): Promise<FilterHarness> {
    const bytes = typeof module === 'string' ? await readFile(module) : module;
    const name = options.name ?? (typeof module === 'string' ? module.replace(/^.*\//, '').replace(/\.wasm$/, '') : 'filter');
    const compiled = await compileModule(bytes, { name: typeof module === 'string' ? module : name, memoryLimitBytes: options.memoryLimitBytes });
    const metrics = new MetricsRegistry();
    const logs: FilterHarness['logs'] = [];
    const canned = new CannedCallouts(options.calloutResponses, options.grpcCalloutResponses);
    const props = new Map<string, PropertyValue>();
    for (const [k, v] of Object.entries(options.properties ?? {})) props.set(k.includes('\0') ? k : k.split('.').join('\0'), v);
    // Each harness is its own proxy unless given another's stores.
    const stores = { sharedData: options.sharedData ?? new SharedDataStore(), sharedQueues: options.sharedQueues ?? new SharedQueueRegistry() };
    const plugin = await Plugin.load(
      compiled,
      {
        name,
        rootId: options.rootId,
        vmId: options.vmId,
        configuration: options.configuration,
        vmConfiguration: options.vmConfiguration,
        failStrategy: options.failStrategy,
        logLevel: options.logLevel,
        env: options.env,
        maxBufferedBodyBytes: options.maxBufferedBodyBytes,
        cpuBudget: options.cpuBudget,
        startupCpuBudget: options.startupCpuBudget,
        vms: options.vms,
      },
      {
        log: (level: LogLevel, message: string) => {
          logs.push({ level: LOG_LEVEL_NAMES[level], message });
        },
        httpCall: canned.httpCall,
        grpcCall: canned.grpcCall,
        getProperty: (path) => props.get(path.join('\0')),
        metrics,
        ...stores,
        manualTicks: options.manualTicks === true,
        foreignFunctions: options.foreignFunctions,
      },
    );
    return new FilterHarness(plugin, metrics, logs, canned, options, stores);
  }

  /** Runs one request (and, if given, its response) through the filter; the stream ends (on_log, on_done, on_delete) before it returns. */
  async run(input: RunInput): Promise<RunResult> {
    const sink = new RecordingSink();
    const logStart = this.logs.length;
    const calloutStart = this.callouts.length;
    const grpcStart = this.grpcCallouts.length;
    // Each run is its own stream: filter state set during one run must not be seen by the next.
    const info = input.streamInfo ?? this.#streamInfo;
    const stream = this.plugin.createHttpStream(sink, info === undefined ? undefined : (Object.create(info) as StreamInfo));
    stream.observer = sink.observer;
    let result: RunResult;
    try {
      result = await this.#exchange(stream, sink, input);
    } finally {
      stream.finish();
    }
    result.logs = this.logs.slice(logStart);
    result.callouts = this.callouts.slice(calloutStart);
    result.grpcCallouts = this.grpcCallouts.slice(grpcStart);
    return result;
  }

  async #exchange(stream: HttpStream, sink: RecordingSink, input: RunInput): Promise<RunResult> {
    await this.#send(stream, input.request, true, sink);
    let stalled: RunResult['stalled'];
    const requestDone = () => sink.local !== undefined || sink.resetReason !== undefined || sink.request?.ended === true;
    if (!(await this.#settle(requestDone))) stalled = 'request';
    // Whether the client speaks gRPC decides the form of a local reply (wasm/src/local-reply.ts).
    const grpc = isGrpcRequest(stream.request.headers);
    // A reply from here on came while the upstream's response passed (even synchronously, in its headers callback).
    const requestLocal = sink.local;
    if (sink.local && !stream.vmFailed) {
      // As in Envoy, a filter's local reply runs through the response path of the same stream.
      const l = sink.local;
      await this.#send(stream, { headers: pairs(localResponseHeaders(l, grpc)), body: isTrailersOnly(l, grpc) ? undefined : l.body }, false, sink);
    } else if (sink.local) {
      const l = sink.local;
      const trailersOnly = isTrailersOnly(l, grpc) || l.body.length === 0;
      sink.responseHeaders(localResponseHeaders(l, grpc), trailersOnly);
      if (!trailersOnly) sink.responseData(l.body, true);
    } else if (input.response && !stalled && !sink.resetReason) {
      await this.#send(stream, input.response, false, sink);
    }
    // A filter may also answer while the upstream's response passes: its reply replaces that response.
    const answeredOnResponse = () => sink.local !== undefined && sink.local !== requestLocal;
    const responseDone = () => sink.resetReason !== undefined || sink.response?.ended === true || answeredOnResponse();
    if (!stalled && (input.response || sink.local) && !(await this.#settle(responseDone))) stalled = 'response';
    if (answeredOnResponse()) {
      const l = sink.local!;
      sink.response = { headers: localResponseHeaders(l, grpc), body: isTrailersOnly(l, grpc) ? [] : [Buffer.from(l.body)], ended: true };
    }
    const result: RunResult = { logs: [], callouts: [], grpcCallouts: [], actions: sink.actions };
    if (sink.request) result.request = toMessageOutput(sink.request);
    if (sink.local) {
      const l = sink.local;
      result.localResponse = { status: l.status, details: l.details, headers: headersToObject(l.headers), body: Buffer.from(l.body).toString('utf8') };
      if (l.grpcStatus >= 0) result.localResponse.grpcStatus = l.grpcStatus;
    }
    if (sink.response) result.response = toMessageOutput(sink.response);
    if (sink.resetReason) result.reset = sink.resetReason;
    if (stalled) result.stalled = stalled;
    return result;
  }

  async #send(stream: HttpStream, m: MessageInput, isRequest: boolean, sink: RecordingSink): Promise<void> {
    const headers = toHeaderList(m.headers);
    const body = bodyBytes(m.body);
    const trailers = m.trailers ? toHeaderList(m.trailers) : undefined;
    const stopped = () => sink.resetReason !== undefined || (isRequest && sink.local !== undefined);
    if (isRequest) stream.requestHeaders(headers, body.length === 0 && !trailers);
    else stream.responseHeaders(headers, body.length === 0 && !trailers);
    if (body.length > 0 && !stopped()) {
      if (isRequest) stream.requestData(body, !trailers);
      else stream.responseData(body, !trailers);
    }
    if (trailers && !stopped()) {
      if (isRequest) stream.requestTrailers(trailers);
      else stream.responseTrailers(trailers);
    }
  }

  /**
   * A TCP connection through the filter as a network filter, driven step by step: call onNewConnection,
   * onDownstreamData, ... on `stream`; `sink` records what went through. Call stream.finish() at the end.
   */
  connect(streamInfo?: StreamInfo): { stream: NetworkStream; sink: ConnectionRecorder } {
    const sink = new ConnectionRecorder();
    const info = streamInfo ?? this.#streamInfo;
    const stream = this.plugin.createNetworkStream(sink, info === undefined ? undefined : (Object.create(info) as StreamInfo));
    return { stream, sink };
  }

  /**
   * Runs one TCP connection through the filter: on_new_connection, then each step in order (callout
   * answers and resumes the filter starts are let run after each), then on_done, on_log, on_delete.
   * Steps after the connection closed are not delivered.
   */
  async runConnection(input: ConnectionRunInput): Promise<ConnectionRunResult> {
    const logStart = this.logs.length;
    const calloutStart = this.callouts.length;
    const grpcStart = this.grpcCallouts.length;
    const { stream, sink } = this.connect(input.streamInfo);
    const actions: ConnectionAction[] = [];
    let newConnection: ConnectionAction = 'close';
    try {
      newConnection = stream.onNewConnection();
      await this.settle();
      for (const step of input.steps) {
        if (sink.closed) break;
        if ('close' in step) {
          if (step.close === 'downstream') stream.onDownstreamClose(step.peer ?? 'remote');
          else stream.onUpstreamClose(step.peer ?? 'remote');
        } else if ('downstream' in step) {
          actions.push(stream.onDownstreamData(bodyBytes(step.downstream), step.end === true));
        } else {
          actions.push(stream.onUpstreamData(bodyBytes(step.upstream), step.end === true));
        }
        await this.settle();
      }
    } finally {
      stream.finish();
    }
    const result: ConnectionRunResult = {
      newConnection,
      actions,
      upstream: sink.output('upstream'),
      downstream: sink.output('downstream'),
      logs: this.logs.slice(logStart),
      callouts: this.callouts.slice(calloutStart),
      grpcCallouts: this.grpcCallouts.slice(grpcStart),
    };
    if (sink.closed) result.closed = sink.closed;
    return result;
  }

  /**
   * Runs on_tick `count` times in a row on each VM of the pool (the root context's timer, stepped by
   * hand: with `manualTicks` nothing else runs it), then waits for the callouts those ticks started to be
   * answered. Throws when the module set no tick period: a proxy would never call its on_tick.
   */
  async tick(count = 1): Promise<TickResult> {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`tick(count): count must be a whole number of at least 1, got ${String(count)}`);
    const vms = this.plugin.vms;
    if (vms.every((vm) => vm.root.tickPeriodMs === 0)) {
      throw new Error(`tick(): the filter set no tick period (proxy_set_tick_period_milliseconds / set_tick_period_milliseconds), so a proxy would never call its on_tick`);
    }
    const logStart = this.logs.length;
    const calloutStart = this.callouts.length;
    const grpcStart = this.grpcCallouts.length;
    let ticks = 0;
    // Each VM of the pool has its own root context and timer: each gets `count` ticks.
    for (const vm of vms) {
      if (vm.root.tickPeriodMs === 0) continue;
      for (let i = 0; i < count && vm.runTick(vm.root); i++) ticks++;
    }
    await this.settle();
    return { ticks, logs: this.logs.slice(logStart), callouts: this.callouts.slice(calloutStart), grpcCallouts: this.grpcCallouts.slice(grpcStart) };
  }

  /**
   * Lets what the host delivers later run: callout answers and shared-queue notifications
   * (on_queue_ready). Resolves once no callout is waiting (or the harness timeout passed).
   */
  async settle(): Promise<void> {
    // Queue notifications and callout answers are delivered on later turns of the event loop.
    await new Promise((r) => setImmediate(r));
    await this.#settle(() => this.#canned.pending === 0);
    await new Promise((r) => setImmediate(r));
  }

  /** Lets callouts, ticks and deferred work run until `done()` or the timeout. */
  async #settle(done: () => boolean): Promise<boolean> {
    const deadline = Date.now() + this.#timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => (this.#canned.pending > 0 ? setImmediate(r) : setTimeout(r, 1)));
    }
    return true;
  }

  /** The module's own metrics (the runtime's wasmesh_* are left out): name, labels, type, value. */
  metricsSnapshot(): MetricSnapshot[] {
    return this.metrics.snapshot().filter((m) => !m.name.startsWith('wasmesh_'));
  }

  async close(): Promise<void> {
    await this.plugin.stop();
  }
}

function pairs(list: HeaderList): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i], list[i + 1]]);
  return out;
}
