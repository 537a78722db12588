// Configuration of the fault filter (see ../README.md and schemas/json/filters/fault.schema.json):
//
//   { "rules": [ { "hosts": [...], "match": [...], "delay": {...}, "abort": {...} }, ... ] }
//
// json.ts reads the text; this file checks the shape and builds the rules. Every error names the
// field path ("rules[0].abort.httpStatus: ..."), and nothing here aborts.
import { JsonValue, JSON_ARRAY, JSON_NUMBER, JSON_OBJECT, JSON_STRING, kindName, parseJson } from "./json";

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
  if (parsed.error.length > 0) {
    result.error = parsed.error;
    return result;
  }
  const root = parsed.value;
  if (root === null) {
    result.config = new FaultConfig();
    return result;
  }
  const d = new Decoder();
  const config = d.document(root);
  if (d.failed) result.error = d.error;
  else result.config = config;
  return result;
}

class Decoder {
  failed: bool = false;
  error: string = "";

  fail(path: string, message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.error = (path.length > 0 ? path + ": " : "") + message;
  }

  /** Checks that `v` is an object whose members are all in `allowed`. */
  object(v: JsonValue, path: string, allowed: string[]): bool {
    if (v.kind != JSON_OBJECT) {
      this.fail(path, "must be an object, not " + kindName(v.kind));
      return false;
    }
    for (let i = 0, n = v.keys.length; i < n; i++) {
      const key = unchecked(v.keys[i]);
      if (!allowed.includes(key)) {
        this.fail(join(path, key), "unknown field (expected one of: " + allowed.join(", ") + ")");
        return false;
      }
    }
    return true;
  }

  document(v: JsonValue): FaultConfig {
    const config = new FaultConfig();
    if (!this.object(v, "", ["rules"])) return config;
    const rules = v.get("rules");
    if (rules === null) return config;
    if (rules.kind != JSON_ARRAY) {
      this.fail("rules", "must be an array of rules, not " + kindName(rules.kind));
      return config;
    }
    for (let i = 0, n = rules.items.length; i < n && !this.failed; i++) {
      config.rules.push(this.rule(unchecked(rules.items[i]), "rules[" + i.toString() + "]"));
    }
    return config;
  }

  rule(v: JsonValue, path: string): Rule {
    const rule = new Rule();
    if (!this.object(v, path, ["hosts", "match", "delay", "abort"])) return rule;
    const hosts = v.get("hosts");
    if (hosts !== null) rule.hosts = this.hosts(hosts, path + ".hosts");
    const match = v.get("match");
    if (match !== null && !this.failed) {
      const p = path + ".match";
      if (match.kind != JSON_ARRAY) {
        this.fail(p, "must be an array of match conditions, not " + kindName(match.kind));
      } else {
        for (let i = 0, n = match.items.length; i < n && !this.failed; i++) {
          rule.match.push(this.matchSpec(unchecked(match.items[i]), p + "[" + i.toString() + "]"));
        }
      }
    }
    const delay = v.get("delay");
    if (delay !== null && !this.failed) rule.delay = this.delay(delay, path + ".delay");
    const abort = v.get("abort");
    if (abort !== null && !this.failed) rule.abort = this.abort(abort, path + ".abort");
    return rule;
  }

  hosts(v: JsonValue, path: string): string[] {
    const out: string[] = [];
    if (v.kind != JSON_ARRAY) {
      this.fail(path, "must be an array of host names, not " + kindName(v.kind));
      return out;
    }
    if (v.items.length == 0) {
      this.fail(path, "must not be empty (leave \"hosts\" out to match every host)");
      return out;
    }
    for (let i = 0, n = v.items.length; i < n; i++) {
      const item = unchecked(v.items[i]);
      const p = path + "[" + i.toString() + "]";
      if (item.kind != JSON_STRING) {
        this.fail(p, "must be a string, not " + kindName(item.kind));
        return out;
      }
      const host = item.str.toLowerCase();
      const problem = hostProblem(host);
      if (problem.length > 0) {
        this.fail(p, "invalid host \"" + item.str + "\": " + problem);
        return out;
      }
      out.push(host);
    }
    return out;
  }

  matchSpec(v: JsonValue, path: string): MatchSpec {
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
    const ignore = v.get("ignoreUriCase");
    if (ignore !== null && !this.failed) {
      if (ignore.kind != 1 /* bool */) {
        this.fail(path + ".ignoreUriCase", "must be a boolean, not " + kindName(ignore.kind));
      } else if (ignore.boolValue) {
        const u = m.uri;
        if (u !== null) {
          u.ignoreCase = true;
          u.value = u.value.toLowerCase();
        }
      }
    }
    return m;
  }

  headerConds(v: JsonValue, path: string): HeaderCond[] {
    const out: HeaderCond[] = [];
    if (v.kind != JSON_OBJECT) {
      this.fail(path, "must be an object of header names to conditions, not " + kindName(v.kind));
      return out;
    }
    for (let i = 0, n = v.keys.length; i < n && !this.failed; i++) {
      const raw = unchecked(v.keys[i]);
      const name = raw.toLowerCase();
      const p = join(path, raw);
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
      const cond = this.stringCond(unchecked(v.values[i]), p, true);
      out.push(new HeaderCond(name, cond));
    }
    return out;
  }

  /** `{"exact": s}`, `{"prefix": s}`, `{"regex": s}` (refused), or `{}` where presence is allowed. */
  stringCond(v: JsonValue, path: string, allowPresence: bool): StringCond {
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
    const value = unchecked(v.values[0]);
    if (key == "regex") {
      this.fail(join(path, "regex"), "regex conditions are not supported by the fault filter (use exact or prefix)");
      return none;
    }
    if (value.kind != JSON_STRING) {
      this.fail(join(path, key), "must be a string, not " + kindName(value.kind));
      return none;
    }
    return new StringCond(key == "exact" ? COND_EXACT : COND_PREFIX, value.str);
  }

  delay(v: JsonValue, path: string): DelaySpec {
    const d = new DelaySpec();
    if (!this.object(v, path, ["fixedDelayMs", "percentage"])) return d;
    const ms = v.get("fixedDelayMs");
    if (ms === null) {
      this.fail(path + ".fixedDelayMs", "is required (the delay in milliseconds)");
      return d;
    }
    if (!isWhole(ms, 0, MAX_DELAY_MS)) {
      this.fail(path + ".fixedDelayMs", "must be an integer from 0 to 2147483647, not " + describe(ms));
      return d;
    }
    d.fixedDelayMs = <u32>ms.num;
    d.percentage = this.percentage(v, path);
    return d;
  }

  abort(v: JsonValue, path: string): AbortSpec {
    const a = new AbortSpec();
    if (!this.object(v, path, ["httpStatus", "grpcStatus", "percentage"])) return a;
    const http = v.get("httpStatus");
    const grpc = v.get("grpcStatus");
    if ((http === null) == (grpc === null)) {
      this.fail(path, "give exactly one of \"httpStatus\" or \"grpcStatus\"");
      return a;
    }
    if (http !== null) {
      if (!isWhole(http, 200, 599)) {
        this.fail(path + ".httpStatus", "must be an integer from 200 to 599, not " + describe(http));
        return a;
      }
      a.httpStatus = <u32>http.num;
    } else if (grpc !== null) {
      const code = grpcCode(grpc);
      if (code < 0) {
        this.fail(path + ".grpcStatus", "must be a gRPC status name (like \"UNAVAILABLE\") or a code from 0 to 16, not " + describe(grpc));
        return a;
      }
      a.grpcStatus = code;
      a.httpStatus = 200;
    }
    a.percentage = this.percentage(v, path);
    return a;
  }

  /** `percentage` of a delay or abort: a number from 0 to 100; 100 when left out. */
  percentage(v: JsonValue, path: string): f64 {
    const p = v.get("percentage");
    if (p === null) return 100;
    if (p.kind != JSON_NUMBER || !(p.num >= 0 && p.num <= 100)) {
      this.fail(path + ".percentage", "must be a number from 0 to 100, not " + describe(p));
      return 0;
    }
    return p.num;
  }
}

function isWhole(v: JsonValue, min: f64, max: f64): bool {
  return v.kind == JSON_NUMBER && v.num >= min && v.num <= max && Math.floor(v.num) == v.num;
}

/** A gRPC status given by name ("UNAVAILABLE") or number (14); -1 when it is neither. */
function grpcCode(v: JsonValue): i32 {
  if (v.kind == JSON_NUMBER) return isWhole(v, 0, 16) ? <i32>v.num : -1;
  if (v.kind != JSON_STRING) return -1;
  const name = v.str.toUpperCase();
  for (let i = 0, n = GRPC_NAMES.length; i < n; i++) {
    if (unchecked(GRPC_NAMES[i]) == name) return i;
  }
  return -1;
}

/** A value as it appears in an error message. */
function describe(v: JsonValue): string {
  if (v.kind == JSON_NUMBER) return v.num.toString();
  if (v.kind == JSON_STRING) return "\"" + v.str + "\"";
  return kindName(v.kind);
}

/** `path.key`, or `path["key"]` when the key is not a plain identifier (header names with dashes). */
function join(path: string, key: string): string {
  let plain = key.length > 0;
  for (let i = 0, n = key.length; i < n && plain; i++) {
    const c = key.charCodeAt(i);
    plain = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39 && i > 0) || c == 0x5f;
  }
  if (!plain) return path + "[\"" + key + "\"]";
  return path.length > 0 ? path + "." + key : key;
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
