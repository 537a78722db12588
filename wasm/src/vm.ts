// One instance of a compiled module: linking, startup, the allocator, and every call into the guest.
// A call that traps marks the VM failed for good; the plugin decides what replaces it.
import { LogLevel, WasmResult } from './abi/constants.ts';
import { Context, RootContext } from './context.ts';
import { CpuBudgetExceeded, ErrorCode, ProcExit, WasmeshWasmError, describeTrap, trapCause, type TrapCause } from './errors.ts';
import { HOST_TIME_NS_PER_FUEL, WASM_PAGE_BYTES } from './limits.ts';
import { FUEL_GET_EXPORT, FUEL_SET_EXPORT } from './metering/metering.ts';
import type { HeaderList } from './host.ts';
import { buildImports } from './imports/index.ts';
import { GuestMemory } from './memory.ts';
import { writeLatin1 } from './latin1.ts';
import type { Metric } from './metrics/registry.ts';
import type { CompiledModule } from './module.ts';
import { pairsByteLength, writePairs } from './pairs.ts';
import { GuestPropertyPaths } from './properties.ts';
import type { PluginSettings } from './plugin-settings.ts';
import { Callouts, OK_STATUS, type CallStatus } from './callouts.ts';
import type { QueueOwner } from './shared-queue.ts';
import { LOG_LEVEL_NAMES } from './abi/constants.ts';

type GuestFn = (...args: number[]) => number | undefined;

/** The guest's exports the host calls, looked up once at instantiation. */
export interface GuestExports {
  memory: WebAssembly.Memory;
  alloc: (size: number) => number;
  onContextCreate?: GuestFn;
  onVmStart?: GuestFn;
  onValidateConfiguration?: GuestFn;
  onConfigure?: GuestFn;
  onTick?: GuestFn;
  onQueueReady?: GuestFn;
  onForeignFunction?: GuestFn;
  onDone?: GuestFn;
  onLog?: GuestFn;
  onDelete?: GuestFn;
  onRequestHeaders?: GuestFn;
  onRequestBody?: GuestFn;
  onRequestTrailers?: GuestFn;
  onResponseHeaders?: GuestFn;
  onResponseBody?: GuestFn;
  onResponseTrailers?: GuestFn;
  onNewConnection?: GuestFn;
  onDownstreamData?: GuestFn;
  onUpstreamData?: GuestFn;
  onDownstreamConnectionClose?: GuestFn;
  onUpstreamConnectionClose?: GuestFn;
  onHttpCallResponse?: GuestFn;
  onGrpcReceiveInitialMetadata?: GuestFn;
  onGrpcReceive?: GuestFn;
  onGrpcReceiveTrailingMetadata?: GuestFn;
  onGrpcClose?: GuestFn;
}

/** Returned by call* when the guest trapped; callers check vm.failed. */
export const CALL_FAILED = -1;

export interface VmEvents {
  /** The VM trapped (or exited); it will never be called again. */
  failed(vm: Vm, reason: string, cause: TrapCause): void;
}

/**
 * Benchmarks and tests only: told the fuel each outermost callback used (budget minus what was left).
 * Undefined in production; the hot path pays one comparison for it.
 */
let fuelProbe: ((vm: Vm, used: number) => void) | undefined;
export function setFuelProbe(probe: ((vm: Vm, used: number) => void) | undefined): void {
  fuelProbe = probe;
}

const noFuel = (_fuel: number): void => {};

export class Vm {
  readonly compiled: CompiledModule;
  readonly settings: PluginSettings;
  readonly events: VmEvents;
  guest!: GuestExports;
  mem!: GuestMemory;
  root!: RootContext;
  /** The context host calls act on: set at each call into the guest, changed by proxy_set_effective_context. */
  ctx: Context | undefined;
  readonly contexts = new Map<number, Context>();
  failed = false;
  failReason = '';
  /**
   * A stream callback of this VM returned (not only context creation): the module serves streams, so a
   * failure after it is a bad request, not a module that fails on everything.
   */
  servedStream = false;
  /** Why the VM failed (the trap counter's cause label). */
  failCause: TrapCause | undefined;
  /** Sets the fuel counter (a no-op for an unmetered module). */
  #setFuel: (fuel: number) => void = noFuel;
  #getFuel: (() => number) | undefined;
  /** The budget the next outermost call gets: the startup budget until the root context has started. */
  #callBudget: number;
  /** Host functions with variable cost called in this callback, and when the 16th of them came (0: not yet). */
  #hostWork = 0;
  #hostWorkStart = 0;
  /** Work that must wait until the guest call returns (continue/close stream, local replies, on_delete). */
  readonly deferred: Array<() => void> = [];
  #depth = 0;
  #nextContextId = 1;
  /** Metric handles by the id the module was given: ((index + 1) << 2) | type, as cpp-host numbers them. */
  readonly metrics: Metric[] = [];
  /** Latest error-level log lines, attached to start/configure failures so the user sees why. */
  readonly recentErrors: string[] = [];
  #startup = true;
  /** True during proxy_on_vm_start: ABI 0.1.0's get_configuration answers with the VM configuration. */
  inVmStart = false;
  /** What proxy_get_status reports: set around callout callbacks. */
  status: CallStatus = OK_STATUS;
  readonly callouts = new Callouts(this);
  /** proxy_get_property's paths by guest address (properties.ts). */
  readonly propertyPaths = new GuestPropertyPaths();
  #queueOwner: QueueOwner | undefined;

  constructor(compiled: CompiledModule, settings: PluginSettings, events: VmEvents) {
    this.compiled = compiled;
    this.settings = settings;
    this.events = events;
    this.#callBudget = settings.startupCpuBudget;
  }

  get inStartup(): boolean {
    return this.#startup;
  }

  /** Instantiates, runs the module's startup, and starts the plugin's root context. Throws WasmeshWasmError. */
  start(): void {
    const imports = buildImports(this);
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(this.compiled.module, imports);
    } catch (err) {
      if (err instanceof WebAssembly.LinkError) {
        throw new WasmeshWasmError(ErrorCode.LinkFailed, `module ${this.compiled.name}: ${err.message}`, { cause: err });
      }
      throw new WasmeshWasmError(ErrorCode.InitFailed, `module ${this.compiled.name} failed while instantiating: ${describeTrap(err)}`, { cause: err });
    }
    this.#bindExports(instance);
    this.#runStartup(instance);
    this.#startup = false;
    try {
      this.#startRoot();
    } catch (err) {
      // The plugin never starts: timers or queues its root set up before failing must not outlive it.
      this.dispose();
      throw err;
    }
    this.#callBudget = this.settings.cpuBudget;
  }

  #bindExports(instance: WebAssembly.Instance): void {
    const e = instance.exports as Record<string, unknown>;
    const memory = e.memory;
    if (!(memory instanceof WebAssembly.Memory)) {
      throw new WasmeshWasmError(ErrorCode.NoMemory, `module ${this.compiled.name} does not export its memory as "memory"`);
    }
    const alloc = (e.proxy_on_memory_allocate ?? e.malloc) as ((size: number) => number) | undefined;
    if (typeof alloc !== 'function') {
      throw new WasmeshWasmError(ErrorCode.NoAllocator, `module ${this.compiled.name} exports neither proxy_on_memory_allocate nor malloc`);
    }
    const fn = (name: string) => (typeof e[name] === 'function' ? (e[name] as GuestFn) : undefined);
    if (this.compiled.metered) {
      this.#setFuel = e[FUEL_SET_EXPORT] as (fuel: number) => void;
      this.#getFuel = e[FUEL_GET_EXPORT] as () => number;
    }
    this.mem = new GuestMemory(memory);
    this.guest = {
      memory,
      alloc,
      onContextCreate: fn('proxy_on_context_create'),
      onVmStart: fn('proxy_on_vm_start'),
      onValidateConfiguration: fn('proxy_validate_configuration'),
      onConfigure: fn('proxy_on_configure'),
      onTick: fn('proxy_on_tick'),
      onQueueReady: fn('proxy_on_queue_ready'),
      onForeignFunction: fn('proxy_on_foreign_function'),
      onDone: fn('proxy_on_done'),
      onLog: fn('proxy_on_log'),
      onDelete: fn('proxy_on_delete'),
      onRequestHeaders: fn('proxy_on_request_headers'),
      onRequestBody: fn('proxy_on_request_body'),
      onRequestTrailers: fn('proxy_on_request_trailers'),
      onResponseHeaders: fn('proxy_on_response_headers'),
      onResponseBody: fn('proxy_on_response_body'),
      onResponseTrailers: fn('proxy_on_response_trailers'),
      onNewConnection: fn('proxy_on_new_connection'),
      onDownstreamData: fn('proxy_on_downstream_data'),
      onUpstreamData: fn('proxy_on_upstream_data'),
      onDownstreamConnectionClose: fn('proxy_on_downstream_connection_close'),
      onUpstreamConnectionClose: fn('proxy_on_upstream_connection_close'),
      onHttpCallResponse: fn('proxy_on_http_call_response'),
      onGrpcReceiveInitialMetadata: fn('proxy_on_grpc_receive_initial_metadata'),
      onGrpcReceive: fn('proxy_on_grpc_receive'),
      // The AssemblyScript runtime exports this one under a misspelt name.
      onGrpcReceiveTrailingMetadata: fn('proxy_on_grpc_receive_trailing_metadata') ?? fn('proxy_on_grpc_trailing_metadata'),
      onGrpcClose: fn('proxy_on_grpc_close'),
    };
  }

  #runStartup(instance: WebAssembly.Instance): void {
    const e = instance.exports as Record<string, unknown>;
    const run = (name: string, ...args: number[]) => {
      const f = e[name];
      if (typeof f !== 'function') return false;
      this.#setFuel(this.#callBudget);
      this.#hostWork = 0;
      this.#hostWorkStart = 0;
      try {
        (f as GuestFn)(...args);
      } catch (err) {
        if (err instanceof ProcExit && err.exitCode === 0) return true;
        throw new WasmeshWasmError(ErrorCode.InitFailed, `module ${this.compiled.name} failed in ${name}: ${this.#describe(err)}${this.#recentErrorText()}`, { cause: err });
      }
      return true;
    };
    if (run('_initialize')) {
      if (!run('main', 0, 0)) run('__main_void');
    } else {
      run('_start');
    }
  }

  #startRoot(): void {
    const s = this.settings;
    const root = new RootContext(this.#nextContextId++, s.vmConfiguration, s.pluginConfiguration);
    this.root = root;
    this.contexts.set(root.id, root);
    const fail = (code: ErrorCode, what: string) => {
      const why = this.failed ? `trapped: ${this.failReason}` : 'returned false';
      return new WasmeshWasmError(code, `plugin ${s.name}: ${what} ${why}${this.#recentErrorText()}`);
    };
    if (this.guest.onContextCreate) {
      this.call(this.guest.onContextCreate, root, root.id, 0);
      if (this.failed) throw fail(ErrorCode.StartFailed, 'proxy_on_context_create');
    }
    if (this.guest.onVmStart) {
      this.inVmStart = true;
      const ok = this.call(this.guest.onVmStart, root, root.id, s.vmConfiguration.length);
      this.inVmStart = false;
      if (this.failed || ok === 0) throw fail(ErrorCode.StartFailed, 'proxy_on_vm_start');
    }
    if (this.guest.onConfigure) {
      const ok = this.call(this.guest.onConfigure, root, root.id, s.pluginConfiguration.length);
      if (this.failed || ok === 0) throw fail(ErrorCode.ConfigureFailed, 'proxy_on_configure');
    }
  }

  #recentErrorText(): string {
    return this.recentErrors.length ? ` (module logged: ${this.recentErrors.join(' | ')})` : '';
  }

  noteErrorLog(message: string): void {
    if (this.recentErrors.length >= 4) this.recentErrors.shift();
    this.recentErrors.push(message.length > 300 ? message.slice(0, 300) + '…' : message);
  }

  newContextId(): number {
    return this.#nextContextId++;
  }

  /**
   * Calls into the guest with `ctx` as the effective context. Returns the guest's i32 result (0 for
   * void callbacks) or CALL_FAILED after a trap. Deferred work runs once the outermost call returns.
   */
  call(fn: GuestFn, ctx: Context, a: number, b?: number, c?: number, d?: number, e?: number): number {
    if (this.failed) return CALL_FAILED;
    const outer = this.ctx;
    this.ctx = ctx;
    // Each outermost callback gets the whole budget; calls the guest makes back into itself (through
    // host functions) share it.
    if (this.#depth === 0) {
      this.#setFuel(this.#callBudget);
      this.#hostWork = 0;
      this.#hostWorkStart = 0;
    }
    this.#depth++;
    let result: number;
    try {
      result = (fn(a, b as number, c as number, d as number, e as number) as number) | 0;
    } catch (err) {
      this.fail(this.#describe(err), this.#causeOf(err));
      result = CALL_FAILED;
    } finally {
      this.#depth--;
      this.ctx = outer;
    }
    if (this.#depth === 0) {
      if (fuelProbe !== undefined && this.#getFuel !== undefined) fuelProbe(this, this.#callBudget - this.#getFuel());
      if (this.deferred.length > 0) this.#runDeferred();
    }
    return result;
  }

  /**
   * Called first by every host function whose cost grows with its input (copies, I/O, callouts): fuel
   * prices each host call at a constant, so a loop of them is bounded by time instead. From the 16th
   * such call in one callback on, every 16th looks at the clock; past the callback's share of time the
   * call throws, and the fuel is set negative so the guest's next check traps even if it catches the
   * exception (wasm exception handling can catch a host's).
   */
  hostWork(): void {
    if ((++this.#hostWork & 15) !== 0) return;
    const now = performance.now();
    if (this.#hostWorkStart === 0) {
      this.#hostWorkStart = now;
      return;
    }
    const limitMs = (this.#callBudget * HOST_TIME_NS_PER_FUEL) / 1e6;
    if (now - this.#hostWorkStart <= limitMs) return;
    this.#setFuel(-1);
    throw new CpuBudgetExceeded(`CPU budget exceeded: host calls in one callback ran for more than ${Math.round(limitMs)} ms`);
  }

  /**
   * Charges `units` of fuel for host work whose cost is known in advance (a foreign function's
   * signature check): the same counter the guest's instructions use, so host work counts in the
   * callback's CPU budget. Past the budget the fuel is set negative and the call throws, as hostWork
   * does. An unmetered module is not charged.
   */
  chargeFuel(units: number): void {
    if (this.#getFuel === undefined || this.#depth === 0) return;
    const left = this.#getFuel() - units;
    if (left >= 0) {
      this.#setFuel(left);
      return;
    }
    this.#setFuel(-1);
    throw new CpuBudgetExceeded(`CPU budget exceeded: host work priced at ${units} fuel units went past the callback's ${this.#callBudget}`);
  }

  /** The fuel counter went negative: the instrumentation's own trap, not the module's. */
  get #budgetSpent(): boolean {
    return this.#getFuel !== undefined && this.#getFuel() < 0;
  }

  #causeOf(err: unknown): TrapCause {
    // SDKs grow by more than a page at a time: within a sixteenth of the bound counts as full.
    const limit = this.compiled.memoryLimitBytes;
    const memoryFull = this.mem !== undefined && this.mem.size + Math.max(WASM_PAGE_BYTES, limit / 16) > limit;
    return trapCause(err, this.#budgetSpent, memoryFull);
  }

  #describe(err: unknown): string {
    if (err instanceof CpuBudgetExceeded) return err.message;
    if (this.#budgetSpent) return `CPU budget exceeded: a callback ran past ${this.#callBudget} fuel units (about one wasm instruction each)`;
    return describeTrap(err);
  }

  #runDeferred(): void {
    // Deferred work may call into the guest again (a resumed stream's body callback), which is fine
    // now that the outer call has returned; it may also defer more work, which this loop picks up.
    while (this.deferred.length > 0) {
      const work = this.deferred.shift()!;
      work();
    }
  }

  /** Runs `work` now if no guest call is on the stack, else right after the outermost call returns. */
  defer(work: () => void): void {
    if (this.#depth === 0) work();
    else this.deferred.push(work);
  }

  get inGuestCall(): boolean {
    return this.#depth > 0;
  }

  fail(reason: string, cause: TrapCause = 'host'): void {
    if (this.failed) return;
    this.failed = true;
    this.failReason = reason;
    this.failCause = cause;
    this.deferred.length = 0;
    const contexts = [...this.contexts.values()];
    for (const c of contexts) {
      c.deleted = true;
      if (c instanceof RootContext && c.tickTimer) clearInterval(c.tickTimer);
    }
    this.events.failed(this, reason, cause);
    // Streams held on this VM (paused on a callout, holding a body) get no further callback that would
    // notice: once the failing call has unwound, each gets its failStrategy answer.
    this.defer(() => {
      for (const c of contexts) c.onVmFailed();
    });
  }

  /** Asks the guest allocator for `size` bytes; 0 when it cannot (or trapped). Never called with 0. */
  alloc(size: number): number {
    if (this.failed) return 0;
    try {
      return this.guest.alloc(size) >>> 0;
    } catch (err) {
      // An allocator trap inside a host call: the current guest call will unwind through our return value.
      this.fail(`allocator trapped: ${this.#describe(err)}`, this.#causeOf(err));
      return 0;
    }
  }

  /** Hands bytes to the guest: allocate, copy, write pointer and length (§3.9 of the ABI notes). */
  returnBytes(data: Uint8Array, pPtr: number, pLen: number): number {
    const len = data.length;
    // Check the out-pointers first: a bad one must not leave the guest with an allocation it never sees.
    if (!this.mem.inBounds(pPtr, 4) || !this.mem.inBounds(pLen, 4)) return WasmResult.InvalidMemoryAccess;
    if (len === 0) return this.#writePtrLen(0, 0, pPtr, pLen);
    const addr = this.alloc(len);
    if (addr === 0 || !this.mem.write(addr, data)) return WasmResult.InvalidMemoryAccess;
    return this.#writePtrLen(addr, len, pPtr, pLen);
  }

  /** Hands a latin1 string (header names and values) to the guest without an intermediate copy. */
  returnLatin1(value: string, pPtr: number, pLen: number): number {
    const len = value.length;
    // Check the out-pointers first: a bad one must not leave the guest with an allocation it never sees.
    if (!this.mem.inBounds(pPtr, 4) || !this.mem.inBounds(pLen, 4)) return WasmResult.InvalidMemoryAccess;
    if (len === 0) return this.#writePtrLen(0, 0, pPtr, pLen);
    const addr = this.alloc(len);
    if (addr === 0 || !this.mem.inBounds(addr, len)) return WasmResult.InvalidMemoryAccess;
    writeLatin1(this.mem.bytes, value, addr);
    return this.#writePtrLen(addr, len, pPtr, pLen);
  }

  returnPairs(list: HeaderList, pPtr: number, pLen: number): number {
    // Check the out-pointers first: a bad one must not leave the guest with an allocation it never sees.
    if (!this.mem.inBounds(pPtr, 4) || !this.mem.inBounds(pLen, 4)) return WasmResult.InvalidMemoryAccess;
    if (list.length === 0) return this.#writePtrLen(0, 0, pPtr, pLen);
    const len = pairsByteLength(list);
    const addr = this.alloc(len);
    if (addr === 0 || !this.mem.inBounds(addr, len)) return WasmResult.InvalidMemoryAccess;
    writePairs(list, this.mem.bytes, addr);
    return this.#writePtrLen(addr, len, pPtr, pLen);
  }

  #writePtrLen(addr: number, len: number, pPtr: number, pLen: number): number {
    if (!this.mem.writeU32(pPtr, addr) || !this.mem.writeU32(pLen, len)) return WasmResult.InvalidMemoryAccess;
    return WasmResult.Ok;
  }

  /** Runs the root context's shutdown (on_done, then on_delete unless the module asks to wait). */
  shutdownRoot(): boolean {
    const root = this.root;
    if (!root || root.deleted || this.failed) return true;
    // The timer keeps running until on_delete: a root whose on_done asked to wait often calls proxy_done from on_tick.
    const done = this.guest.onDone ? this.call(this.guest.onDone, root, root.id) : 1;
    if (done === 0 && !this.failed) {
      root.pendingDone = true;
      return false;
    }
    this.deleteContext(root);
    return true;
  }

  deleteContext(ctx: Context): void {
    if (ctx.deleted) return;
    if (this.guest.onDelete && !this.failed) this.call(this.guest.onDelete, ctx, ctx.id);
    ctx.deleted = true;
    if (ctx instanceof RootContext && ctx.tickTimer) {
      clearInterval(ctx.tickTimer);
      ctx.tickTimer = undefined;
    }
    this.contexts.delete(ctx.id);
  }

  /** Writes a module log line to the host (default: stderr). Error lines are kept for start failures. */
  emitLog(level: LogLevel, message: string): void {
    if (level >= LogLevel.Error) this.noteErrorLog(message);
    const host = this.settings.host;
    if (host.log) host.log(level, message, this.settings.name);
    else process.stderr.write(`[wasm ${this.settings.name}] ${LOG_LEVEL_NAMES[level]}: ${message}\n`);
  }

  /** proxy_set_tick_period_milliseconds: one timer per root context; 0 stops it. */
  setTickPeriod(root: RootContext, periodMs: number): void {
    if (root.tickTimer) clearInterval(root.tickTimer);
    root.tickTimer = undefined;
    root.tickPeriodMs = periodMs;
    // With manual ticks (a test harness stepping time) on_tick runs only through runTick.
    if (periodMs === 0 || !this.guest.onTick || this.settings.host.manualTicks) return;
    root.tickTimer = setInterval(() => this.runTick(root), periodMs);
    // Ticks never keep a process alive on their own: the embedder's servers do.
    root.tickTimer.unref();
  }

  /** One on_tick of `root`; false when it cannot run (no callback, VM failed, root gone). */
  runTick(root: RootContext): boolean {
    const onTick = this.guest.onTick;
    if (!onTick || this.failed || root.deleted) return false;
    this.call(onTick, root, root.id);
    return true;
  }

  /** proxy_done was called: finish what on_done started. */
  finishRootShutdown(root: RootContext): void {
    this.deleteContext(root);
  }

  /** The shared-queue registry notifies this VM's root when items arrive. */
  queueOwnerFor(root: RootContext): QueueOwner {
    this.#queueOwner ??= {
      queueReady: (queueId: number) => {
        const fn = this.guest.onQueueReady;
        if (!fn || this.failed || root.deleted) return;
        this.call(fn, root, root.id, queueId);
      },
    };
    return this.#queueOwner;
  }

  /** Stops timers and queue notifications; the VM is no longer used. */
  dispose(): void {
    for (const c of this.contexts.values()) if (c instanceof RootContext && c.tickTimer) clearInterval(c.tickTimer);
    if (this.#queueOwner) this.settings.host.sharedQueues.release(this.#queueOwner);
  }

  logLevelEnabled(level: number): boolean {
    return level >= this.settings.logLevel && this.settings.logLevel !== LogLevel.Off;
  }
}
