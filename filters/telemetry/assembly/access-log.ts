// Istio's JSON access-log record, built in on_log and handed to the host's `wasmesh_access_log`
// foreign function (or, when the host has none, logged at info level).
//
// The record is written as UTF-8 straight into one reused buffer: header values and properties are
// copied from the host's bytes with JSON escaping, without becoming strings first, so a record costs
// a few allocations rather than one per field.
import { log, LogLevelValues } from "@solo-io/proxy-runtime";
import { HeaderPairs } from "./headers";
import { callForeignFunction, findProperty, getPropertyInt, NOT_FOUND, OK, propertyPath, resultLen, resultPtr } from "./host";
import { Report } from "./report";

const SINK = String.UTF8.encode("wasmesh_access_log");

const METHOD = String.UTF8.encode(":method");
const PATH = String.UTF8.encode(":path");
const ORIGINAL_PATH = String.UTF8.encode("x-envoy-original-path");
const AUTHORITY = String.UTF8.encode(":authority");
const USER_AGENT = String.UTF8.encode("user-agent");
const FORWARDED_FOR = String.UTF8.encode("x-forwarded-for");
const REQUEST_ID = String.UTF8.encode("x-request-id");

const P_PROTOCOL = propertyPath(["request", "protocol"]);
const P_REQUEST_SIZE = propertyPath(["request", "size"]);
const P_RESPONSE_SIZE = propertyPath(["response", "size"]);
const P_UPSTREAM_ADDRESS = propertyPath(["upstream", "address"]);
const P_CLUSTER = propertyPath(["xds", "cluster_name"]);
const P_CLUSTER_LEGACY = propertyPath(["cluster_name"]);
const P_SOURCE_ADDRESS = propertyPath(["source", "address"]);
const P_DESTINATION_ADDRESS = propertyPath(["destination", "address"]);

/** A JSON object written as UTF-8 into a growable buffer that is reused for every record. */
class JsonWriter {
  private buffer: ArrayBuffer = new ArrayBuffer(2048);
  private at: usize = 0;

  get ptr(): usize {
    return changetype<usize>(this.buffer);
  }
  get length(): usize {
    return this.at;
  }

  begin(): void {
    this.at = 0;
  }

  /** Closes the object: every key was written with a leading comma, and the first one becomes the '{'. */
  end(): void {
    this.byte(0x7d);
    store<u8>(changetype<usize>(this.buffer), 0x7b);
  }

  private reserve(n: usize): void {
    const size = <usize>this.buffer.byteLength;
    if (this.at + n <= size) return;
    let next = size * 2;
    while (next < this.at + n) next *= 2;
    const grown = new ArrayBuffer(<i32>next);
    memory.copy(changetype<usize>(grown), changetype<usize>(this.buffer), this.at);
    this.buffer = grown;
  }

  private byte(b: u32): void {
    this.reserve(1);
    store<u8>(changetype<usize>(this.buffer) + this.at, <u8>b);
    this.at++;
  }

  /** ASCII text without escaping (keys and numbers). */
  private ascii(s: string): void {
    const n = <usize>s.length;
    this.reserve(n);
    const p = changetype<usize>(this.buffer) + this.at;
    for (let i: usize = 0; i < n; i++) store<u8>(p + i, <u8>s.charCodeAt(<i32>i));
    this.at += n;
  }

  /** A key made by field(): `,"name":` as bytes, copied in one go. */
  private key(name: ArrayBuffer): void {
    const n = <usize>name.byteLength;
    this.reserve(n);
    memory.copy(changetype<usize>(this.buffer) + this.at, changetype<usize>(name), n);
    this.at += n;
  }

  null(name: ArrayBuffer): void {
    this.key(name);
    this.reserve(4);
    store<u32>(changetype<usize>(this.buffer) + this.at, 0x6c6c756e); // "null"
    this.at += 4;
  }

  num(name: ArrayBuffer, value: i64): void {
    this.key(name);
    if (value >= 0 && value < 10) {
      this.byte(<u32>(0x30 + value));
      return;
    }
    this.ascii(value.toString());
  }

  /** A string field from UTF-8 bytes: escaped, and invalid UTF-8 replaced by U+FFFD so the record stays valid. */
  bytes(name: ArrayBuffer, ptr: usize, len: usize): void {
    this.key(name);
    this.reserve(len * 6 + 2);
    store<u8>(changetype<usize>(this.buffer) + this.at, 0x22);
    this.at++;
    let out = changetype<usize>(this.buffer) + this.at;
    const start = out;
    let i: usize = 0;
    while (i < len) {
      const c = <u32>load<u8>(ptr + i);
      if (c - 0x20 < 0x60 && c != 0x22 && c != 0x5c) {
        store<u8>(out++, <u8>c);
        i++;
        continue;
      }
      if (c < 0x80) {
        store<u8>(out++, 0x5c);
        if (c == 0x22 || c == 0x5c) store<u8>(out++, <u8>c);
        else if (c == 0x0a) store<u8>(out++, 0x6e);
        else if (c == 0x0d) store<u8>(out++, 0x72);
        else if (c == 0x09) store<u8>(out++, 0x74);
        else {
          store<u8>(out++, 0x75);
          store<u8>(out++, 0x30);
          store<u8>(out++, 0x30);
          store<u8>(out++, <u8>(0x30 + (c >> 4)));
          store<u8>(out++, <u8>((c & 15) < 10 ? 0x30 + (c & 15) : 0x57 + (c & 15)));
        }
        i++;
        continue;
      }
      const n = utf8SequenceLength(ptr + i, len - i);
      if (n == 0) {
        // U+FFFD
        store<u8>(out++, 0xef);
        store<u8>(out++, 0xbf);
        store<u8>(out++, 0xbd);
        i++;
        continue;
      }
      memory.copy(out, ptr + i, n);
      out += n;
      i += n;
    }
    store<u8>(out, 0x22);
    this.at += out - start + 1;
  }

  str(name: ArrayBuffer, value: string | null): void {
    if (value === null) return this.null(name);
    const bytes = String.UTF8.encode(value);
    this.bytes(name, changetype<usize>(bytes), <usize>bytes.byteLength);
  }

  /** A property's bytes as a string field (null when the host has none). */
  property(name: ArrayBuffer, path: ArrayBuffer): void {
    // Copied from where the host put them (findProperty), before any other host call.
    if (findProperty(path)) this.bytes(name, resultPtr, resultLen);
    else this.null(name);
  }

  /** A header's value as a string field (null when absent). */
  header(name: ArrayBuffer, headers: HeaderPairs, header: ArrayBuffer): void {
    if (headers.find(header)) this.bytes(name, headers.valuePtr, headers.valueLen);
    else this.null(name);
  }

  /** ms since the epoch as RFC 3339 UTC with milliseconds (2024-05-01T12:00:00.123Z). */
  time(name: ArrayBuffer, epochMs: i64): void {
    this.key(name);
    this.byte(0x22);
    if (epochMs < 0) epochMs = 0;
    const days = epochMs / 86400000;
    const msOfDay = epochMs % 86400000;
    // Civil date from days since 1970-01-01 (proleptic Gregorian, in eras of 400 years).
    const z = days + 719468;
    const era = z / 146097;
    const doe = z - era * 146097;
    const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const mp = (5 * doy + 2) / 153;
    const day = doy - (153 * mp + 2) / 5 + 1;
    const month = mp < 10 ? mp + 3 : mp - 9;
    const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    this.digits(year, 4);
    this.byte(0x2d);
    this.digits(month, 2);
    this.byte(0x2d);
    this.digits(day, 2);
    this.byte(0x54);
    this.digits(msOfDay / 3600000, 2);
    this.byte(0x3a);
    this.digits((msOfDay / 60000) % 60, 2);
    this.byte(0x3a);
    this.digits((msOfDay / 1000) % 60, 2);
    this.byte(0x2e);
    this.digits(msOfDay % 1000, 3);
    this.byte(0x5a);
    this.byte(0x22);
  }

  private digits(v: i64, width: i32): void {
    this.reserve(<usize>width);
    const p = changetype<usize>(this.buffer) + this.at;
    for (let i = width - 1; i >= 0; i--) {
      store<u8>(p + <usize>i, <u8>(0x30 + v % 10));
      v /= 10;
    }
    this.at += <usize>width;
  }
}

/** Length of the valid UTF-8 sequence at `p` (2-4 bytes), or 0 when the bytes there are not one. */
function utf8SequenceLength(p: usize, avail: usize): usize {
  const c = <u32>load<u8>(p);
  let n: usize;
  let min: u32;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    min = 0x10000;
  } else return 0;
  if (avail < n) return 0;
  let cp: u32 = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
  for (let i: usize = 1; i < n; i++) {
    const b = <u32>load<u8>(p + i);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

const writer = new JsonWriter();

/** `,"name":` as bytes (JsonWriter.end turns the first comma into the opening brace). */
function field(name: string): ArrayBuffer {
  return String.UTF8.encode(",\"" + name + "\":");
}

const F_START_TIME = field("start_time");
const F_METHOD = field("method");
const F_PATH = field("path");
const F_PROTOCOL = field("protocol");
const F_RESPONSE_CODE = field("response_code");
const F_RESPONSE_FLAGS = field("response_flags");
const F_BYTES_RECEIVED = field("bytes_received");
const F_BYTES_SENT = field("bytes_sent");
const F_DURATION = field("duration");
const F_UPSTREAM_HOST = field("upstream_host");
const F_UPSTREAM_CLUSTER = field("upstream_cluster");
const F_FORWARDED_FOR = field("x_forwarded_for");
const F_USER_AGENT = field("user_agent");
const F_REQUEST_ID = field("request_id");
const F_AUTHORITY = field("authority");
const F_REMOTE_ADDRESS = field("downstream_remote_address");
const F_LOCAL_ADDRESS = field("downstream_local_address");
const F_REPORTER = field("reporter");
const F_SOURCE_WORKLOAD = field("source_workload");
const F_SOURCE_NAMESPACE = field("source_namespace");
const F_SOURCE_APP = field("source_app");
const F_SOURCE_VERSION = field("source_version");
const F_SOURCE_PRINCIPAL = field("source_principal");
const F_DESTINATION_WORKLOAD = field("destination_workload");
const F_DESTINATION_NAMESPACE = field("destination_namespace");
const F_DESTINATION_APP = field("destination_app");
const F_DESTINATION_VERSION = field("destination_version");
const F_DESTINATION_PRINCIPAL = field("destination_principal");
const F_DESTINATION_SERVICE = field("destination_service");
const F_DESTINATION_SERVICE_NAME = field("destination_service_name");
const F_REQUEST_PROTOCOL = field("request_protocol");
const F_GRPC_STATUS = field("grpc_status");
const F_SECURITY_POLICY = field("connection_security_policy");
const F_TRACE_ID = field("trace_id");
const F_SPAN_ID = field("span_id");

/** Facts the stream knows that the host cannot tell at on_log time. */
export class LogContext {
  startNanos: u64 = 0;
  traceId: string = "";
  spanId: string = "";
}

/**
 * Writes the record for `r` and hands it to the host. Returns the foreign function's status; on
 * NotFound (no sink in this host) the record is logged at info level instead, and OK is returned.
 */
export function emitRecord(r: Report, c: LogContext, headers: HeaderPairs): u32 {
  const w = writer;
  w.begin();
  w.time(F_START_TIME, <i64>(c.startNanos / 1000000));
  w.header(F_METHOD, headers, METHOD);
  if (headers.find(ORIGINAL_PATH)) w.header(F_PATH, headers, ORIGINAL_PATH);
  else w.header(F_PATH, headers, PATH);
  w.property(F_PROTOCOL, P_PROTOCOL);
  w.num(F_RESPONSE_CODE, r.responseCode);
  w.str(F_RESPONSE_FLAGS, r.responseFlags);
  w.num(F_BYTES_RECEIVED, getPropertyInt(P_REQUEST_SIZE, 0));
  w.num(F_BYTES_SENT, getPropertyInt(P_RESPONSE_SIZE, 0));
  w.num(F_DURATION, <i64>r.durationMs);
  w.property(F_UPSTREAM_HOST, P_UPSTREAM_ADDRESS);
  if (findProperty(P_CLUSTER)) w.bytes(F_UPSTREAM_CLUSTER, resultPtr, resultLen);
  else w.property(F_UPSTREAM_CLUSTER, P_CLUSTER_LEGACY);
  w.header(F_FORWARDED_FOR, headers, FORWARDED_FOR);
  w.header(F_USER_AGENT, headers, USER_AGENT);
  w.header(F_REQUEST_ID, headers, REQUEST_ID);
  w.header(F_AUTHORITY, headers, AUTHORITY);
  w.property(F_REMOTE_ADDRESS, P_SOURCE_ADDRESS);
  w.property(F_LOCAL_ADDRESS, P_DESTINATION_ADDRESS);
  w.str(F_REPORTER, r.reporter);
  w.str(F_SOURCE_WORKLOAD, r.source.name);
  w.str(F_SOURCE_NAMESPACE, r.source.namespace);
  w.str(F_SOURCE_APP, r.source.app);
  w.str(F_SOURCE_VERSION, r.source.version);
  w.str(F_SOURCE_PRINCIPAL, r.sourcePrincipal);
  w.str(F_DESTINATION_WORKLOAD, r.destination.name);
  w.str(F_DESTINATION_NAMESPACE, r.destination.namespace);
  w.str(F_DESTINATION_APP, r.destination.app);
  w.str(F_DESTINATION_VERSION, r.destination.version);
  w.str(F_DESTINATION_PRINCIPAL, r.destinationPrincipal);
  w.str(F_DESTINATION_SERVICE, r.destinationService);
  w.str(F_DESTINATION_SERVICE_NAME, r.destinationServiceName);
  w.str(F_REQUEST_PROTOCOL, r.requestProtocol);
  w.str(F_GRPC_STATUS, r.grpcStatus.length > 0 ? r.grpcStatus : null);
  w.str(F_SECURITY_POLICY, r.connectionSecurityPolicy);
  w.str(F_TRACE_ID, c.traceId.length > 0 ? c.traceId : null);
  w.str(F_SPAN_ID, c.spanId.length > 0 ? c.spanId : null);
  w.end();
  const status = callForeignFunction(SINK, w.ptr, w.length);
  if (status != NOT_FOUND) return status;
  log(LogLevelValues.info, "access log: " + String.UTF8.decodeUnsafe(w.ptr, w.length));
  return OK;
}
