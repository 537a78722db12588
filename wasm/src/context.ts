// Contexts as the host sees them: the root (plugin) context and the base every stream context extends.
// A context answers which header maps and buffers are readable right now; the ABI exports ask it.
import { BufferType, MapType } from './abi/constants.ts';
import { WasmResult } from './abi/constants.ts';
import type { HeaderList, HttpCallResponse, LocalResponse, PropertyValue, StreamInfo } from './host.ts';

/** A buffer a host call may read and, where the ABI allows, replace. */
export interface BufferSlot {
  bytes(): Uint8Array;
  /** Undefined for read-only buffers (configuration, callout bodies). */
  replace?(data: Uint8Array): void;
  /** Most bytes a replacement may hold; a larger one is refused (outputTooLarge). */
  readonly maxBytes?: number;
}

/** What a filter wrote past the output limits. */
export type OutputKind =
  | 'request_headers' | 'request_trailers' | 'request_body' | 'response_headers' | 'response_trailers' | 'response_body' | 'local_reply'
  | 'downstream_data' | 'upstream_data';

export abstract class Context {
  readonly id: number;
  constructor(id: number) {
    this.id = id;
  }
  abstract get root(): RootContext;
  /** The map of that type if readable in the current callback, else undefined. */
  abstract getMap(type: number): HeaderList | undefined;
  /** The buffer of that type if readable in the current callback, else undefined. */
  abstract getBuffer(type: number): BufferSlot | undefined;
  /** True once proxy_on_delete ran (or the VM failed): no more calls for this id. */
  deleted = false;

  // Stream control: only HTTP stream contexts implement these; a root context answers as Envoy does.
  continueStream(_type: number): number {
    return WasmResult.NotFound;
  }
  closeStream(_type: number): number {
    return WasmResult.NotFound;
  }
  /**
   * proxy_continue_stream(UPSTREAM) means something here: only a TCP connection's context can resume
   * its upstream direction (elsewhere the host answers Unimplemented, as Envoy does).
   */
  get resumesUpstream(): boolean {
    return false;
  }
  sendLocalResponse(_response: LocalResponse): number {
    return WasmResult.NotFound;
  }
  /** The VM failed (it will not be called again); streams waiting on the filter apply the failStrategy. */
  onVmFailed(): void {}
  /** Values stored by proxy_set_property, readable back through proxy_get_property. */
  properties: Map<string, Uint8Array> | undefined;
  /** The map of that type if the module may change it now (not yet forwarded), else undefined. */
  writableMap(_type: number): HeaderList | undefined {
    return undefined;
  }
  /**
   * Most bytes one write to the map of that type may add (its whole block's limit): the host refuses a
   * larger write before copying it out of guest memory. Infinity where no limit applies.
   */
  mapWriteLimit(_type: number): number {
    return Infinity;
  }
  /**
   * A write went past the output limits: the stream fails once the current callback returns (a local
   * reply naming the plugin, or a reset). Returns the result the host call answers with.
   */
  outputTooLarge(_what: OutputKind): number {
    return WasmResult.BadArgument;
  }
  /** Attributes only a stream knows (request.*, response.*); roots have none. */
  streamProperty(_path: readonly string[]): PropertyValue | undefined {
    return undefined;
  }
  /** Facts about this context's connection, for properties; streams have them, roots do not. */
  get streamInfo(): StreamInfo | undefined {
    return undefined;
  }
}

class ConstantBuffer implements BufferSlot {
  data: Uint8Array;
  constructor(data: Uint8Array) {
    this.data = data;
  }
  bytes(): Uint8Array {
    return this.data;
  }
}

/** Response to an HTTP callout, readable only while on_http_call_response runs. */
export interface ActiveCallResponse {
  response: HttpCallResponse | null;
}

export class RootContext extends Context {
  readonly vmConfiguration: BufferSlot;
  readonly pluginConfiguration: BufferSlot;
  /** Which configuration buffers are readable: set around on_vm_start / on_configure (and kept readable after, leniently). */
  configReadable = true;
  /** Set while a callout, gRPC or foreign-function callback runs. */
  callResponse: HttpCallResponse | null = null;
  callResponseBody: BufferSlot | undefined;
  grpcInitialMetadata: HeaderList | undefined;
  grpcTrailingMetadata: HeaderList | undefined;
  grpcMessage: BufferSlot | undefined;
  foreignArgs: BufferSlot | undefined;
  /** on_done returned 0: waiting for proxy_done. */
  pendingDone = false;
  tickTimer: NodeJS.Timeout | undefined;
  /** The period the module set with proxy_set_tick_period_milliseconds (0: no ticks). */
  tickPeriodMs = 0;

  constructor(id: number, vmConfiguration: Uint8Array, pluginConfiguration: Uint8Array) {
    super(id);
    this.vmConfiguration = new ConstantBuffer(vmConfiguration);
    this.pluginConfiguration = new ConstantBuffer(pluginConfiguration);
  }

  get root(): RootContext {
    return this;
  }

  getMap(type: number): HeaderList | undefined {
    switch (type) {
      case MapType.HttpCallResponseHeaders:
        return this.callResponse?.headers;
      case MapType.HttpCallResponseTrailers:
        return this.callResponse?.trailers;
      case MapType.GrpcReceiveInitialMetadata:
        return this.grpcInitialMetadata;
      case MapType.GrpcReceiveTrailingMetadata:
        return this.grpcTrailingMetadata;
      default:
        return undefined;
    }
  }

  getBuffer(type: number): BufferSlot | undefined {
    switch (type) {
      case BufferType.VmConfiguration:
        return this.configReadable ? this.vmConfiguration : undefined;
      case BufferType.PluginConfiguration:
        return this.configReadable ? this.pluginConfiguration : undefined;
      case BufferType.HttpCallResponseBody:
        return this.callResponseBody;
      case BufferType.GrpcReceiveBuffer:
        return this.grpcMessage;
      case BufferType.CallData:
        return this.foreignArgs;
      default:
        return undefined;
    }
  }

  setCallResponse(response: HttpCallResponse | null): void {
    this.callResponse = response;
    this.callResponseBody = response ? new ConstantBuffer(response.body) : undefined;
  }

  setForeignArgs(args: Uint8Array | undefined): void {
    this.foreignArgs = args ? new ConstantBuffer(args) : undefined;
  }

  setGrpcMessage(message: Uint8Array | undefined): void {
    this.grpcMessage = message ? new ConstantBuffer(message) : undefined;
  }
}
