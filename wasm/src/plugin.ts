// A plugin: one configuration of one module, served by a pool of `settings.vms` live VMs (default 1).
// New streams go to the pool's VMs in turn, each to the least loaded one; a VM that fails is replaced
// for new streams at once, so one bad request costs only the streams on that VM, and the other VMs of
// the pool go on untouched (Envoy gets the same from one VM per worker thread). Backoff applies only
// when replacing does not help (a fresh VM fails before serving a single stream, a VM cannot start) or
// failures come faster than VMs should be replaced. Streams already on the failed VM follow the
// failStrategy.
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
  /** Live VMs of the pool (kept by increments, so the versions of one plugin during a swap add up). */
  liveVms: Metric;
}

/** A module version that failed this many times in a row (without a healthy VM between) is bad. */
export const BAD_AFTER_CONSECUTIVE_FAILURES = 3;

export class Plugin {
  readonly compiled: CompiledModule;
  readonly settings: PluginSettings;
  /** The pool: settings.vms slots, each holding its live VM (or a failed one until it is replaced). */
  readonly #vms: Vm[] = [];
  /** When each slot's failed VM may be replaced (its backoff). */
  readonly #restartAt: number[] = [];
  /** Where the next stream's search for the least-loaded VM starts (round robin). */
  #next = 0;
  #metrics: PluginMetrics;
  /** Failures since a VM last finished a stream (or since the plugin started), across the pool. */
  #consecutiveFailures = 0;
  /** When the last VM_RESTARTS_PER_SECOND failures happened (a ring), to spot failures faster than that. */
  readonly #failureTimes: number[] = [];
  #failureIndex = 0;
  #activeStreams = 0;
  #stopped = false;
  /** stop() took the pool's live VMs off wasmesh_wasm_vms_live. */
  #offGauge = false;
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

  /**
   * Starts the pool's VMs synchronously, one after another: instantiate, startup, on_vm_start,
   * on_configure. If one cannot start, those already started are stopped and the error is thrown.
   */
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
      liveVms: m.gauge('wasmesh_wasm_vms_live', 'Live VMs in the plugin\'s pool (spec.vms of them when none has failed)', labels),
    };
    try {
      for (let i = 0; i < settings.vms; i++) {
        this.#vms.push(this.#newVm());
        this.#restartAt.push(0);
        this.#metrics.liveVms.increment(1);
      }
    } catch (err) {
      for (const vm of this.#vms) vm.dispose();
      this.#metrics.liveVms.increment(-this.#vms.length);
      throw err;
    }
  }

  get state(): PluginState {
    if (this.#stopped) return 'stopped';
    for (const vm of this.#vms) if (!vm.failed) return 'running';
    return 'failed';
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

  /** The first VM of the pool (the only one with the default pool of 1): tests and tools that look inside a VM. */
  get vm(): Vm {
    return this.#vms[0]!;
  }

  /** The pool's VMs, slot by slot (a failed one stays in its slot until it is replaced). */
  get vms(): readonly Vm[] {
    return this.#vms;
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
    // A VM failing while it starts is not in the pool yet: its start throws, and that is counted there.
    const slot = this.#vms.indexOf(vm);
    if (slot < 0) return;
    // Once stop() has taken the pool off the gauge, a late failure (a stream still in flight) is not.
    if (!this.#offGauge) this.#metrics.liveVms.increment(-1);
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
    const restartAt = this.#consecutiveFailures <= 1 && !tooFast ? now : now + this.#backoffMs();
    this.#restartAt[slot] = restartAt;
    const live = this.#liveCount();
    this.#metrics.failed.record(live === 0 ? 1 : 0);
    this.#metrics.bad.record(this.bad ? 1 : 0);
    const pool = this.#vms.length;
    let when: string;
    if (restartAt === now) when = pool === 1 ? 'new streams get a fresh VM' : `new streams go to the pool's other VMs and a fresh one (${live} of ${pool} live)`;
    else if (live > 0) when = `new streams go to the pool's other ${live} live VM(s) until it is replaced (in ${restartAt - now} ms)`;
    else {
      const what = this.settings.failStrategy === 'FAIL_OPEN' ? 'streams pass through without it' : 'streams get 503';
      when = `${what} until it is replaced (in ${restartAt - now} ms)`;
    }
    const onIt = streamsOnVm === 0 ? 'no stream was on it' : `${streamsOnVm} stream(s) were on it (${this.settings.failStrategy === 'FAIL_OPEN' ? 'they go on without it' : 'they fail: HTTP streams get 503, connections are closed'})`;
    const which = pool === 1 ? 'VM' : `VM ${slot + 1} of ${pool}`;
    vm.emitLog(LogLevel.Error, `${which} failed (${cause}): ${reason}; ${onIt}; ${when}`);
  }

  #liveCount(): number {
    let live = 0;
    for (const vm of this.#vms) if (!vm.failed) live++;
    return live;
  }

  /** 100 ms for the second failure in a row (or a burst), doubling with each further one, up to 30 s. */
  #backoffMs(): number {
    const n = Math.max(2, this.#consecutiveFailures);
    return Math.min(VM_RESTART_BACKOFF_INITIAL_MS * 2 ** (n - 2), VM_RESTART_BACKOFF_MAX_MS);
  }

  /** Replaces the failed VM of `slot` if its backoff has passed. Returns the slot's VM (possibly still failed). */
  #refill(slot: number): Vm {
    const vm = this.#vms[slot]!;
    if (!vm.failed || this.#stopped || Date.now() < this.#restartAt[slot]!) return vm;
    try {
      const fresh = this.#newVm();
      this.#vms[slot] = fresh;
      this.#metrics.liveVms.increment(1);
      this.#metrics.restarts.increment(1);
      this.#metrics.failed.record(0);
      return fresh;
    } catch (err) {
      this.#metrics.startFailures.increment(1);
      this.#consecutiveFailures++;
      this.#restartAt[slot] = Date.now() + this.#backoffMs();
      this.#metrics.bad.record(this.bad ? 1 : 0);
      this.lastFailure = err instanceof Error ? err.message : String(err);
      return vm;
    }
  }

  /**
   * The VM a new stream goes to: from the round-robin position on, the live VM with the fewest contexts
   * (streams in flight plus its root), replacing failed VMs whose backoff has passed on the way. With
   * no live VM at all, the round-robin slot's failed VM (the stream gets the failStrategy).
   */
  #pick(): Vm {
    const vms = this.#vms;
    const n = vms.length;
    const start = this.#next;
    this.#next = start + 1 === n ? 0 : start + 1;
    if (n === 1) return this.#refill(0);
    let best: Vm | undefined;
    for (let k = 0; k < n; k++) {
      let slot = start + k;
      if (slot >= n) slot -= n;
      const vm = this.#refill(slot);
      if (vm.failed) continue;
      if (best === undefined || vm.contexts.size < best.contexts.size) best = vm;
    }
    return best ?? vms[start]!;
  }

  /** A new HTTP stream through this plugin; its output goes to `sink`. Call finish() when it ends. */
  createHttpStream(sink: HttpStreamSink, info?: StreamInfo): HttpStream {
    if (this.#stopped) throw new WasmeshWasmError(ErrorCode.StartFailed, `plugin ${this.settings.name} is stopped`);
    this.#activeStreams++;
    this.#metrics.activeStreams.increment(1);
    return new HttpStream(this.#pick(), sink, info, this.#onStreamFinish);
  }

  /**
   * A new TCP connection through this plugin as a network filter; what the filter lets through and its
   * closes go to `sink`. Call onNewConnection() first and finish() when the connection is gone.
   */
  createNetworkStream(sink: NetworkStreamSink, info?: StreamInfo): NetworkStream {
    if (this.#stopped) throw new WasmeshWasmError(ErrorCode.StartFailed, `plugin ${this.settings.name} is stopped`);
    this.#activeStreams++;
    this.#metrics.activeStreams.increment(1);
    return new NetworkStream(this.#pick(), sink, info, this.#onStreamFinish);
  }

  /**
   * Tells the module a host-side foreign function event happened (proxy_on_foreign_function on the root
   * context). Each VM of the pool is its own instance of the module with its own state, so every live
   * VM is told, in pool order (a failed VM whose backoff passed is replaced first; its fresh root gets
   * the event too). True when the module has the callback, at least one VM was told, and none failed.
   */
  callForeignFunction(functionId: number, args: Uint8Array): boolean {
    let told = 0;
    let ok = true;
    for (let slot = 0; slot < this.#vms.length; slot++) {
      const vm = this.#refill(slot);
      const fn = vm.guest.onForeignFunction;
      if (!fn) return false;
      if (vm.failed) continue;
      vm.root.setForeignArgs(args);
      try {
        vm.call(fn, vm.root, vm.root.id, functionId, args.length);
      } finally {
        vm.root.setForeignArgs(undefined);
      }
      told++;
      if (vm.failed) ok = false;
    }
    return ok && told > 0;
  }

  /** Resolves once no stream is in flight (for hot swaps: the old version drains). */
  drained(): Promise<void> {
    if (this.#activeStreams === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Stops the plugin: each VM's root context gets on_done, then on_delete (or, if on_done returned
   * false, when the module calls proxy_done, up to `timeoutMs` shared by the pool). New streams are
   * refused.
   */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const deadline = Date.now() + timeoutMs;
    const waiting: Vm[] = [];
    for (const vm of this.#vms) if (!vm.shutdownRoot()) waiting.push(vm);
    while (Date.now() < deadline && waiting.some((vm) => !vm.root.deleted && !vm.failed)) await new Promise((r) => setTimeout(r, 10));
    for (const vm of waiting) if (!vm.root.deleted) vm.deleteContext(vm.root);
    this.#metrics.liveVms.increment(-this.#liveCount());
    this.#offGauge = true;
    for (const vm of this.#vms) vm.dispose();
  }
}
