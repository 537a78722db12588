// Run requests through a filter without a proxy: the engine behind `wasmesh filter run`, and a test
// harness filter authors use with uvu. Everything is real: the module runs in the same runtime the
// proxy uses; only the network is replaced by what the caller describes.
import { readFile } from 'node:fs/promises';
import { LOG_LEVEL_NAMES, WasmResult, type LogLevel } from './abi/constants.ts';
import type { FailStrategy, ForeignFunction, HeaderList, HttpCallRequest, HttpCallResponse, HttpStreamSink, LocalResponse, PropertyValue, StreamInfo } from './host.ts';
import type { HttpStream } from './http-stream.ts';
import { MetricsRegistry, type MetricSnapshot } from './metrics/registry.ts';
import { compileModule } from './module.ts';
import { headerGet, toHeaderList } from './pairs.ts';
import { Plugin } from './plugin.ts';
import type { PluginConfig } from './plugin-settings.ts';
import { SharedDataStore } from './shared-data.ts';
import { SharedQueueRegistry } from './shared-queue.ts';

export type HeadersInput = Record<string, string | string[]> | Array<[string, string]>;
export type HeadersOutput = Record<string, string | string[]>;

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

/** A canned answer to an HTTP callout, by cluster name. `fail: true` makes the call fail (reset). */
export interface CalloutAnswer {
  status?: number;
  headers?: HeadersInput;
  body?: string;
  trailers?: HeadersInput;
  fail?: boolean;
}

export interface CalloutRecord {
  upstream: string;
  headers: HeadersOutput;
  body: string;
  timeoutMs: number;
  response: MessageOutput | null;
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
  /** Answers to HTTP callouts by cluster; a cluster not listed is unknown (the call gets BadArgument). */
  calloutResponses?: Record<string, CalloutAnswer>;
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
  logs: Array<{ level: string; message: string }>;
  callouts: CalloutRecord[];
}

export function headersToObject(list: HeaderList): HeadersOutput {
  const out: HeadersOutput = {};
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i];
    const prev = out[k];
    if (prev === undefined) out[k] = list[i + 1];
    else if (Array.isArray(prev)) prev.push(list[i + 1]);
    else out[k] = [prev, list[i + 1]];
  }
  return out;
}

function bodyBytes(body: string | Uint8Array | undefined): Buffer {
  if (body === undefined) return Buffer.alloc(0);
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
}

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

export class FilterHarness {
  readonly plugin: Plugin;
  readonly metrics: MetricsRegistry;
  readonly logs: Array<{ level: string; message: string }>;
  readonly callouts: CalloutRecord[];
  readonly #timeoutMs: number;
  #pendingCallouts = 0;

  private constructor(plugin: Plugin, metrics: MetricsRegistry, logs: FilterHarness['logs'], callouts: CalloutRecord[], timeoutMs: number) {
    this.plugin = plugin;
    this.metrics = metrics;
    this.logs = logs;
    this.callouts = callouts;
    this.#timeoutMs = timeoutMs;
  }

  /** Loads a module (a path or bytes) and starts the plugin. Throws WasmeshWasmError naming what is wrong. */
  static async load(module: string | Uint8Array, options: HarnessOptions = {}): Promise<FilterHarness> {
    const bytes = typeof module === 'string' ? await readFile(module) : module;
    const name = options.name ?? (typeof module === 'string' ? module.replace(/^.*\//, '').replace(/\.wasm$/, '') : 'filter');
    const compiled = await compileModule(bytes, { name: typeof module === 'string' ? module : name, memoryLimitBytes: options.memoryLimitBytes });
    const metrics = new MetricsRegistry();
    const logs: FilterHarness['logs'] = [];
    const callouts: CalloutRecord[] = [];
    const answers = options.calloutResponses ?? {};
    const props = new Map<string, PropertyValue>();
    for (const [k, v] of Object.entries(options.properties ?? {})) props.set(k.includes('\0') ? k : k.split('.').join('\0'), v);
    let harness: FilterHarness | undefined;
    const httpCall = (req: HttpCallRequest): Promise<HttpCallResponse | null> | WasmResult => {
      const answer = answers[req.upstream];
      if (!answer) return WasmResult.BadArgument;
      const record: CalloutRecord = { upstream: req.upstream, headers: headersToObject(req.headers), body: Buffer.from(req.body).toString('utf8'), timeoutMs: req.timeoutMs, response: null };
      callouts.push(record);
      if (harness) harness.#pendingCallouts++;
      return new Promise((resolve) => {
        setImmediate(() => {
          if (harness) harness.#pendingCallouts--;
          if (answer.fail) return resolve(null);
          const headers = toHeaderList(answer.headers);
          if (headerGet(headers, ':status') === undefined) headers.unshift(':status', String(answer.status ?? 200));
          const response = { headers, body: bodyBytes(answer.body), trailers: toHeaderList(answer.trailers) };
          record.response = { headers: headersToObject(headers), body: answer.body ?? '' };
          resolve(response);
        });
      });
    };
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
      },
      {
        log: (level: LogLevel, message: string) => {
          logs.push({ level: LOG_LEVEL_NAMES[level], message });
        },
        httpCall,
        getProperty: (path) => props.get(path.join('\0')),
        metrics,
        // Each harness is its own proxy: no data shared with other harnesses in the same process.
        sharedData: new SharedDataStore(),
        sharedQueues: new SharedQueueRegistry(),
        foreignFunctions: options.foreignFunctions,
      },
    );
    harness = new FilterHarness(plugin, metrics, logs, callouts, options.timeoutMs ?? 5000);
    harness.#streamInfo = options.streamInfo;
    return harness;
  }

  #streamInfo: StreamInfo | undefined;

  /** Runs one request (and, if given, its response) through the filter. */
  async run(input: RunInput): Promise<RunResult> {
    const sink = new RecordingSink();
    const logStart = this.logs.length;
    const calloutStart = this.callouts.length;
    // Each run is its own stream: filter state set during one run must not be seen by the next.
    const info = input.streamInfo ?? this.#streamInfo;
    const stream = this.plugin.createHttpStream(sink, info === undefined ? undefined : (Object.create(info) as StreamInfo));
    try {
      await this.#send(stream, input.request, true, sink);
      let stalled: RunResult['stalled'];
      const requestDone = () => sink.local !== undefined || sink.resetReason !== undefined || sink.request?.ended === true;
      if (!(await this.#settle(requestDone))) stalled = 'request';
      // A reply from here on came while the upstream's response passed (even synchronously, in its headers callback).
      const requestLocal = sink.local;
      if (sink.local && !stream.vmFailed) {
        // As in Envoy, a filter's local reply runs through the response path of the same stream.
        const l = sink.local;
        await this.#send(stream, { headers: [[':status', String(l.status)], ...pairs(l.headers)], body: l.body }, false, sink);
      } else if (sink.local) {
        sink.responseHeaders([':status', String(sink.local.status), ...sink.local.headers], sink.local.body.length === 0);
        if (sink.local.body.length > 0) sink.responseData(sink.local.body, true);
      } else if (input.response && !stalled && !sink.resetReason) {
        await this.#send(stream, input.response, false, sink);
      }
      // A filter may also answer while the upstream's response passes: its reply replaces that response.
      const answeredOnResponse = () => sink.local !== undefined && sink.local !== requestLocal;
      const responseDone = () => sink.resetReason !== undefined || sink.response?.ended === true || answeredOnResponse();
      if (!stalled && (input.response || sink.local) && !(await this.#settle(responseDone))) stalled = 'response';
      if (answeredOnResponse()) {
        const l = sink.local!;
        sink.response = { headers: [':status', String(l.status), ...l.headers], body: [Buffer.from(l.body)], ended: true };
      }
      const result: RunResult = { logs: this.logs.slice(logStart), callouts: this.callouts.slice(calloutStart) };
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
    } finally {
      stream.finish();
    }
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

  /** Lets callouts, ticks and deferred work run until `done()` or the timeout. */
  async #settle(done: () => boolean): Promise<boolean> {
    const deadline = Date.now() + this.#timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => (this.#pendingCallouts > 0 ? setImmediate(r) : setTimeout(r, 1)));
    }
    return true;
  }

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
