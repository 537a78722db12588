// A WasmPlugin whose module is a wasmesh:filter component, in the proxy's filter chain beside
// proxy-wasm plugins (chain.ts sees the same surface as a Plugin: streams, outcomes, status).
//
// One live ComponentInstance serves new streams. Each phase the filter asked for in `configure` is
// one call under the plugin's CPU budget (fuel); the host applies what the call returns: header and
// trailer changes, a replaced body, continue / stop / a local reply, then the effects (log lines at
// the plugin's log level, metric updates on the metrics it declared, shared-data writes with CAS
// under its vm_id). Phases it did not ask for cost nothing.
//
// A call that traps (a throw out of the filter, the budget spent, memory, any wasm trap) kills the
// instance: the stream follows failStrategy (FAIL_OPEN: it passes through as it is; otherwise 503,
// or a reset once the response started), the trap is counted by cause, and a new instance is
// started in the background (instantiating takes tens of ms, so it is never done on a request).
// Streams that arrive before it is ready follow failStrategy too. A version that fails
// BAD_AFTER_CONSECUTIVE_FAILURES times in a row without a stream served between is `bad`, and
// replacements back off (100 ms doubling to 30 s) as they do for proxy-wasm VMs.
import { GrpcStatus, LogLevel, MetricType } from '../../../wasm/src/abi/constants.ts';
import { ErrorCode, WasmeshWasmError, type TrapCause } from '../../../wasm/src/errors.ts';
import type { HeaderList, HttpStreamSink, LocalResponse, PluginHost, PropertyValue, StreamInfo } from '../../../wasm/src/host.ts';
import { httpProperty, localReply } from '../../../wasm/src/http-stream.ts';
import { VM_RESTART_BACKOFF_INITIAL_MS, VM_RESTART_BACKOFF_MAX_MS } from '../../../wasm/src/limits.ts';
import { isGrpcRequest } from '../../../wasm/src/local-reply.ts';
import type { Metric } from '../../../wasm/src/metrics/registry.ts';
import { BAD_AFTER_CONSECUTIVE_FAILURES } from '../../../wasm/src/plugin.ts';
import { buildPluginSettings, type PluginConfig, type PluginSettings } from '../../../wasm/src/plugin-settings.ts';
import { connectionProperty, encodeProperty } from '../../../wasm/src/properties.ts';
import {
  ComponentFilterError, ComponentInstance, DEFAULT_COMPONENT_CPU_BUDGET, DEFAULT_COMPONENT_STARTUP_CPU_BUDGET,
  type Action, type CallContext, type Handler, type CompiledComponent, type Effects, type FieldChanges, type Fields, type Needs, type PhaseName,
} from './component-filter.ts';

const LEVELS: Record<string, LogLevel> = { trace: LogLevel.Trace, debug: LogLevel.Debug, info: LogLevel.Info, warn: LogLevel.Warn, error: LogLevel.Error, critical: LogLevel.Critical };
const PHASE_BITS: Record<PhaseName, number> = { 'request-headers': 1, 'request-body': 2, 'request-trailers': 4, 'response-headers': 8, 'response-body': 16, 'response-trailers': 32 };
const EMPTY = Buffer.alloc(0);
/** A header name the host passes on: an HTTP token in lowercase, or an HTTP/2 pseudo-header. */
const HEADER_NAME = /^:?[a-z0-9!#$%&'*+.^_`|~-]+$/;

export type ComponentPluginState = 'running' | 'failed' | 'stopped';

/** Config of a component plugin: a proxy-wasm PluginConfig whose budgets default to the component ones. */
export function componentSettings(config: PluginConfig, host?: PluginHost): PluginSettings {
  return buildPluginSettings(
    { ...config, cpuBudget: config.cpuBudget ?? DEFAULT_COMPONENT_CPU_BUDGET, startupCpuBudget: config.startupCpuBudget ?? DEFAULT_COMPONENT_STARTUP_CPU_BUDGET },
    host,
  );
}

export class ComponentPlugin {
  readonly compiled: CompiledComponent;
  readonly settings: PluginSettings;
  readonly needs: Needs;
  readonly #phases: number;
  readonly #metricsByName = new Map<string, Metric>();
  readonly #undeclared = new Set<string>();
  #instance: ComponentInstance | undefined;
  #replacing: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #consecutiveFailures = 0;
  #activeStreams = 0;
  #stopped = false;
  #nextStreamId = 1n;
  readonly #drainWaiters: Array<() => void> = [];
  readonly #m: { traps: Map<TrapCause, Metric>; restarts: Metric; startFailures: Metric; failed: Metric; activeStreams: Metric; bad: Metric };
  lastFailure = '';
  lastFailureCause: TrapCause | undefined;
  trapCount = 0;
  readonly trapsByCause = new Map<TrapCause, number>();
  streamsFinished = 0;
  streamsFailed = 0;
  /** Instances started after a failure, and how long the last instantiate + configure took (ms). */
  restarts = 0;
  lastStartMs = 0;

  private constructor(compiled: CompiledComponent, settings: PluginSettings, instance: ComponentInstance, needs: Needs, startMs: number) {
    this.compiled = compiled;
    this.settings = settings;
    this.needs = needs;
    this.#instance = instance;
    this.lastStartMs = startMs;
    let phases = 0;
    for (const p of needs.phases) phases |= PHASE_BITS[p] ?? 0;
    this.#phases = phases;
    const m = settings.host.metrics;
    const labels = { plugin: settings.name };
    this.#m = {
      traps: new Map(),
      restarts: m.counter('wasmesh_wasm_vm_restarts_total', 'Plugin VMs replaced after a failure', labels),
      startFailures: m.counter('wasmesh_wasm_vm_start_failures_total', 'Plugin VMs that failed to start when replacing a failed one', labels),
      failed: m.gauge('wasmesh_wasm_plugin_failed', '1 while the plugin has no healthy VM', labels),
      activeStreams: m.gauge('wasmesh_wasm_active_streams', 'Streams in flight through the plugin', labels),
      bad: m.gauge('wasmesh_wasm_module_bad', `1 while a module version has failed ${BAD_AFTER_CONSECUTIVE_FAILURES} or more times in a row`, { plugin: settings.name, module: compiled.sha256.slice(0, 12) }),
    };
    for (const d of needs.metrics) {
      const type = d.kind === 'counter' ? MetricType.Counter : d.kind === 'gauge' ? MetricType.Gauge : MetricType.Histogram;
      const metric = m.define(type, d.name);
      if (metric) this.#metricsByName.set(d.name, metric);
      else this.#log(LogLevel.Warn, `metric ${JSON.stringify(d.name)} (${d.kind}) cannot be defined (bad name, or the series limit is reached); its updates are dropped`);
    }
  }

  /** Instantiates and configures the first instance. Throws (ComponentFilterError, WasmeshWasmError) naming why. */
  static async load(compiled: CompiledComponent, config: PluginConfig, host?: PluginHost): Promise<ComponentPlugin> {
    const settings = componentSettings(config, host);
    const started = performance.now();
    const instance = await ComponentInstance.create(compiled);
    const needs = instance.configure(settings.pluginConfiguration, settings.name);
    return new ComponentPlugin(compiled, settings, instance, needs, performance.now() - started);
  }

  get state(): ComponentPluginState {
    if (this.#stopped) return 'stopped';
    return this.#instance === undefined || this.#instance.failed ? 'failed' : 'running';
  }

  get bad(): boolean {
    return this.#consecutiveFailures >= BAD_AFTER_CONSECUTIVE_FAILURES;
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  recordOutcome(failed: boolean): void {
    this.streamsFinished++;
    if (failed) this.streamsFailed++;
  }

  /** A new stream; its output goes to `sink`. Call finish() when it ends. */
  createHttpStream(sink: HttpStreamSink, info?: StreamInfo): ComponentStream {
    if (this.#stopped) throw new WasmeshWasmError(ErrorCode.StartFailed, `plugin ${this.settings.name} is stopped`);
    this.#activeStreams++;
    this.#m.activeStreams.increment(1);
    const instance = this.#instance;
    return new ComponentStream(this, instance !== undefined && !instance.failed ? instance : undefined, sink, info, this.#nextStreamId++);
  }

  drained(): Promise<void> {
    if (this.#activeStreams === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    await this.#replacing;
    this.#instance = undefined;
  }

  /** Waits for a replacement instance in progress (tests). */
  async replaced(): Promise<void> {
    await this.#replacing;
  }

  // ---- used by ComponentStream -------------------------------------------------------------------

  /** @internal */
  wants(phase: PhaseName): boolean {
    return (this.#phases & PHASE_BITS[phase]) !== 0;
  }

  /** @internal */
  streamFinished(servedByLiveInstance: boolean): void {
    if (servedByLiveInstance) this.#consecutiveFailures = 0;
    this.#activeStreams--;
    this.#m.activeStreams.increment(-1);
    if (this.#activeStreams === 0) for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** @internal The context of one call: the declared properties and shared values, read now. */
  callContext(stream: ComponentStream): CallContext {
    const properties: CallContext['properties'] = [];
    for (const path of this.needs.properties) {
      const v = this.#property(stream, path);
      const bytes = v === undefined ? undefined : encodeProperty(v);
      // encodeProperty hands numbers back in a shared scratch buffer: copy.
      properties.push({ path, value: bytes === undefined ? undefined : Uint8Array.from(bytes) });
    }
    const shared: CallContext['shared'] = [];
    const store = this.settings.host.sharedData;
    for (const key of this.needs.sharedKeys) {
      const e = store.get(this.settings.vmId, key);
      shared.push({ key, value: e?.value, cas: e?.cas ?? 0 });
    }
    return { streamId: stream.streamId, properties, shared };
  }

  #property(stream: ComponentStream, path: readonly string[]): PropertyValue | undefined {
    const s = this.settings;
    if (path.length === 1) {
      if (path[0] === 'plugin_name') return s.name;
      if (path[0] === 'plugin_root_id') return s.rootId;
      if (path[0] === 'plugin_vm_id') return s.vmId;
    }
    const info = stream.info;
    return (
      info?.filterState?.get(path.join('\0')) ??
      httpProperty(stream, path) ??
      (info ? connectionProperty(info, path) ?? info.getProperty?.(path) : undefined) ??
      s.host.getProperty?.(path, info)
    );
  }

  /** @internal Applies a call's effects: log lines, metric updates, shared-data writes, in that order. */
  applyEffects(e: Effects): void {
    for (const line of e.logs) this.#log(LEVELS[line.level] ?? LogLevel.Info, line.message);
    for (const u of e.metrics) {
      const metric = this.#metricsByName.get(u.name);
      if (!metric) {
        if (!this.#undeclared.has(u.name) && this.#undeclared.size < 100) {
          this.#undeclared.add(u.name);
          this.#log(LogLevel.Warn, `update of metric ${JSON.stringify(u.name)}, which configure did not declare, is dropped`);
        }
        continue;
      }
      const value = Number(u.value);
      if (u.op === 'add') metric.increment(value);
      else metric.record(value);
    }
    const store = this.settings.host.sharedData;
    for (const w of e.sharedWrites) store.set(this.settings.vmId, w.key, Uint8Array.from(w.value), w.cas ?? 0);
  }

  #log(level: LogLevel, message: string): void {
    if (level < this.settings.logLevel) return;
    const log = this.settings.host.log;
    if (log) log(level, message, this.settings.name);
    else process.stderr.write(`[wasm ${this.settings.name}] ${message}\n`);
  }

  /** @internal An instance trapped during a call: count it, and start another (in the background). */
  instanceFailed(instance: ComponentInstance): void {
    const f = instance.failed!;
    this.lastFailure = f.reason;
    this.lastFailureCause = f.cause;
    this.trapCount++;
    this.trapsByCause.set(f.cause, (this.trapsByCause.get(f.cause) ?? 0) + 1);
    this.#trapCounter(f.cause).increment(1);
    if (instance !== this.#instance) return;
    this.#consecutiveFailures++;
    this.#m.failed.record(1);
    this.#m.bad.record(this.bad ? 1 : 0);
    const delay = this.#consecutiveFailures <= 1 ? 0 : Math.min(VM_RESTART_BACKOFF_INITIAL_MS * 2 ** (this.#consecutiveFailures - 2), VM_RESTART_BACKOFF_MAX_MS);
    const what = this.settings.failStrategy === 'FAIL_OPEN' ? 'streams pass through without it' : 'streams get 503';
    this.#log(LogLevel.Error, `component instance failed (${f.cause}): ${f.reason}; ${what} until a new instance is ready${delay > 0 ? ` (in ${delay} ms)` : ''}`);
    this.#scheduleReplace(delay);
  }

  #trapCounter(cause: TrapCause): Metric {
    let counter = this.#m.traps.get(cause);
    if (counter === undefined) {
      counter = this.settings.host.metrics.counter('wasmesh_wasm_vm_traps_total', 'Traps (and other failures) of plugin VMs while serving, by cause', { plugin: this.settings.name, cause });
      this.#m.traps.set(cause, counter);
    }
    return counter;
  }

  #scheduleReplace(delayMs: number): void {
    if (this.#stopped || this.#replacing || this.#restartTimer) return;
    if (delayMs <= 0) {
      this.#replacing = this.#replace();
      return;
    }
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#stopped && !this.#replacing) this.#replacing = this.#replace();
    }, delayMs);
    this.#restartTimer.unref();
  }

  async #replace(): Promise<void> {
    const started = performance.now();
    try {
      const instance = await ComponentInstance.create(this.compiled);
      instance.configure(this.settings.pluginConfiguration, this.settings.name);
      if (this.#stopped) return;
      this.#instance = instance;
      this.restarts++;
      this.lastStartMs = performance.now() - started;
      this.#m.restarts.increment(1);
      this.#m.failed.record(0);
      this.#replacing = undefined;
    } catch (err) {
      this.#m.startFailures.increment(1);
      this.#consecutiveFailures++;
      this.#m.bad.record(this.bad ? 1 : 0);
      this.lastFailure = err instanceof Error ? err.message : String(err);
      this.#log(LogLevel.Error, `a new component instance failed to start: ${this.lastFailure}`);
      this.#replacing = undefined;
      this.#scheduleReplace(Math.min(VM_RESTART_BACKOFF_INITIAL_MS * 2 ** Math.max(0, this.#consecutiveFailures - 2), VM_RESTART_BACKOFF_MAX_MS));
    }
  }
}

/** Where one direction stands. */
const enum Phase {
  /** Headers not seen yet. */
  Idle,
  /** The filter stopped on the headers: they and the body are held until the body ends. */
  HeadersHeld,
  /** Headers forwarded; body chunks go through (the body phase, if wanted, chunk by chunk). */
  Open,
  /** The filter stopped on a body chunk: the body accumulates and the next call gets all of it. */
  BodyStopped,
  /** End of stream forwarded (or answered locally, or reset). */
  Done,
}

class Direction {
  readonly isRequest: boolean;
  phase = Phase.Idle;
  headers: HeaderList | undefined = undefined;
  trailers: HeaderList | undefined = undefined;
  body: Buffer = EMPTY;
  ended = false;
  headersEndStream = false;
  totalBytes = 0;

  constructor(isRequest: boolean) {
    this.isRequest = isRequest;
  }
}

type OutputKind = 'request_headers' | 'request_trailers' | 'request_body' | 'response_headers' | 'response_trailers' | 'response_body' | 'local_reply';

/** One HTTP stream through a component filter. Same contract as wasm's HttpStream towards the chain. */
export class ComponentStream {
  readonly plugin: ComponentPlugin;
  readonly sink: HttpStreamSink;
  readonly info: StreamInfo | undefined;
  readonly streamId: bigint;
  readonly request = new Direction(true);
  readonly response = new Direction(false);
  readonly startMs = Date.now();
  /** The instance this stream runs on; undefined when none was live at its start. */
  readonly #instance: ComponentInstance | undefined;
  answered = false;
  closed = false;
  /** The instance failed and the plugin fails open: everything passes through untouched. */
  bypass = false;
  finished = false;
  #responseReplaced = false;
  /** The filter was called for this stream (it gets on-stream-done). */
  #called = false;
  /** Tests (the harness): told what each phase call answered (calls that trapped are left out). */
  observer: ((phase: `on_${'request' | 'response'}_${'headers' | 'body' | 'trailers'}`, action: 'Continue' | 'Pause') => void) | undefined = undefined;

  constructor(plugin: ComponentPlugin, instance: ComponentInstance | undefined, sink: HttpStreamSink, info: StreamInfo | undefined, streamId: bigint) {
    this.plugin = plugin;
    this.#instance = instance;
    this.sink = sink;
    this.info = info;
    this.streamId = streamId;
  }

  /** The instance failed (or there was none) and the stream does not pass through: the chain skips it for a local reply. */
  get vmFailed(): boolean {
    return !this.bypass && (this.#instance === undefined || this.#instance.failed !== undefined);
  }

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.#headers(this.request, headers, endOfStream);
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.#data(this.request, data, endOfStream);
  }

  requestTrailers(trailers: HeaderList): void {
    this.#trailers(this.request, trailers);
  }

  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.#headers(this.response, headers, endOfStream);
  }

  responseData(data: Uint8Array, endOfStream: boolean): void {
    this.#data(this.response, data, endOfStream);
  }

  responseTrailers(trailers: HeaderList): void {
    this.#trailers(this.response, trailers);
  }

  /** The stream is over: on-stream-done (if the filter was called for it), once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const instance = this.#instance;
    const live = instance !== undefined && instance.failed === undefined && !this.bypass;
    if (live && this.#called) {
      const effects = instance.call(this.plugin.settings.cpuBudget, (h) => h.onStreamDone(this.streamId));
      if (effects === undefined) this.plugin.instanceFailed(instance);
      else this.plugin.applyEffects(effects);
    }
    this.plugin.streamFinished(live && instance !== undefined && instance.failed === undefined);
  }

  // ---- flow --------------------------------------------------------------------------------------

  #headers(dir: Direction, headers: HeaderList, endOfStream: boolean): void {
    if (this.#stopped(dir)) return;
    dir.headers = headers;
    dir.ended = endOfStream;
    dir.headersEndStream = endOfStream;
    if (this.bypass) return this.#forwardHeaders(dir);
    if (this.vmFailed) return this.#failStrategy();
    const phase: PhaseName = dir.isRequest ? 'request-headers' : 'response-headers';
    if (!this.plugin.wants(phase)) return this.#forwardHeaders(dir);
    const ctx = this.plugin.callContext(this);
    const fields = toFields(headers);
    const r = this.#call((h) => (dir.isRequest ? h.onRequestHeaders(ctx, fields, endOfStream) : h.onResponseHeaders(ctx, fields, endOfStream)));
    if (r === undefined) return;
    this.observer?.(dir.isRequest ? 'on_request_headers' : 'on_response_headers', r.action.tag === 'stop' ? 'Pause' : 'Continue');
    this.plugin.applyEffects(r.effects);
    if (!this.#change(dir, 'headers', r.headers)) return;
    if (this.#act(r.action)) return;
    // Stop on headers that end the stream would wait for nothing: it goes on.
    if (r.action.tag === 'stop' && !endOfStream) dir.phase = Phase.HeadersHeld;
    else this.#forwardHeaders(dir);
  }

  #data(dir: Direction, data: Uint8Array, endOfStream: boolean): void {
    if (this.#stopped(dir)) return;
    dir.totalBytes += data.length;
    if (endOfStream) dir.ended = true;
    if (this.bypass) return this.#emitData(dir, data, endOfStream);
    if (this.vmFailed) {
      // Held with what came before it: FAIL_OPEN passes it all on.
      dir.body = dir.body.length === 0 ? toBuffer(data) : Buffer.concat([dir.body, data]);
      return this.#failStrategy();
    }
    const wantsBody = this.plugin.wants(dir.isRequest ? 'request-body' : 'response-body');
    if (dir.phase === Phase.Open && !wantsBody) return this.#emitData(dir, data, endOfStream);
    dir.body = dir.body.length === 0 ? toBuffer(data) : Buffer.concat([dir.body, data]);
    // Only bytes held for the filter count against the bound: a chunk on its way through (Open) does not.
    if (dir.phase !== Phase.Open && dir.body.length > this.plugin.settings.maxBufferedBodyBytes) return this.#overflow(dir);
    if (wantsBody) {
      if (dir.phase === Phase.Open || dir.phase === Phase.BodyStopped || endOfStream) this.#runBody(dir);
      return;
    }
    // Held headers, no body phase: release everything once the body is complete.
    if (endOfStream) this.#release(dir);
  }

  #trailers(dir: Direction, trailers: HeaderList): void {
    if (this.#stopped(dir)) return;
    dir.trailers = trailers;
    dir.ended = true;
    if (this.bypass) {
      this.#flushBody(dir, false);
      return this.#emitTrailers(dir);
    }
    if (this.vmFailed) return this.#failStrategy();
    // The body is complete: what the filter held goes through its last body call first.
    if (dir.phase === Phase.HeadersHeld || dir.phase === Phase.BodyStopped) {
      if (this.plugin.wants(dir.isRequest ? 'request-body' : 'response-body')) this.#runBody(dir);
      else this.#release(dir);
      if (this.#stopped(dir) || (dir.phase as Phase) !== Phase.Open) return;
    }
    this.#runTrailers(dir);
  }

  /** One body call with everything held; `end-of-stream` when no more body follows (trailers may). */
  #runBody(dir: Direction): void {
    const last = dir.ended;
    const ctx = this.plugin.callContext(this);
    const body = dir.body;
    const r = this.#call((h) => (dir.isRequest ? h.onRequestBody(ctx, body, last) : h.onResponseBody(ctx, body, last)));
    if (r === undefined) return;
    this.observer?.(dir.isRequest ? 'on_request_body' : 'on_response_body', r.action.tag === 'stop' ? 'Pause' : 'Continue');
    this.plugin.applyEffects(r.effects);
    const held = dir.phase === Phase.HeadersHeld;
    // Header changes count only while the headers are held (they went on otherwise).
    if (held && !this.#change(dir, 'headers', r.headers)) return;
    if (r.body !== undefined) {
      if (r.body.length > this.plugin.settings.maxBufferedBodyBytes) return this.#failOutput(dir.isRequest ? 'request_body' : 'response_body');
      dir.body = toBuffer(r.body);
    }
    if (this.#act(r.action)) return;
    // Stop at the end of the body would wait for nothing: it goes on.
    if (r.action.tag === 'stop' && !last) {
      if (!held) dir.phase = Phase.BodyStopped;
      return;
    }
    this.#release(dir);
  }

  /** Forwards held headers (if held), then the held body; the trailers are the caller's. */
  #release(dir: Direction): void {
    if (dir.phase === Phase.HeadersHeld) {
      dir.headersEndStream = false;
      this.#forwardHeaders(dir);
      if (this.#stopped(dir)) return;
      dir.phase = Phase.Open;
    }
    dir.phase = Phase.Open;
    this.#flushBody(dir, dir.ended && dir.trailers === undefined);
  }

  #runTrailers(dir: Direction): void {
    if (!this.plugin.wants(dir.isRequest ? 'request-trailers' : 'response-trailers')) return this.#emitTrailers(dir);
    const ctx = this.plugin.callContext(this);
    const fields = toFields(dir.trailers!);
    const r = this.#call((h) => (dir.isRequest ? h.onRequestTrailers(ctx, fields) : h.onResponseTrailers(ctx, fields)));
    if (r === undefined) return;
    this.observer?.(dir.isRequest ? 'on_request_trailers' : 'on_response_trailers', r.action.tag === 'stop' ? 'Pause' : 'Continue');
    this.plugin.applyEffects(r.effects);
    if (!this.#change(dir, 'trailers', r.trailers)) return;
    if (this.#act(r.action)) return;
    // Nothing follows trailers: stop means continue.
    this.#emitTrailers(dir);
  }

  /** One call into the instance; undefined when it trapped (the failStrategy has been applied). */
  #call<T>(fn: (h: Handler) => T): T | undefined {
    const instance = this.#instance!;
    this.#called = true;
    const r = instance.call(this.plugin.settings.cpuBudget, fn);
    if (r === undefined) {
      this.plugin.instanceFailed(instance);
      this.#failStrategy();
    }
    return r;
  }

  /** Applies header or trailer changes to `dir`; false when they were refused (the stream failed). */
  #change(dir: Direction, what: 'headers' | 'trailers', changes: FieldChanges): boolean {
    if (changes.remove.length === 0 && changes.set.length === 0 && changes.add.length === 0) return true;
    const kind: OutputKind = `${dir.isRequest ? 'request' : 'response'}_${what}`;
    const current = what === 'headers' ? dir.headers! : (dir.trailers ?? []);
    const next = applyChanges(current, changes);
    if (typeof next === 'string') {
      this.#invalidOutput(kind, next);
      return false;
    }
    if (!this.#fits(next, dir.isRequest)) {
      this.#failOutput(kind);
      return false;
    }
    if (what === 'headers') dir.headers = next;
    else dir.trailers = next;
    return true;
  }

  /** Acts on a reply; true when the stream does not go on here. */
  #act(action: Action): boolean {
    if (action.tag !== 'reply') return false;
    const reply = action.val;
    if (this.response.phase > Phase.HeadersHeld) {
      // The response already went on towards the client: too late to replace it.
      this.closed = true;
      this.request.phase = Phase.Done;
      this.response.phase = Phase.Done;
      this.sink.reset('wasm_local_reply_after_response_started');
      return true;
    }
    const headers: HeaderList = [];
    for (const [n, v] of reply.headers) {
      if (!HEADER_NAME.test(n) || !validValue(v)) {
        this.#invalidOutput('local_reply', `reply header ${JSON.stringify(n)} is not a valid header`);
        return true;
      }
      headers.push(n, Buffer.from(v).toString('latin1'));
    }
    if (!this.#fits(headers, false)) {
      this.#failOutput('local_reply');
      return true;
    }
    const status = reply.status >= 200 && reply.status <= 599 ? reply.status : 500;
    this.answered = true;
    this.#answer({ status, details: (reply.details || 'component_local_reply').replace(/\s/g, '_'), body: Buffer.from(reply.body), headers, grpcStatus: reply.grpcStatus ?? -1 });
    return true;
  }

  #forwardHeaders(dir: Direction): void {
    const endOfStream = dir.headersEndStream;
    dir.phase = endOfStream ? Phase.Done : Phase.Open;
    if (dir.isRequest) this.sink.requestHeaders(dir.headers!, endOfStream);
    else this.sink.responseHeaders(dir.headers!, endOfStream);
  }

  #flushBody(dir: Direction, endOfStream: boolean): void {
    const body = dir.body;
    dir.body = EMPTY;
    if (body.length > 0 || endOfStream) this.#emitData(dir, body, endOfStream);
  }

  #emitData(dir: Direction, data: Uint8Array, endOfStream: boolean): void {
    if (endOfStream) dir.phase = Phase.Done;
    if (dir.isRequest) this.sink.requestData(data, endOfStream);
    else this.sink.responseData(data, endOfStream);
  }

  #emitTrailers(dir: Direction): void {
    dir.phase = Phase.Done;
    if (dir.isRequest) this.sink.requestTrailers(dir.trailers!);
    else this.sink.responseTrailers(dir.trailers!);
  }

  #stopped(dir: Direction): boolean {
    return this.closed || this.finished || (this.answered && (dir.isRequest || this.#responseReplaced)) || (dir.phase === Phase.Done && dir.headers !== undefined && dir.ended);
  }

  #answer(response: LocalResponse): void {
    this.request.phase = Phase.Done;
    this.request.body = EMPTY;
    if (this.response.headers !== undefined) {
      this.#responseReplaced = true;
      this.response.phase = Phase.Done;
      this.response.body = EMPTY;
    }
    this.sink.localResponse(response);
  }

  /** The instance failed (now, or before this stream): FAIL_OPEN passes the stream through, the others answer 503. */
  #failStrategy(): void {
    if (this.answered || this.closed) return;
    if (this.plugin.settings.failStrategy === 'FAIL_OPEN') {
      this.bypass = true;
      this.#passThroughHeld(this.request);
      this.#passThroughHeld(this.response);
      return;
    }
    this.#fail(503, 'wasm_fail_stream', '', GrpcStatus.Unavailable);
  }

  #passThroughHeld(dir: Direction): void {
    if (dir.headers === undefined || this.#stopped(dir)) return;
    if (dir.phase === Phase.Idle || dir.phase === Phase.HeadersHeld) this.#forwardHeaders(dir);
    if (dir.phase === Phase.Done) return;
    const hasTrailers = dir.trailers !== undefined;
    if (dir.body.length > 0 || (dir.ended && !hasTrailers)) this.#flushBody(dir, dir.ended && !hasTrailers);
    if (hasTrailers) this.#emitTrailers(dir);
  }

  /** A local reply of the host's (before the response started), or a reset (after). */
  #fail(status: number, details: string, body: string, grpcStatus: number): void {
    if (this.answered || this.closed) return;
    if (this.response.phase <= Phase.HeadersHeld) {
      this.answered = true;
      this.response.phase = Phase.Done;
      const grpc = isGrpcRequest(this.request.headers);
      this.#answer(localReply(status, details, grpc ? body.trim() : body, grpc ? grpcStatus : -1));
    } else {
      this.closed = true;
      this.request.phase = Phase.Done;
      this.response.phase = Phase.Done;
      this.sink.reset(details);
    }
  }

  /** Body over the buffer bound: 413 for a request, 500 for a response (as Envoy's buffer filter and HttpStream). */
  #overflow(dir: Direction): void {
    dir.body = EMPTY;
    if (dir.isRequest) this.#fail(413, 'request_payload_too_large', 'Payload Too Large', GrpcStatus.Internal);
    else this.#fail(500, 'response_payload_too_large', 'Internal Server Error', GrpcStatus.Internal);
  }

  #failOutput(what: OutputKind): void {
    const plugin = this.plugin.settings.name;
    this.plugin.settings.host.metrics
      .counter('wasmesh_wasm_output_limit_total', 'Streams failed because a filter wrote headers, trailers, a body or a local reply past the limits', { plugin, what })
      .increment(1);
    this.#fail(500, `wasm_output_too_large[${plugin}][${what}]`, 'filter output too large\n', GrpcStatus.Internal);
  }

  /** The filter returned a header name or value HTTP does not allow (CR, LF or NUL in a value, a bad name). */
  #invalidOutput(what: OutputKind, why: string): void {
    const plugin = this.plugin.settings.name;
    this.plugin.settings.host.metrics
      .counter('wasmesh_wasm_invalid_output_total', 'Streams failed because a component filter returned a header or trailer HTTP does not allow', { plugin, what })
      .increment(1);
    this.plugin.settings.host.log?.(LogLevel.Error, `${what}: ${why}`, plugin);
    this.#fail(500, `wasm_invalid_output[${plugin}][${what}]`, 'filter output invalid\n', GrpcStatus.Internal);
  }

  #fits(list: HeaderList, request: boolean): boolean {
    const limits = this.plugin.settings.outputLimits;
    if (list.length >>> 1 > limits.headerCount) return false;
    let bytes = 2 * list.length;
    for (let i = 0; i < list.length; i++) bytes += list[i].length;
    return bytes <= (request ? limits.requestHeaderBytes : limits.responseHeaderBytes);
  }
}

/** Header values hold one byte per char (latin1): hand those bytes to the filter. */
function toFields(list: HeaderList): Fields {
  const out: Fields = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i], Buffer.from(list[i + 1], 'latin1')]);
  return out;
}

function validValue(v: Uint8Array): boolean {
  for (let i = 0; i < v.length; i++) if (v[i] === 0 || v[i] === 10 || v[i] === 13) return false;
  return true;
}

/** remove, then set, then add (names lowercased); a string says what was invalid. */
function applyChanges(list: HeaderList, changes: FieldChanges): HeaderList | string {
  const removed = new Set<string>();
  for (const n of changes.remove) removed.add(n.toLowerCase());
  for (const [n] of changes.set) removed.add(n.toLowerCase());
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) if (!removed.has(list[i])) out.push(list[i], list[i + 1]);
  for (const [n, v] of [...changes.set, ...changes.add]) {
    const name = n.toLowerCase();
    if (!HEADER_NAME.test(name)) return `header name ${JSON.stringify(n)} is not a valid header name`;
    if (!validValue(v)) return `the value of header ${JSON.stringify(n)} holds CR, LF or NUL`;
    out.push(name, Buffer.from(v).toString('latin1'));
  }
  return out;
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}

export { ComponentFilterError };
