// A plugin: one configuration of one module, served by one live VM at a time. A VM that fails is
// replaced for new streams at once, so one bad request costs only the streams on that VM; backoff
// applies only when replacing does not help (a fresh VM fails before serving a single stream, a VM
// cannot start) or failures come faster than VMs should be replaced. Streams already on the failed VM
// follow the failStrategy.
import { LogLevel } from './abi/constants.ts';
import { ErrorCode, WasmeshWasmError, type TrapCause } from './errors.ts';
import type { HttpStreamSink, NetworkStreamSink, PluginHost, StreamInfo } from './host.ts';
import { HttpStream } from './http-stream.ts';
import { NetworkStream } from './network-stream.ts';
import { VM_RESTART_BACKOFF_INITIAL_MS, VM_RESTART_BACKOFF_MAX_MS, VM_RESTARTS_PER_SECOND } from './limits.ts';
import type { Metric } from './metrics/registry.ts';
import { compileModule, type CompiledModule, type CompileOptions } from './module.ts';
import { buildPluginSettings, type PluginConfig, type PluginSettings } from './plugin-settings.ts';
import { Vm } from './vm.ts';

export type PluginState = 'running' | 'failed' | 'stopped';

interface PluginMetrics {
  /** Trap counters by cause, made on first use. */
  traps: Map<TrapCause, Metric>;
  restarts: Metric;
  startFailures: Metric;
  failed: Metric;
  activeStreams: Metric;
  bad: Metric;
}

/** A module version that failed this many times in a row (without a healthy VM between) is bad. */
export const BAD_AFTER_CONSECUTIVE_FAILURES = 3;

export class Plugin {
  readonly compiled: CompiledModule;
  readonly settings: PluginSettings;
  #vm: Vm;
  #metrics: PluginMetrics;
  /** Failures since a VM last finished a stream (or since the plugin started). */
  #consecutiveFailures = 0;
  #restartAt = 0;
  /** When the last VM_RESTARTS_PER_SECOND failures happened (a ring), to spot failures faster than that. */
  readonly #failureTimes: number[] = [];
  #failureIndex = 0;
  #activeStreams = 0;
  #stopped = false;
  readonly #drainWaiters: Array<() => void> = [];
  /** Why the last VM failed, for status and tests. */
  lastFailure = '';
  lastFailureCause: TrapCause | undefined;
  /** VM failures of this plugin (this module version and settings) since it was loaded. */
  trapCount = 0;
  /** The same, by cause (what a rollout's rollback message names). */
  readonly trapsByCause = new Map<TrapCause, number>();
  /** Streams that finished through this plugin, and how many of them failed (5xx, reset). Fed by the host's filter chain. */
  streamsFinished = 0;
  streamsFailed = 0;
  readonly #onStreamFinish = (stream: { readonly vm: Vm }): void => {
    // A stream served to the end by a live VM: the module works, replacing it after a failure helps.
    if (!stream.vm.failed) this.#consecutiveFailures = 0;
    this.#activeStreams--;
    this.#metrics.activeStreams.increment(-1);
    if (this.#activeStreams === 0) for (const resolve of this.#drainWaiters.splice(0)) resolve();
  };

  /** Compiles (unless given a compiled module) and starts the plugin. Throws WasmeshWasmError. */
  static async load(source: Uint8Array | CompiledModule, config: PluginConfig, host?: PluginHost, compileOptions?: CompileOptions): Promise<Plugin> {
    const compiled = source instanceof Uint8Array ? await compileModule(source, { name: config.name, ...compileOptions }) : source;
    return new Plugin(compiled, buildPluginSettings(config, host));
  }

  /** Starts the first VM synchronously: instantiate, startup, on_vm_start, on_configure. */
  constructor(compiled: CompiledModule, settings: PluginSettings) {
    this.compiled = compiled;
    this.settings = settings;
    const labels = { plugin: settings.name };
    const m = settings.host.metrics;
    const versionLabels = { plugin: settings.name, module: compiled.sha256.slice(0, 12) };
    this.#metrics = {
      traps: new Map(),
      restarts: m.counter('wasmesh_wasm_vm_restarts_total', 'Plugin VMs replaced after a failure', labels),
      startFailures: m.counter('wasmesh_wasm_vm_start_failures_total', 'Plugin VMs that failed to start when replacing a failed one', labels),
      failed: m.gauge('wasmesh_wasm_plugin_failed', '1 while the plugin has no healthy VM', labels),
      activeStreams: m.gauge('wasmesh_wasm_active_streams', 'Streams in flight through the plugin', labels),
      bad: m.gauge('wasmesh_wasm_module_bad', `1 while a module version has failed ${BAD_AFTER_CONSECUTIVE_FAILURES} or more times in a row`, versionLabels),
    };
    this.#vm = this.#newVm();
  }

  get state(): PluginState {
    if (this.#stopped) return 'stopped';
    return this.#vm.failed ? 'failed' : 'running';
  }

  /** This module version keeps failing: it failed BAD_AFTER_CONSECUTIVE_FAILURES times in a row. */
  get bad(): boolean {
    return this.#consecutiveFailures >= BAD_AFTER_CONSECUTIVE_FAILURES;
  }

  /** Counts a finished stream; `failed`: it ended in a 5xx or a reset. */
  recordOutcome(failed: boolean): void {
    this.streamsFinished++;
    if (failed) this.streamsFailed++;
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /** The VM new streams go to (replaced after failures). */
  get vm(): Vm {
    return this.#vm;
  }

  #newVm(): Vm {
    const vm = new Vm(this.compiled, this.settings, { failed: (failedVm, reason, cause) => this.#onVmFailed(failedVm, reason, cause) });
    vm.start();
    return vm;
  }

  /** Traps by cause: `wasmesh_wasm_vm_traps_total{plugin, cause}`. */
  trapCounter(cause: TrapCause): Metric {
    let counter = this.#metrics.traps.get(cause);
    if (counter === undefined) {
      counter = this.settings.host.metrics.counter('wasmesh_wasm_vm_traps_total', 'Traps (and other failures) of plugin VMs while serving, by cause', { plugin: this.settings.name, cause });
      this.#metrics.traps.set(cause, counter);
    }
    return counter;
  }

  #onVmFailed(vm: Vm, reason: string, cause: TrapCause): void {
    // Stream contexts on the VM, the failing one included: what the failStrategy now applies to.
    let streamsOnVm = 0;
    for (const ctx of vm.contexts.values()) if (ctx !== vm.root) streamsOnVm++;
    vm.dispose();
    this.lastFailure = reason;
    this.lastFailureCause = cause;
    this.trapCount++;
    this.trapsByCause.set(cause, (this.trapsByCause.get(cause) ?? 0) + 1);
    this.trapCounter(cause).increment(1);
    if (vm !== this.#vm) return;
    const now = Date.now();
    // A VM that got through a stream callback was serving: this failure is one request's, not a crash loop.
    if (vm.servedStream) this.#consecutiveFailures = 0;
    this.#consecutiveFailures++;
    const ring = this.#failureTimes;
    const oldest = ring.length < VM_RESTARTS_PER_SECOND ? undefined : ring[this.#failureIndex];
    ring[this.#failureIndex] = now;
    this.#failureIndex = (this.#failureIndex + 1) % VM_RESTARTS_PER_SECOND;
    // Replace at once, unless a fresh VM failed before finishing any stream or failures come too fast.
    const tooFast = oldest !== undefined && now - oldest < 1000;
    this.#restartAt = this.#consecutiveFailures <= 1 && !tooFast ? now : now + this.#backoffMs();
    this.#metrics.failed.record(1);
    this.#metrics.bad.record(this.bad ? 1 : 0);
    const what = this.settings.failStrategy === 'FAIL_OPEN' ? 'streams pass through without it' : 'streams get 503';
    const when = this.#restartAt === now ? 'new streams get a fresh VM' : `${what} until it is replaced (in ${this.#restartAt - now} ms)`;
    const onIt = streamsOnVm === 0 ? 'no stream was on it' : `${streamsOnVm} stream(s) were on it (${this.settings.failStrategy === 'FAIL_OPEN' ? 'they go on without it' : 'they fail: HTTP streams get 503, connections are closed'})`;
    vm.emitLog(LogLevel.Error, `VM failed (${cause}): ${reason}; ${onIt}; ${when}`);
  }

  /** 100 ms for the second failure in a row (or a burst), doubling with each further one, up to 30 s. */
  #backoffMs(): number {
    const n = Math.max(2, this.#consecutiveFailures);
    return Math.min(VM_RESTART_BACKOFF_INITIAL_MS * 2 ** (n - 2), VM_RESTART_BACKOFF_MAX_MS);
  }

  /** Replaces a failed VM if its backoff has passed. Returns the VM to use (possibly still failed). */
  #liveVm(): Vm {
    const vm = this.#vm;
    if (!vm.failed || this.#stopped || Date.now() < this.#restartAt) return vm;
    try {
      this.#vm = this.#newVm();
      this.#metrics.restarts.increment(1);
      this.#metrics.failed.record(0);
    } catch (err) {
      this.#metrics.startFailures.increment(1);
      this.#consecutiveFailures++;
      this.#restartAt = Date.now() + this.#backoffMs();
      this.#metrics.bad.record(this.bad ? 1 : 0);
      this.lastFailure = err instanceof Error ? err.message : String(err);
    }
    return this.#vm;
  }

  /** A new HTTP stream through this plugin; its output goes to `sink`. Call finish() when it ends. */
  createHttpStream(sink: HttpStreamSink, info?: StreamInfo): HttpStream {
    if (this.#stopped) throw new WasmeshWasmError(ErrorCode.StartFailed, `plugin ${this.settings.name} is stopped`);
    this.#activeStreams++;
    this.#metrics.activeStreams.increment(1);
    return new HttpStream(this.#liveVm(), sink, info, this.#onStreamFinish);
  }

  /**
   * A new TCP connection through this plugin as a network filter; what the filter lets through and its
   * closes go to `sink`. Call onNewConnection() first and finish() when the connection is gone.
   */
  createNetworkStream(sink: NetworkStreamSink, info?: StreamInfo): NetworkStream {
    if (this.#stopped) throw new WasmeshWasmError(ErrorCode.StartFailed, `plugin ${this.settings.name} is stopped`);
    this.#activeStreams++;
    this.#metrics.activeStreams.increment(1);
    return new NetworkStream(this.#liveVm(), sink, info, this.#onStreamFinish);
  }

  /** Tells the module a host-side foreign function event happened (proxy_on_foreign_function). */
  callForeignFunction(functionId: number, args: Uint8Array): boolean {
    const vm = this.#liveVm();
    const fn = vm.guest.onForeignFunction;
    if (!fn || vm.failed) return false;
    vm.root.setForeignArgs(args);
    try {
      vm.call(fn, vm.root, vm.root.id, functionId, args.length);
    } finally {
      vm.root.setForeignArgs(undefined);
    }
    return !vm.failed;
  }

  /** Resolves once no stream is in flight (for hot swaps: the old version drains). */
  drained(): Promise<void> {
    if (this.#activeStreams === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Stops the plugin: the root context gets on_done, then on_delete (or, if on_done returned false,
   * when the module calls proxy_done, up to `timeoutMs`). New streams are refused.
   */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const vm = this.#vm;
    if (!vm.shutdownRoot()) {
      const deadline = Date.now() + timeoutMs;
      while (!vm.root.deleted && !vm.failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      if (!vm.root.deleted) vm.deleteContext(vm.root);
    }
    vm.dispose();
  }
}
