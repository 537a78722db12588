// The immutable, validated form of a plugin's configuration: built once, shared by every VM of the plugin.
import { LOG_LEVEL_NAMES, LogLevel, type LogLevelName } from './abi/constants.ts';
import { ErrorCode, WasmeshWasmError } from './errors.ts';
import type { FailStrategy, OutputLimits, PluginHost } from './host.ts';
import {
  DEFAULT_CPU_BUDGET, DEFAULT_MAX_BUFFERED_BODY_BYTES, DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_REQUEST_HEADER_BYTES, DEFAULT_MAX_RESPONSE_HEADER_BYTES,
  DEFAULT_STARTUP_CPU_BUDGET, MAX_CPU_BUDGET, MAX_PLUGIN_VMS,
} from './limits.ts';
import { MetricsRegistry } from './metrics/registry.ts';
import { SharedDataStore } from './shared-data.ts';
import { SharedQueueRegistry } from './shared-queue.ts';

export interface PluginConfig {
  /** The plugin's name (WasmPlugin metadata.name); labels metrics and logs. */
  name: string;
  /** Root id the module's SDK registers its root context under (AS: registerRootContext). Default: "". */
  rootId?: string;
  /** VM id: shared data and queues are scoped by it. Default: the plugin name. */
  vmId?: string;
  /** pluginConfig, read by the module in on_configure: an object is sent as JSON. */
  configuration?: string | Uint8Array | object;
  vmConfiguration?: string | Uint8Array | object;
  failStrategy?: FailStrategy;
  logLevel?: LogLevelName | LogLevel;
  /** WASI environment variables the module sees. */
  env?: Record<string, string>;
  /** Body bytes buffered for a filter that stops iteration. */
  maxBufferedBodyBytes?: number;
  /** Fuel units (about one wasm instruction each) one callback may use; past it the VM traps (cause cpu_budget). */
  cpuBudget?: number;
  /** The same for module startup: _initialize/_start, on_vm_start and on_configure. */
  startupCpuBudget?: number;
  /**
   * VMs in the plugin's pool, 1 to MAX_PLUGIN_VMS (default 1): new streams are spread over them, and a
   * VM that fails takes only its own streams with it. Each VM is a whole instance of the module.
   */
  vms?: number;
}

export interface PluginSettings {
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly pluginConfiguration: Uint8Array;
  readonly vmConfiguration: Uint8Array;
  readonly failStrategy: FailStrategy;
  readonly logLevel: LogLevel;
  readonly env: ReadonlyArray<string>;
  readonly maxBufferedBodyBytes: number;
  readonly cpuBudget: number;
  readonly startupCpuBudget: number;
  /** VMs in the plugin's pool (1 to MAX_PLUGIN_VMS). */
  readonly vms: number;
  readonly outputLimits: Readonly<OutputLimits>;
  readonly host: Required<Pick<PluginHost, 'metrics' | 'sharedData' | 'sharedQueues'>> & PluginHost;
}

const FAIL_STRATEGIES: readonly FailStrategy[] = ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD'];

function toBytes(value: string | Uint8Array | object | undefined): Uint8Array {
  if (value === undefined) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** Shared across plugins unless the embedder passes its own: process-wide, like Envoy's per-vm_id stores. */
const defaultSharedData = new SharedDataStore();
const defaultSharedQueues = new SharedQueueRegistry();

export function buildPluginSettings(config: PluginConfig, host: PluginHost = {}): PluginSettings {
  if (!config || typeof config.name !== 'string' || config.name === '') {
    throw new WasmeshWasmError(ErrorCode.BadConfig, 'plugin config: name must be a non-empty string');
  }
  const failStrategy = config.failStrategy ?? 'FAIL_CLOSE';
  if (!FAIL_STRATEGIES.includes(failStrategy)) {
    throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${config.name}: failStrategy must be one of ${FAIL_STRATEGIES.join(', ')}, got ${JSON.stringify(failStrategy)}`);
  }
  let logLevel: LogLevel = LogLevel.Info;
  if (typeof config.logLevel === 'number') {
    if (!(config.logLevel >= 0 && config.logLevel <= 6)) throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${config.name}: logLevel ${config.logLevel} is out of range 0..6`);
    logLevel = config.logLevel as LogLevel;
  } else if (config.logLevel !== undefined) {
    const i = LOG_LEVEL_NAMES.indexOf(config.logLevel);
    if (i < 0) throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${config.name}: logLevel must be one of ${LOG_LEVEL_NAMES.join(', ')}, got ${JSON.stringify(config.logLevel)}`);
    logLevel = i as LogLevel;
  }
  const maxBufferedBodyBytes = config.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED_BODY_BYTES;
  if (!Number.isInteger(maxBufferedBodyBytes) || maxBufferedBodyBytes < 0) {
    throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${config.name}: maxBufferedBodyBytes must be a non-negative integer`);
  }
  const cpuBudget = budgetOf(config.name, 'cpuBudget', config.cpuBudget, DEFAULT_CPU_BUDGET);
  const startupCpuBudget = budgetOf(config.name, 'startupCpuBudget', config.startupCpuBudget, DEFAULT_STARTUP_CPU_BUDGET);
  const vms = config.vms ?? 1;
  if (!Number.isInteger(vms) || vms < 1 || vms > MAX_PLUGIN_VMS) {
    throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${config.name}: vms must be a whole number from 1 to ${MAX_PLUGIN_VMS}, got ${JSON.stringify(vms)}`);
  }
  return Object.freeze({
    name: config.name,
    rootId: config.rootId ?? '',
    vmId: config.vmId ?? config.name,
    pluginConfiguration: toBytes(config.configuration),
    vmConfiguration: toBytes(config.vmConfiguration),
    failStrategy,
    logLevel,
    env: Object.freeze(Object.entries(config.env ?? {}).map(([k, v]) => `${k}=${v}`)),
    maxBufferedBodyBytes,
    cpuBudget,
    startupCpuBudget,
    vms,
    outputLimits: Object.freeze({
      requestHeaderBytes: host.outputLimits?.requestHeaderBytes ?? DEFAULT_MAX_REQUEST_HEADER_BYTES,
      responseHeaderBytes: host.outputLimits?.responseHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES,
      headerCount: host.outputLimits?.headerCount ?? DEFAULT_MAX_HEADER_COUNT,
    }),
    host: {
      ...host,
      metrics: host.metrics ?? new MetricsRegistry(),
      sharedData: host.sharedData ?? defaultSharedData,
      sharedQueues: host.sharedQueues ?? defaultSharedQueues,
    },
  });
}

function budgetOf(plugin: string, field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > MAX_CPU_BUDGET) {
    throw new WasmeshWasmError(ErrorCode.BadConfig, `plugin ${plugin}: ${field} must be a whole number from 1 to ${MAX_CPU_BUDGET}, got ${JSON.stringify(value)}`);
  }
  return value;
}
