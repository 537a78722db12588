// Configuration of the fault filter (see ../README.md and schemas/json/filters/fault.schema.json):
//
//   { "rules": [ { "hosts": [...], "match": [...], "delay": {...}, "abort": {...} }, ... ] }
//
// The shared JSON reader (filters/common) reads the text; this file checks the shape and builds the
// rules. Every error names the field path ("rules[0].abort.httpStatus: ..."), and nothing here aborts.
import { Checker, JKind, JValue, absent, describe, itemPath, memberPath, parseJson } from "../../common/assembly/json";

/** How a string condition compares. */
export const COND_EXACT: i32 = 0;
export const COND_PREFIX: i32 = 1;
/** `{}`: the header is present, whatever its value. */
export const COND_PRESENT: i32 = 2;

export class StringCond {
  kind: i32;
  value: string;
  /** Compare case-insensitively (uri with ignoreUriCase; `value` is then lowercased). */
  ignoreCase: bool = false;

  constructor(kind: i32, value: string) {
    this.kind = kind;
    this.value = value;
  }
}

export class HeaderCond {
  name: string;
  cond: StringCond;

  constructor(name: string, cond: StringCond) {
    this.name = name;
    this.cond = cond;
  }
}

/** One entry of a rule's `match` list: every condition given must hold. */
export class MatchSpec {
  uri: StringCond | null = null;
  method: StringCond | null = null;
  headers: HeaderCond[] = [];
  withoutHeaders: HeaderCond[] = [];
}

export class DelaySpec {
  fixedDelayMs: u32 = 0;
  percentage: f64 = 100;
}

export class AbortSpec {
  /** HTTP status of the reply (200..599); with a gRPC status it is 200. */
  httpStatus: u32 = 0;
  /** gRPC status code 0..16, or -1 for a plain HTTP abort. */
  grpcStatus: i32 = -1;
  percentage: f64 = 100;
}

export class Rule {
  /** Lowercased host names and "*.suffix" patterns; empty means every host. */
  hosts: string[] = [];
  /** Alternatives (any one may match); empty means every request. */
  match: MatchSpec[] = [];
  delay: DelaySpec | null = null;
  abort: AbortSpec | null = null;
}

export class FaultConfig {
  rules: Rule[] = [];
}

export class ConfigResult {
  config: FaultConfig | null = null;
  error: string = "";
}

/** Largest delay: 2^31-1 ms, the longest a Node or Envoy timer handles. */
const MAX_DELAY_MS: f64 = 2147483647;

const GRPC_NAMES: string[] = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/** Parses and checks the plugin configuration. An empty text is an empty configuration (no rules). */
export function parseConfig(text: string): ConfigResult {
  const result = new ConfigResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    result.error = parsed.error;
    return result;
  }
  const d = new Decoder(text);
  const config = d.document(root);
  if (d.failed) result.error = d.error;
  else result.config = config;
  return result;
}

class Decoder extends Checker {
  constructor(text: string) {
    super(text);
  }

  document(v: JValue): FaultConfig {
    const config = new FaultConfig();
    if (!this.object(v, "", ["rules"])) return config;
    const rules = this.array(v.get("rules"), "rules", "an array of rules");
    for (let i = 0, n = rules.length; i < n && !this.failed; i++) {
      config.rules.push(this.rule(unchecked(rules[i]), itemPath("rules", i)));
    }
    return config;
  }

  rule(v: JValue, path: string): Rule {
    const rule = new Rule();
    if (!this.object(v, path, ["hosts", "match", "delay", "abort"])) return rule;
    const hosts = v.get("hosts");
    if (hosts !== null) rule.hosts = this.hosts(hosts, path + ".hosts");
    const match = this.array(v.get("match"), path + ".match", "an array of match conditions");
    for (let i = 0, n = match.length; i < n && !this.failed; i++) {
      rule.match.push(this.matchSpec(unchecked(match[i]), itemPath(path + ".match", i)));
    }
    const delay = v.get("delay");
    if (delay !== null && !this.failed) rule.delay = this.delay(delay, path + ".delay");
    const abort = v.get("abort");
    if (abort !== null && !this.failed) rule.abort = this.abort(abort, path + ".abort");
    return rule;
  }

  hosts(v: JValue, path: string): string[] {
    const out: string[] = [];
    if (!this.is(v, JKind.Array, path, "an array of host names")) return out;
    if (v.items.length == 0) {
      this.fail(path, "must not be empty (leave \"hosts\" out to match every host)");
      return out;
    }
    for (let i = 0, n = v.items.length; i < n; i++) {
      const item = unchecked(v.items[i]);
      const p = itemPath(path, i);
      if (!this.is(item, JKind.String, p)) return out;
      const host = item.text.toLowerCase();
      const problem = hostProblem(host);
      if (problem.length > 0) {
        this.fail(p, "invalid host \"" + item.text + "\": " + problem);
        return out;
      }
      out.push(host);
    }
    return out;
  }

  matchSpec(v: JValue, path: string): MatchSpec {
    const m = new MatchSpec();
    if (!this.object(v, path, ["uri", "method", "headers", "withoutHeaders", "ignoreUriCase"])) return m;
    const uri = v.get("uri");
    if (uri !== null) m.uri = this.stringCond(uri, path + ".uri", false);
    const method = v.get("method");
    if (method !== null && !this.failed) m.method = this.stringCond(method, path + ".method", false);
    const headers = v.get("headers");
    if (headers !== null && !this.failed) m.headers = this.headerConds(headers, path + ".headers");
    const without = v.get("withoutHeaders");
    if (without !== null && !this.failed) m.withoutHeaders = this.headerConds(without, path + ".withoutHeaders");
    const u = m.uri;
    if (this.bool(v.get("ignoreUriCase"), path + ".ignoreUriCase") && u !== null) {
      u.ignoreCase = true;
      u.value = u.value.toLowerCase();
    }
    return m;
  }

  headerConds(v: JValue, path: string): HeaderCond[] {
    const out: HeaderCond[] = [];
    if (!this.is(v, JKind.Object, path, "an object of header names to conditions")) return out;
    for (let i = 0, n = v.keys.length; i < n && !this.failed; i++) {
      const raw = unchecked(v.keys[i]);
      const name = raw.toLowerCase();
      const p = memberPath(path, raw);
      if (name.length == 0) {
        this.fail(p, "the header name is empty");
        return out;
      }
      for (let j = 0; j < out.length; j++) {
        if (unchecked(out[j]).name == name) {
          this.fail(p, "header \"" + name + "\" is listed twice");
          return out;
        }
      }
      const cond = this.stringCond(unchecked(v.items[i]), p, true);
      out.push(new HeaderCond(name, cond));
    }
    return out;
  }

  /** `{"exact": s}`, `{"prefix": s}`, `{"regex": s}` (refused), or `{}` where presence is allowed. */
  stringCond(v: JValue, path: string, allowPresence: bool): StringCond {
    const none = new StringCond(COND_PRESENT, "");
    if (!this.object(v, path, ["exact", "prefix", "regex"])) return none;
    if (v.keys.length == 0) {
      if (allowPresence) return none;
      this.fail(path, "give \"exact\" or \"prefix\"");
      return none;
    }
    if (v.keys.length > 1) {
      this.fail(path, "give exactly one of \"exact\" or \"prefix\"");
      return none;
    }
    const key = unchecked(v.keys[0]);
    if (key == "regex") {
      this.fail(memberPath(path, "regex"), "regex conditions are not supported by the fault filter (use exact or prefix)");
      return none;
    }
    const value = unchecked(v.items[0]);
    if (!this.is(value, JKind.String, memberPath(path, key))) return none;
    return new StringCond(key == "exact" ? COND_EXACT : COND_PREFIX, value.text);
  }

  delay(v: JValue, path: string): DelaySpec {
    const d = new DelaySpec();
    if (!this.object(v, path, ["fixedDelayMs", "percentage"])) return d;
    const ms = v.get("fixedDelayMs");
    if (absent(ms)) {
      this.fail(path + ".fixedDelayMs", "is required (the delay in milliseconds)");
      return d;
    }
    d.fixedDelayMs = <u32>this.int(ms, path + ".fixedDelayMs", 0, MAX_DELAY_MS);
    d.percentage = this.percentage(v, path);
    return d;
  }

  abort(v: JValue, path: string): AbortSpec {
    const a = new AbortSpec();
    if (!this.object(v, path, ["httpStatus", "grpcStatus", "percentage"])) return a;
    const http = v.get("httpStatus");
    const grpc = v.get("grpcStatus");
    if (absent(http) == absent(grpc)) {
      this.fail(path, "give exactly one of \"httpStatus\" or \"grpcStatus\"");
      return a;
    }
    if (!absent(http)) {
      a.httpStatus = <u32>this.int(http, path + ".httpStatus", 200, 599);
    } else {
      const g = <JValue>grpc;
      const code = grpcCode(g);
      if (code < 0) {
        this.fail(path + ".grpcStatus", "must be a gRPC status name (like \"UNAVAILABLE\") or a code from 0 to 16, not " + describe(g));
        return a;
      }
      a.grpcStatus = code;
      a.httpStatus = 200;
    }
    a.percentage = this.percentage(v, path);
    return a;
  }

  /** `percentage` of a delay or abort: a number from 0 to 100; 100 when left out. */
  percentage(v: JValue, path: string): f64 {
    return this.number(v.get("percentage"), path + ".percentage", 0, 100, 100);
  }
}

/** A gRPC status given by name ("UNAVAILABLE") or number (14); -1 when it is neither. */
function grpcCode(v: JValue): i32 {
  if (v.kind == JKind.Number) {
    const n = v.number;
    return n >= 0 && n <= 16 && Math.floor(n) == n ? <i32>n : -1;
  }
  if (v.kind != JKind.String) return -1;
  const name = v.text.toUpperCase();
  for (let i = 0, n = GRPC_NAMES.length; i < n; i++) {
    if (unchecked(GRPC_NAMES[i]) == name) return i;
  }
  return -1;
}

/** What is wrong with a host pattern ("" when nothing): a name, "*.suffix", "*", or "[ipv6]". */
function hostProblem(host: string): string {
  const n = host.length;
  if (n == 0) return "it is empty";
  if (host == "*") return "";
  // An IPv6 literal, as :authority carries it: "[::1]".
  if (host.startsWith("[") && host.endsWith("]") && n > 2) {
    for (let i = 1; i < n - 1; i++) {
      const c = host.charCodeAt(i);
      if (!((c >= 0x30 && c <= 0x3a) || (c >= 0x61 && c <= 0x66) || c == 0x2e)) return "invalid IPv6 literal";
    }
    return "";
  }
  let start = 0;
  if (host.startsWith("*.")) {
    if (n == 2) return "a wildcard needs a suffix, like *.example.com";
    start = 2;
  }
  for (let i = start; i < n; i++) {
    const c = host.charCodeAt(i);
    if (c == 0x2a) return "'*' is only allowed as the whole host or as a leading \"*.\"";
    if (c == 0x3a) return "give the host without a port";
    if (c <= 0x20 || c == 0x2f || c >= 0x7f) return "character '" + String.fromCharCode(c) + "' is not allowed";
  }
  return "";
}
