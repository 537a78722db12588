// Run requests through a component filter without a proxy: what a TypeScript filter's unit tests use
// (`import { ComponentHarness } from 'wasmesh/component'`), with the same inputs and results as the
// proxy-wasm FilterHarness. Everything is real: the component is transpiled, metered and called by
// the proxy's own component host (ComponentPlugin), under the same CPU budget and failStrategy.
// Component calls are synchronous (the world has no callouts or timers), so a run needs no waiting.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LOG_LEVEL_NAMES, type LogLevel } from '../../../wasm/src/abi/constants.ts';
import type { FailStrategy, HeaderList, HttpStreamSink, LocalResponse, PropertyValue, StreamInfo } from '../../../wasm/src/host.ts';
import { headersToObject, type MessageInput, type MessageOutput, type RunInput, type RunResult } from '../../../wasm/src/harness.ts';
import { bodyBytes } from '../../../wasm/src/harness-callouts.ts';
import { isGrpcRequest, isTrailersOnly, localResponseHeaders } from '../../../wasm/src/local-reply.ts';
import { MetricsRegistry, type MetricSnapshot } from '../../../wasm/src/metrics/registry.ts';
import { toHeaderList } from '../../../wasm/src/pairs.ts';
import type { PluginConfig } from '../../../wasm/src/plugin-settings.ts';
import { SharedDataStore } from '../../../wasm/src/shared-data.ts';
import { SharedQueueRegistry } from '../../../wasm/src/shared-queue.ts';
import { ComponentCache } from './component-filter.ts';
import { ComponentPlugin, type ComponentStream } from './component-plugin.ts';
import { TranspileCache } from './transpile-cache.ts';

export interface ComponentHarnessOptions {
  /** pluginConfig: an object is passed as JSON. */
  configuration?: PluginConfig['configuration'];
  name?: string;
  vmId?: string;
  failStrategy?: FailStrategy;
  logLevel?: PluginConfig['logLevel'];
  maxBufferedBodyBytes?: number;
  /** Fuel per call (default: the component default) and for instantiate + configure. */
  cpuBudget?: number;
  startupCpuBudget?: number;
  /** Shared data of another harness (and the same vmId): the two see each other's writes. */
  sharedData?: SharedDataStore;
  /** Extra properties by dotted path ("source.principal") or NUL-joined path. */
  properties?: Record<string, PropertyValue>;
  streamInfo?: StreamInfo;
}

/**
 * Components compiled once per process (metering and compiling a JavaScript engine takes a second
 * or more), their transpiles kept beside the .wasm (build/.component-cache) when loaded from a file.
 */
const caches = new Map<string, ComponentCache>();
function cacheFor(file: string | undefined): ComponentCache {
  const dir = file === undefined ? '' : path.join(path.dirname(path.resolve(file)), '.component-cache');
  let cache = caches.get(dir);
  if (!cache) {
    cache = new ComponentCache(dir === '' ? undefined : new TranspileCache(dir));
    caches.set(dir, cache);
  }
  return cache;
}

type Phase = 'on_request_headers' | 'on_request_body' | 'on_request_trailers' | 'on_response_headers' | 'on_response_body' | 'on_response_trailers';

class RecordingSink implements HttpStreamSink {
  request?: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList; ended: boolean };
  response?: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList; ended: boolean };
  local?: LocalResponse;
  resetReason?: string;

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

function toMessageOutput(m: { headers: HeaderList; body: Buffer[]; trailers?: HeaderList }): MessageOutput {
  const out: MessageOutput = { headers: headersToObject(m.headers), body: Buffer.concat(m.body).toString('utf8') };
  if (m.trailers) out.trailers = headersToObject(m.trailers);
  return out;
}

export class ComponentHarness {
  readonly plugin: ComponentPlugin;
  readonly metrics: MetricsRegistry;
  readonly logs: Array<{ level: string; message: string }>;
  readonly sharedData: SharedDataStore;
  readonly #streamInfo: StreamInfo | undefined;

  private constructor(plugin: ComponentPlugin, metrics: MetricsRegistry, logs: ComponentHarness['logs'], sharedData: SharedDataStore, streamInfo: StreamInfo | undefined) {
    this.plugin = plugin;
    this.metrics = metrics;
    this.logs = logs;
    this.sharedData = sharedData;
    this.#streamInfo = streamInfo;
  }

  /** Loads a component (a path or bytes), instantiates and configures it. Throws naming what is wrong (a configure error: the filter's message). */
  static async load(module: string | Uint8Array, options: ComponentHarnessOptions = {}): Promise<ComponentHarness> {
    const bytes = typeof module === 'string' ? await readFile(module) : module;
    const name = options.name ?? (typeof module === 'string' ? path.basename(module).replace(/\.wasm$/, '') : 'filter');
    const compiled = await cacheFor(typeof module === 'string' ? module : undefined).get(bytes, { name: typeof module === 'string' ? module : name, ...(options.startupCpuBudget ? { startupCpuBudget: options.startupCpuBudget } : {}) });
    const metrics = new MetricsRegistry();
    const logs: ComponentHarness['logs'] = [];
    const props = new Map<string, PropertyValue>();
    for (const [k, v] of Object.entries(options.properties ?? {})) props.set(k.includes('\0') ? k : k.split('.').join('\0'), v);
    const sharedData = options.sharedData ?? new SharedDataStore();
    const plugin = await ComponentPlugin.load(
      compiled,
      {
        name,
        vmId: options.vmId,
        configuration: options.configuration,
        failStrategy: options.failStrategy,
        logLevel: options.logLevel,
        maxBufferedBodyBytes: options.maxBufferedBodyBytes,
        cpuBudget: options.cpuBudget,
        startupCpuBudget: options.startupCpuBudget,
      },
      {
        log: (level: LogLevel, message: string) => {
          logs.push({ level: LOG_LEVEL_NAMES[level], message });
        },
        getProperty: (p) => props.get(p.join('\0')),
        metrics,
        sharedData,
        sharedQueues: new SharedQueueRegistry(),
      },
    );
    return new ComponentHarness(plugin, metrics, logs, sharedData, options.streamInfo);
  }

  /** Runs one request (and, if given, its response) through the filter; the stream ends (on-stream-done) before it returns. */
  async run(input: RunInput): Promise<RunResult> {
    const sink = new RecordingSink();
    const logStart = this.logs.length;
    const info = input.streamInfo ?? this.#streamInfo;
    const stream = this.plugin.createHttpStream(sink, info === undefined ? undefined : (Object.create(info) as StreamInfo));
    const actions: RunResult['actions'] = [];
    stream.observer = (phase: Phase, action: 'Continue' | 'Pause') => actions.push({ callback: phase, action, value: action === 'Continue' ? 0 : 1 });
    let result: RunResult;
    try {
      result = this.#exchange(stream, sink, input);
    } finally {
      stream.finish();
    }
    result.actions = actions;
    result.logs = this.logs.slice(logStart);
    return result;
  }

  #exchange(stream: ComponentStream, sink: RecordingSink, input: RunInput): RunResult {
    send(stream, input.request, true, sink);
    const grpc = isGrpcRequest(stream.request.headers);
    const requestLocal = sink.local;
    const requestDone = sink.local !== undefined || sink.resetReason !== undefined || sink.request?.ended === true;
    let stalled: RunResult['stalled'] = requestDone ? undefined : 'request';
    if (sink.local && !stream.vmFailed) {
      // As in the proxy, a filter's local reply runs through the response path of the same stream.
      const l = sink.local;
      send(stream, { headers: pairs(localResponseHeaders(l, grpc)), body: isTrailersOnly(l, grpc) ? undefined : l.body }, false, sink);
    } else if (sink.local) {
      const l = sink.local;
      const trailersOnly = isTrailersOnly(l, grpc) || l.body.length === 0;
      sink.responseHeaders(localResponseHeaders(l, grpc), trailersOnly);
      if (!trailersOnly) sink.responseData(l.body, true);
    } else if (input.response && !stalled && !sink.resetReason) {
      send(stream, input.response, false, sink);
    }
    const answeredOnResponse = sink.local !== undefined && sink.local !== requestLocal;
    if (!stalled && (input.response || sink.local) && !(sink.resetReason !== undefined || sink.response?.ended === true || answeredOnResponse)) stalled = 'response';
    if (answeredOnResponse) {
      const l = sink.local!;
      sink.response = { headers: localResponseHeaders(l, grpc), body: isTrailersOnly(l, grpc) ? [] : [Buffer.from(l.body)], ended: true };
    }
    const result: RunResult = { logs: [], callouts: [], grpcCallouts: [], actions: [] };
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

  /** The filter's own metrics (the runtime's wasmesh_* are left out). */
  metricsSnapshot(): MetricSnapshot[] {
    return this.metrics.snapshot().filter((m) => !m.name.startsWith('wasmesh_'));
  }

  async close(): Promise<void> {
    await this.plugin.stop();
  }
}

function send(stream: ComponentStream, m: MessageInput, isRequest: boolean, sink: RecordingSink): void {
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

function pairs(list: HeaderList): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i], list[i + 1]]);
  return out;
}
