// HTTP and gRPC callouts in flight for one VM: tokens, and delivery of the answer to the root context
// that made the call, from the event loop (never nested inside another guest call).
import { WasmResult } from './abi/constants.ts';
import type { RootContext } from './context.ts';
import type { GrpcCallRequest, GrpcCallResponse, HttpCallRequest, HttpCallResponse } from './host.ts';
import type { Vm } from './vm.ts';

const TOKEN_HTTP = 0;
const TOKEN_GRPC_CALL = 1;

export class Callouts {
  readonly #vm: Vm;
  /** cpp-host's numbering: step by 4, the kind in the low two bits; never 0, never reused. */
  #nextToken = 1;
  readonly #grpcCancelled = new Set<number>();
  readonly #grpcPending = new Set<number>();
  /** Callouts not answered yet; the plugin waits for none of them on shutdown. */
  pending = 0;

  constructor(vm: Vm) {
    this.#vm = vm;
  }

  #token(kind: number): number {
    const token = (this.#nextToken++ << 2) | kind;
    return token >>> 0;
  }

  startHttp(root: RootContext, request: HttpCallRequest, pToken: number): number {
    const host = this.#vm.settings.host;
    if (!host.httpCall) return WasmResult.Unimplemented;
    let started: ReturnType<NonNullable<typeof host.httpCall>>;
    try {
      started = host.httpCall(request);
    } catch {
      return WasmResult.InternalFailure;
    }
    if (typeof started === 'number') return started;
    const token = this.#token(TOKEN_HTTP);
    if (!this.#vm.mem.writeU32(pToken, token)) return WasmResult.InvalidMemoryAccess;
    this.pending++;
    started.then(
      (response) => this.#deliverHttp(root, token, response),
      () => this.#deliverHttp(root, token, null),
    );
    return WasmResult.Ok;
  }

  #deliverHttp(root: RootContext, token: number, response: HttpCallResponse | null): void {
    this.pending--;
    const vm = this.#vm;
    const fn = vm.guest.onHttpCallResponse;
    if (vm.failed || root.deleted || !fn) return;
    root.setCallResponse(response);
    vm.status = response ? OK_STATUS : RESET_STATUS;
    try {
      if (response) vm.call(fn, root, root.id, token, response.headers.length >>> 1, response.body.length, response.trailers.length >>> 1);
      else vm.call(fn, root, root.id, token, 0, 0, 0);
    } finally {
      root.setCallResponse(null);
      vm.status = OK_STATUS;
    }
  }

  startGrpc(root: RootContext, request: GrpcCallRequest, pToken: number): number {
    const host = this.#vm.settings.host;
    if (!host.grpcCall) return WasmResult.Unimplemented;
    let started: ReturnType<NonNullable<typeof host.grpcCall>>;
    try {
      started = host.grpcCall(request);
    } catch {
      return WasmResult.InternalFailure;
    }
    if (typeof started === 'number') return started;
    const token = this.#token(TOKEN_GRPC_CALL);
    if (!this.#vm.mem.writeU32(pToken, token)) return WasmResult.InvalidMemoryAccess;
    this.pending++;
    this.#grpcPending.add(token);
    started.then(
      (response) => this.#deliverGrpc(root, token, response),
      (err: unknown) =>
        this.#deliverGrpc(root, token, { initialMetadata: [], trailingMetadata: [], status: 14, statusMessage: String(err) }),
    );
    return WasmResult.Ok;
  }

  hasGrpc(token: number): boolean {
    return this.#grpcPending.has(token);
  }

  /** proxy_grpc_cancel / close on a unary call: the answer is dropped. */
  cancelGrpc(token: number): boolean {
    if (!this.#grpcPending.has(token)) return false;
    this.#grpcCancelled.add(token);
    return true;
  }

  #deliverGrpc(root: RootContext, token: number, r: GrpcCallResponse): void {
    this.pending--;
    this.#grpcPending.delete(token);
    if (this.#grpcCancelled.delete(token)) return;
    const vm = this.#vm;
    if (vm.failed || root.deleted) return;
    const g = vm.guest;
    try {
      if (g.onGrpcReceiveInitialMetadata && r.initialMetadata.length > 0) {
        root.grpcInitialMetadata = r.initialMetadata;
        vm.call(g.onGrpcReceiveInitialMetadata, root, root.id, token, r.initialMetadata.length >>> 1);
        root.grpcInitialMetadata = undefined;
      }
      if (g.onGrpcReceive && r.message && !vm.failed) {
        root.setGrpcMessage(r.message);
        vm.call(g.onGrpcReceive, root, root.id, token, r.message.length);
        root.setGrpcMessage(undefined);
      }
      if (g.onGrpcReceiveTrailingMetadata && r.trailingMetadata.length > 0 && !vm.failed) {
        root.grpcTrailingMetadata = r.trailingMetadata;
        vm.call(g.onGrpcReceiveTrailingMetadata, root, root.id, token, r.trailingMetadata.length >>> 1);
        root.grpcTrailingMetadata = undefined;
      }
      if (g.onGrpcClose && !vm.failed) {
        vm.status = { code: r.status, message: r.statusMessage };
        vm.call(g.onGrpcClose, root, root.id, token, r.status);
      }
    } finally {
      vm.status = OK_STATUS;
    }
  }
}

export interface CallStatus {
  code: number;
  message: string;
}
export const OK_STATUS: CallStatus = Object.freeze({ code: 0, message: '' });
/** What Envoy reports for a failed HTTP callout. */
export const RESET_STATUS: CallStatus = Object.freeze({ code: WasmResult.BrokenConnection, message: 'reset' });
