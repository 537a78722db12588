// Global rate limiting: after the local buckets, one unary gRPC callout per request to a rate-limit
// service speaking Envoy's RLS v3 (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit), with
// descriptors built from the request (remote address, a header, the destination, the source
// principal, fixed values). The request waits (StopIteration) until the answer:
//   OVER_LIMIT            429 with retry-after, x-ratelimit-* and the service's RateLimit-* headers;
//   OK                    the request goes on, with the service's request headers; the response gets
//                         the service's response headers (RateLimit-*);
//   no answer in time,    failureMode ALLOW: the request goes on; DENY: 500 rate_limiter_error.
//   an error status, or
//   an answer we cannot read
// The messages are encoded and decoded here (a few fields of protobuf; AssemblyScript has no library).
import { HeaderPair, send_local_response, log, log_enabled, LogLevelValues, GrpcStatusValues } from "@solo-io/proxy-runtime";
import * as imports from "@solo-io/proxy-runtime/assembly/imports";
import { free } from "@solo-io/proxy-runtime/assembly/malloc";
import { WasmResultValues } from "@solo-io/proxy-runtime";
import { Checker, JKind, JValue } from "../../common/assembly/json";
import { Counter, getPropertyString, getRequestHeader } from "./host";
import { RequestAttrs } from "./authz";

// proxy_grpc_call as ABI 0.2.x declares it, with initial metadata (the SDK still declares 0.1.0's,
// without). Only this declaration is used, so the module imports the function once.
// @ts-ignore: decorator
@external("env", "proxy_grpc_call")
declare function proxy_grpc_call(
  upstream: usize, upstreamSize: usize, service: usize, serviceSize: usize, method: usize, methodSize: usize,
  metadata: usize, metadataSize: usize, message: usize, messageSize: usize, timeoutMs: u32, token: usize,
): u32;

// ---------------------------------------------------------------------------------------------
// Configuration

export const enum EntrySource {
  Value = 0,
  Header = 1,
  RemoteAddress = 2,
  Destination = 3,
  SourcePrincipal = 4,
}

export class DescriptorEntry {
  key: string = "";
  source: EntrySource = EntrySource.Value;
  /** The fixed value, or the header name (lowercase). */
  arg: string = "";
  argBytes: ArrayBuffer = new ArrayBuffer(0);
}

export class GlobalRateLimit {
  cluster: string = "";
  domain: string = "";
  timeoutMs: u32 = 200;
  failureDeny: bool = false;
  descriptors: DescriptorEntry[][] = [];
  ok: Counter | null = null;
  over: Counter | null = null;
  failureAllowed: Counter | null = null;
  failureDenied: Counter | null = null;
}

const GLOBAL_KEYS: string[] = ["cluster", "domain", "timeoutMs", "failureMode", "descriptors"];
const DESCRIPTOR_KEYS: string[] = ["entries"];
const ENTRY_KEYS: string[] = ["key", "value", "header", "remoteAddress", "destination", "sourcePrincipal"];

/** Compiles `globalRateLimit`; null after failing `c` (the error names the field). */
export function compileGlobal(c: Checker, v: JValue, path: string): GlobalRateLimit | null {
  if (!c.object(v, path, GLOBAL_KEYS)) return null;
  const g = new GlobalRateLimit();
  g.cluster = c.str(v.get("cluster"), path + ".cluster", true);
  g.domain = c.str(v.get("domain"), path + ".domain", true);
  if (c.failed) return null;
  if (g.cluster.length == 0) c.fail(path + ".cluster", "must not be empty");
  else if (g.domain.length == 0) c.fail(path + ".domain", "must not be empty");
  g.timeoutMs = <u32>c.int(v.get("timeoutMs"), path + ".timeoutMs", 1, 60000, 200);
  const mode = c.str(v.get("failureMode"), path + ".failureMode", false);
  if (c.failed) return null;
  if (mode == "DENY") g.failureDeny = true;
  else if (mode != "ALLOW" && mode != "") {
    c.fail(path + ".failureMode", "\"" + mode + "\" is not one of ALLOW, DENY");
    return null;
  }
  const list = c.array(v.get("descriptors"), path + ".descriptors");
  if (c.failed) return null;
  if (list.length == 0) {
    c.fail(path + ".descriptors", "must have at least one descriptor");
    return null;
  }
  for (let i = 0; i < list.length && !c.failed; i++) {
    const dp = path + ".descriptors[" + i.toString() + "]";
    if (!c.object(list[i], dp, DESCRIPTOR_KEYS)) return null;
    const entries = c.array(list[i].get("entries"), dp + ".entries");
    if (c.failed) return null;
    if (entries.length == 0) {
      c.fail(dp + ".entries", "must have at least one entry");
      return null;
    }
    const out: DescriptorEntry[] = [];
    for (let j = 0; j < entries.length && !c.failed; j++) {
      const e = compileEntry(c, entries[j], dp + ".entries[" + j.toString() + "]");
      if (e === null) return null;
      out.push(e);
    }
    g.descriptors.push(out);
  }
  if (c.failed) return null;
  g.ok = new Counter("policy_global_ratelimit_total{result=\"ok\"}");
  g.over = new Counter("policy_global_ratelimit_total{result=\"over_limit\"}");
  g.failureAllowed = new Counter("policy_global_ratelimit_total{result=\"failure_allowed\"}");
  g.failureDenied = new Counter("policy_global_ratelimit_total{result=\"failure_denied\"}");
  return g;
}

function compileEntry(c: Checker, v: JValue, path: string): DescriptorEntry | null {
  if (!c.object(v, path, ENTRY_KEYS)) return null;
  const e = new DescriptorEntry();
  e.key = c.str(v.get("key"), path + ".key", true);
  if (c.failed) return null;
  if (e.key.length == 0) {
    c.fail(path + ".key", "must not be empty");
    return null;
  }
  let sources = 0;
  for (let i = 0; i < v.keys.length; i++) if (v.keys[i] != "key") sources++;
  if (sources != 1) {
    c.fail(path, "must have exactly one of value, header, remoteAddress, destination, sourcePrincipal");
    return null;
  }
  const value = v.get("value");
  const header = v.get("header");
  if (value !== null) {
    e.source = EntrySource.Value;
    e.arg = c.str(value, path + ".value", true);
  } else if (header !== null) {
    e.source = EntrySource.Header;
    e.arg = c.str(header, path + ".header", true).toLowerCase();
    if (!c.failed && e.arg.length == 0) c.fail(path + ".header", "must not be empty");
    e.argBytes = String.UTF8.encode(e.arg);
  } else {
    const which = v.keys[0] == "key" ? v.keys[1] : v.keys[0];
    const flag = v.get(which)!;
    if (!c.is(flag, JKind.Bool, path + "." + which) || !flag.boolean) {
      if (!c.failed) c.fail(path + "." + which, "must be true");
      return null;
    }
    e.source = which == "remoteAddress" ? EntrySource.RemoteAddress : which == "destination" ? EntrySource.Destination : EntrySource.SourcePrincipal;
  }
  return c.failed ? null : e;
}

// ---------------------------------------------------------------------------------------------
// Per request

/** What a stream keeps of the answer: headers for its response. */
export class GlobalStreamState {
  responseHeaders: HeaderPair[] = [];
}

class Pending {
  contextId: u32;
  state: GlobalStreamState;
  config: GlobalRateLimit;
  constructor(contextId: u32, state: GlobalStreamState, config: GlobalRateLimit) {
    this.contextId = contextId;
    this.state = state;
    this.config = config;
  }
}

/** Calls in flight by token (one VM: one root context per plugin). */
const pending = new Map<u32, Pending>();

const SERVICE = String.UTF8.encode("envoy.service.ratelimit.v3.RateLimitService");
const METHOD = String.UTF8.encode("ShouldRateLimit");
const EMPTY_METADATA = new ArrayBuffer(4); // a header map with 0 pairs
const TOKEN = memory.data(4, 4);
const RET = memory.data(8, 4);
const P_SOURCE_ADDRESS = String.UTF8.encode("source\0address");
const LIMITED_BODY = String.UTF8.encode("request_rate_limited");
const ERROR_BODY = String.UTF8.encode("rate_limiter_error");
const H_CONTENT_TYPE = String.UTF8.encode("content-type");
const GRPC_RECEIVE_BUFFER: i32 = 5;
const REQUEST_HEADERS: i32 = 0;
const STREAM_REQUEST: i32 = 0;

export const enum GlobalStart {
  /** Nothing to ask (no descriptor applies), or failure mode ALLOW: go on. */
  Continue = 0,
  /** The call is out: pause the request until the answer. */
  Paused = 1,
  /** Answered locally (failure mode DENY): stop. */
  Answered = 2,
}

/** Starts the check for one request (call from on_request_headers, after the local buckets). */
export function startGlobalCheck(g: GlobalRateLimit, req: RequestAttrs, contextId: u32, state: GlobalStreamState): GlobalStart {
  const w = new Writer();
  const domain = String.UTF8.encode(g.domain);
  w.bytesField(1, domain);
  let any = false;
  for (let i = 0, n = g.descriptors.length; i < n; i++) {
    const d = unchecked(g.descriptors[i]);
    const encoded = encodeDescriptor(d, req);
    if (encoded === null) continue; // a value it needs is missing: this limit does not apply
    w.bytesField(2, encoded);
    any = true;
  }
  if (!any) return GlobalStart.Continue;
  const message = w.finish();
  const cluster = String.UTF8.encode(g.cluster);
  const r = proxy_grpc_call(
    changetype<usize>(cluster), cluster.byteLength,
    changetype<usize>(SERVICE), SERVICE.byteLength,
    changetype<usize>(METHOD), METHOD.byteLength,
    changetype<usize>(EMPTY_METADATA), EMPTY_METADATA.byteLength,
    changetype<usize>(message), message.byteLength,
    g.timeoutMs, TOKEN,
  );
  if (r != WasmResultValues.Ok) {
    if (log_enabled(LogLevelValues.warn)) log(LogLevelValues.warn, "policy: global rate limit: cannot call cluster " + g.cluster + " (result " + r.toString() + ")");
    return failure(g, "call not started") ? GlobalStart.Answered : GlobalStart.Continue;
  }
  pending.set(load<u32>(TOKEN), new Pending(contextId, state, g));
  return GlobalStart.Paused;
}

/** proxy_on_grpc_receive on the root context: the answer of a call. */
export function onGlobalAnswer(token: u32, size: u32): void {
  if (!pending.has(token)) return;
  const p = pending.get(token);
  pending.delete(token);
  store<u64>(RET, 0);
  let answer: Answer | null = null;
  if (imports.proxy_get_buffer_bytes(GRPC_RECEIVE_BUFFER, 0, size, RET, RET + 4) == WasmResultValues.Ok) {
    answer = decodeAnswer(takeReturned());
  }
  // The stream may be gone (client reset): then there is nobody to answer.
  if (imports.proxy_set_effective_context(p.contextId) != WasmResultValues.Ok) return;
  const g = p.config;
  if (answer === null) {
    log(LogLevelValues.warn, "policy: global rate limit: the service's answer cannot be read");
    if (!failure(g, "unreadable answer")) continueRequest();
    return;
  }
  if (answer.overallCode == CODE_OVER_LIMIT) {
    const c = g.over;
    if (c !== null) c.inc();
    send_local_response(429, "request_rate_limited", LIMITED_BODY, limitedHeaders(answer), grpcStatus());
    return;
  }
  const c = g.ok;
  if (c !== null) c.inc();
  for (let i = 0, n = answer.requestHeaders.length; i < n; i++) {
    const h = unchecked(answer.requestHeaders[i]);
    imports.proxy_add_header_map_value(REQUEST_HEADERS, changetype<usize>(h.key), h.key.byteLength, changetype<usize>(h.value), h.value.byteLength);
  }
  p.state.responseHeaders = answer.responseHeaders;
  continueRequest();
}

/** proxy_on_grpc_close on the root context: the call ended; without an answer it failed. */
export function onGlobalClose(token: u32, status: u32): void {
  if (!pending.has(token)) return; // answered already (onGlobalAnswer)
  const p = pending.get(token);
  pending.delete(token);
  if (imports.proxy_set_effective_context(p.contextId) != WasmResultValues.Ok) return;
  // Counted (policy_global_ratelimit_total{result="failure_*"}); a line per request only at debug.
  if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "policy: global rate limit: the service failed (gRPC status " + status.toString() + ")");
  if (!failure(p.config, "gRPC status " + status.toString())) continueRequest();
}

/** Applies the failure mode; true when the request was answered (DENY). */
function failure(g: GlobalRateLimit, why: string): bool {
  if (!g.failureDeny) {
    const c = g.failureAllowed;
    if (c !== null) c.inc();
    return false;
  }
  const c = g.failureDenied;
  if (c !== null) c.inc();
  if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "policy: global rate limit unavailable (" + why + "): denied");
  send_local_response(500, "rate_limiter_error", ERROR_BODY, [], grpcStatus());
  return true;
}

function continueRequest(): void {
  imports.proxy_continue_stream(STREAM_REQUEST);
}

function grpcStatus(): GrpcStatusValues {
  const ct = getRequestHeader(H_CONTENT_TYPE);
  return ct !== null && ct.startsWith("application/grpc") ? GrpcStatusValues.Unavailable : GrpcStatusValues.InvalidCode;
}

function limitedHeaders(a: Answer): HeaderPair[] {
  // The over-limit status that resets last decides when to come back.
  let limit: u32 = 0;
  let reset: i64 = 0;
  for (let i = 0, n = a.statuses.length; i < n; i++) {
    const s = unchecked(a.statuses[i]);
    if (s.code != CODE_OVER_LIMIT) continue;
    if (limit == 0 || s.resetSeconds > reset) {
      reset = s.resetSeconds;
      limit = s.requestsPerUnit;
    }
  }
  if (reset < 1) reset = 1;
  const seconds = reset.toString();
  const out: HeaderPair[] = [
    pair("retry-after", seconds),
    pair("x-ratelimit-limit", limit.toString()),
    pair("x-ratelimit-remaining", "0"),
    pair("x-ratelimit-reset", seconds),
  ];
  for (let i = 0, n = a.responseHeaders.length; i < n; i++) out.push(unchecked(a.responseHeaders[i]));
  return out;
}

function pair(name: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), String.UTF8.encode(value));
}

function takeReturned(): ArrayBuffer {
  const ptr = load<usize>(RET);
  const len = load<u32>(RET, 4);
  if (ptr == 0 || len == 0) return new ArrayBuffer(0);
  const buffer = changetype<ArrayBuffer>(ptr);
  free(ptr);
  return buffer;
}

/** One descriptor's entries as a RateLimitDescriptor message, or null when a value is missing. */
function encodeDescriptor(entries: DescriptorEntry[], req: RequestAttrs): ArrayBuffer | null {
  const w = new Writer();
  for (let i = 0, n = entries.length; i < n; i++) {
    const e = unchecked(entries[i]);
    const value = entryValue(e, req);
    if (value === null || value.length == 0) return null;
    const entry = new Writer();
    entry.bytesField(1, String.UTF8.encode(e.key));
    entry.bytesField(2, String.UTF8.encode(value));
    w.bytesField(1, entry.finish());
  }
  return w.finish();
}

function entryValue(e: DescriptorEntry, req: RequestAttrs): string | null {
  switch (e.source) {
    case EntrySource.Value: return e.arg;
    case EntrySource.Header: return getRequestHeader(e.argBytes);
    case EntrySource.RemoteAddress: {
      const a = getPropertyString(P_SOURCE_ADDRESS);
      return a === null ? null : addressHost(a);
    }
    case EntrySource.Destination: {
      const h = req.host();
      return h === null ? null : stripPort(h);
    }
    default: return req.principal();
  }
}

/** The IP of "ip:port", "[v6]:port" (an IPv4-mapped IPv6 address as IPv4). */
export function addressHost(address: string): string {
  let host = address;
  if (address.startsWith("[")) {
    const close = address.indexOf("]");
    host = close < 0 ? address : address.substring(1, close);
  } else {
    const colon = address.lastIndexOf(":");
    if (colon >= 0) host = address.substring(0, colon);
  }
  if (host.startsWith("::ffff:") && host.indexOf(".") > 0) host = host.substring(7);
  return host;
}

function stripPort(host: string): string {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close < 0 ? host : host.substring(0, close + 1);
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.substring(0, colon);
}

// ---------------------------------------------------------------------------------------------
// Protobuf: the fields of RateLimitRequest and RateLimitResponse the filter uses

class Writer {
  buf: Uint8Array = new Uint8Array(64);
  len: i32 = 0;

  ensure(n: i32): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    memory.copy(next.dataStart, this.buf.dataStart, <usize>this.len);
    this.buf = next;
  }

  varint(v: u64): void {
    this.ensure(10);
    while (v >= 0x80) {
      unchecked((this.buf[this.len++] = <u8>(v & 0x7f) | 0x80));
      v >>= 7;
    }
    unchecked((this.buf[this.len++] = <u8>v));
  }

  /** A length-delimited field (wire type 2). */
  bytesField(field: u32, bytes: ArrayBuffer): void {
    this.varint((<u64>field << 3) | 2);
    this.varint(<u64>bytes.byteLength);
    this.ensure(bytes.byteLength);
    memory.copy(this.buf.dataStart + <usize>this.len, changetype<usize>(bytes), <usize>bytes.byteLength);
    this.len += bytes.byteLength;
  }

  finish(): ArrayBuffer {
    const out = new ArrayBuffer(this.len);
    memory.copy(changetype<usize>(out), this.buf.dataStart, <usize>this.len);
    return out;
  }
}

const CODE_OVER_LIMIT: i32 = 2;

class Status {
  code: i32 = 0;
  requestsPerUnit: u32 = 0;
  remaining: u32 = 0;
  resetSeconds: i64 = 0;
}

class Answer {
  overallCode: i32 = 0;
  statuses: Status[] = [];
  responseHeaders: HeaderPair[] = [];
  requestHeaders: HeaderPair[] = [];
}

/** A bounds-checked reader; any malformation sets `bad` and the answer is dropped. */
class Reader {
  p: usize;
  end: usize;
  bad: bool = false;
  constructor(p: usize, end: usize) {
    this.p = p;
    this.end = end;
  }
  more(): bool {
    return !this.bad && this.p < this.end;
  }
  varint(): u64 {
    let v: u64 = 0;
    for (let shift: u64 = 0; shift < 64; shift += 7) {
      if (this.p >= this.end) break;
      const b = load<u8>(this.p++);
      v |= (<u64>(b & 0x7f)) << shift;
      if (b < 0x80) return v;
    }
    this.bad = true;
    return 0;
  }
  /** The bounds of a length-delimited field; [0, 0] after failing. */
  sub(): Reader {
    const n = this.varint();
    if (this.bad || n > <u64>(this.end - this.p)) {
      this.bad = true;
      return new Reader(0, 0);
    }
    const r = new Reader(this.p, this.p + <usize>n);
    this.p += <usize>n;
    return r;
  }
  skip(wire: u32): void {
    if (wire == 0) this.varint();
    else if (wire == 1) this.advance(8);
    else if (wire == 5) this.advance(4);
    else if (wire == 2) this.sub();
    else this.bad = true;
  }
  advance(n: usize): void {
    if (this.end - this.p < n) this.bad = true;
    else this.p += n;
  }
  bytes(r: Reader): ArrayBuffer {
    const out = new ArrayBuffer(<i32>(r.end - r.p));
    memory.copy(changetype<usize>(out), r.p, r.end - r.p);
    return out;
  }
}

function decodeAnswer(buf: ArrayBuffer): Answer | null {
  const base = changetype<usize>(buf);
  const r = new Reader(base, base + <usize>buf.byteLength);
  const a = new Answer();
  while (r.more()) {
    const tag = r.varint();
    const field = <u32>(tag >> 3);
    const wire = <u32>(tag & 7);
    if (field == 1 && wire == 0) a.overallCode = <i32>r.varint();
    else if (field == 2 && wire == 2) a.statuses.push(decodeStatus(r.sub(), r));
    else if ((field == 3 || field == 4) && wire == 2) {
      const h = decodeHeader(r.sub(), r);
      if (h !== null) (field == 3 ? a.responseHeaders : a.requestHeaders).push(h);
    } else r.skip(wire);
  }
  return r.bad ? null : a;
}

function decodeStatus(s: Reader, outer: Reader): Status {
  const st = new Status();
  while (s.more()) {
    const tag = s.varint();
    const field = <u32>(tag >> 3);
    const wire = <u32>(tag & 7);
    if (field == 1 && wire == 0) st.code = <i32>s.varint();
    else if (field == 2 && wire == 2) {
      const l = s.sub();
      while (l.more()) {
        const t = l.varint();
        if (t == 0x08) st.requestsPerUnit = <u32>l.varint();
        else l.skip(<u32>(t & 7));
      }
      if (l.bad) s.bad = true;
    } else if (field == 3 && wire == 0) st.remaining = <u32>s.varint();
    else if (field == 4 && wire == 2) {
      const d = s.sub();
      while (d.more()) {
        const t = d.varint();
        if (t == 0x08) st.resetSeconds = <i64>d.varint();
        else d.skip(<u32>(t & 7));
      }
      if (d.bad) s.bad = true;
    } else s.skip(wire);
  }
  if (s.bad) outer.bad = true;
  return st;
}

function decodeHeader(h: Reader, outer: Reader): HeaderPair | null {
  let key: ArrayBuffer | null = null;
  let value = new ArrayBuffer(0);
  while (h.more()) {
    const tag = h.varint();
    if (tag == 0x0a) key = h.bytes(h.sub());
    else if (tag == 0x12) value = h.bytes(h.sub());
    else h.skip(<u32>(tag & 7));
  }
  if (h.bad) {
    outer.bad = true;
    return null;
  }
  if (key === null || key.byteLength == 0) return null;
  // Header names travel lowercase in this proxy (HTTP/2 and the filter ABI).
  return new HeaderPair(String.UTF8.encode(String.UTF8.decode(key).toLowerCase()), value);
}
