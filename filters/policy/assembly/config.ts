// Configuration: parses the plugin configuration (JSON) and compiles it into the structures the
// request path uses (authz.ts, ratelimit.ts): patterns pre-split, CIDRs as integers, header names
// lowercased and encoded, metrics defined. Every error names the field, like
//   policies[0].rules[0].from[0].source.ipBlocks[1]: "10.0.0.0/33" is not a valid CIDR
// Nothing here aborts on bad input.
import { Checker, JKind, JValue, firstUnknown, parseJson } from "../../common/assembly/json";
import { Cidr, StringMatcher, parseCidr, parseDecimal } from "./match";
import { Action, Attr, AuthzConfig, Cond, Policy, Rule } from "./authz";
import { Bucket, DescriptorKind } from "./ratelimit";
import { Counter, labelValue, propertyPath } from "./host";
import { GlobalRateLimit, compileGlobal } from "./global-ratelimit";

export class PolicyConfig {
  authz: AuthzConfig = new AuthzConfig();
  buckets: Bucket[] = [];
  /** The rate-limit service to ask after the buckets (global-ratelimit.ts); null: none. */
  global: GlobalRateLimit | null = null;
}

export class ConfigResult {
  config: PolicyConfig | null = null;
  error: string = "";
}

const DECISIONS = "policy_authz_decisions_total";

export function compileConfig(text: string): ConfigResult {
  const result = new ConfigResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    result.error = "invalid JSON at line " + parsed.line.toString() + ", column " + parsed.column.toString() + ": " + parsed.message;
    return result;
  }
  const c = new Compiler(text);
  const config = c.compile(root);
  if (c.failed) result.error = c.error;
  else result.config = config;
  return result;
}

const TOP_KEYS: string[] = ["policies", "rateLimits", "globalRateLimit"];
const POLICY_KEYS: string[] = ["name", "namespace", "action", "rules"];
const RULE_KEYS: string[] = ["from", "to", "when"];
const FROM_KEYS: string[] = ["source"];
const TO_KEYS: string[] = ["operation"];
const SOURCE_KEYS: string[] = [
  "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces",
  "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks",
];
const OPERATION_KEYS: string[] = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"];
const WHEN_KEYS: string[] = ["key", "values", "notValues"];
const BUCKET_KEYS: string[] = ["name", "descriptor", "maxTokens", "tokensPerFill", "fillIntervalMs"];
const DESCRIPTOR_KEYS: string[] = ["header", "sourcePrincipal", "pathPrefix", "global"];

/** How the values of a field are compiled. */
const enum ValueType {
  Pattern = 0, // Istio string pattern
  PatternLower = 1, // pattern, case-insensitive (hosts)
  Cidr = 2,
  Port = 3,
}

class Compiler extends Checker {
  constructor(text: string) {
    super(text);
  }

  /** v is an object with only known members (`<path>: unknown field "k" (expected one of a, b)`). */
  fields(v: JValue, path: string, allowed: string[]): bool {
    if (!this.is(v, JKind.Object, path)) return false;
    const i = firstUnknown(v, allowed);
    if (i >= 0) {
      this.fail(path, "unknown field \"" + v.keys[i] + "\" (expected one of " + allowed.join(", ") + ")");
      return false;
    }
    return this.noDuplicates(v, path);
  }

  compile(root: JValue): PolicyConfig {
    const config = new PolicyConfig();
    if (!this.fields(root, "", TOP_KEYS)) return config;
    const policies = this.array(root.get("policies"), "policies");
    const authz = config.authz;
    const seen = new Set<string>();
    for (let i = 0; i < policies.length && !this.failed; i++) {
      const path = "policies[" + i.toString() + "]";
      const p = this.policy(policies[i], path);
      if (p === null) break;
      if (seen.has(p.id)) {
        this.fail(path, "policy \"" + p.id + "\" is listed twice");
        break;
      }
      seen.add(p.id);
      if (p.action == Action.Deny) authz.deny.push(p);
      else if (p.action == Action.Audit) authz.audit.push(p);
      else authz.allow.push(p);
    }
    const buckets = this.array(root.get("rateLimits"), "rateLimits");
    const names = new Set<string>();
    for (let i = 0; i < buckets.length && !this.failed; i++) {
      const path = "rateLimits[" + i.toString() + "]";
      const b = this.bucket(buckets[i], path);
      if (b === null) break;
      if (names.has(b.name)) {
        this.fail(path + ".name", "bucket \"" + b.name + "\" is listed twice");
        break;
      }
      names.add(b.name);
      config.buckets.push(b);
    }
    const global = root.get("globalRateLimit");
    if (global !== null && global.kind != JKind.Null && !this.failed) config.global = compileGlobal(this, global, "globalRateLimit");
    if (this.failed) return config;
    // Metrics last: nothing is defined for a configuration that is rejected.
    for (let i = 0; i < authz.deny.length; i++) defineDecision(authz.deny[i], "deny");
    for (let i = 0; i < authz.audit.length; i++) defineDecision(authz.audit[i], "audit");
    for (let i = 0; i < authz.allow.length; i++) defineDecision(authz.allow[i], "allow");
    authz.allowedByDefault = new Counter(DECISIONS + "{decision=\"allow\",policy=\"none\"}");
    authz.deniedByDefault = new Counter(DECISIONS + "{decision=\"deny\",policy=\"none\"}");
    for (let i = 0; i < config.buckets.length; i++) {
      const b = config.buckets[i];
      b.ok = new Counter("policy_ratelimit_total{bucket=" + labelValue(b.name) + ",result=\"ok\"}");
      b.over = new Counter("policy_ratelimit_total{bucket=" + labelValue(b.name) + ",result=\"over\"}");
    }
    return config;
  }

  policy(v: JValue, path: string): Policy | null {
    if (!this.fields(v, path, POLICY_KEYS)) return null;
    const name = this.str(v.get("name"), path + ".name", true);
    if (this.failed) return null;
    if (name.length == 0) {
      this.fail(path + ".name", "must not be empty");
      return null;
    }
    const namespace = this.str(v.get("namespace"), path + ".namespace", false);
    const actionText = this.str(v.get("action"), path + ".action", false);
    if (this.failed) return null;
    let action = Action.Allow;
    if (actionText == "DENY") action = Action.Deny;
    else if (actionText == "AUDIT") action = Action.Audit;
    else if (actionText != "ALLOW" && actionText != "") {
      this.fail(path + ".action", "\"" + actionText + "\" is not one of ALLOW, DENY, AUDIT");
      return null;
    }
    const p = new Policy(namespace.length > 0 ? namespace + "." + name : name, action);
    const rules = this.array(v.get("rules"), path + ".rules");
    for (let i = 0; i < rules.length && !this.failed; i++) {
      const r = this.rule(rules[i], path + ".rules[" + i.toString() + "]");
      if (r !== null) p.rules.push(r);
    }
    return this.failed ? null : p;
  }

  rule(v: JValue, path: string): Rule | null {
    if (!this.fields(v, path, RULE_KEYS)) return null;
    const rule = new Rule();
    const from = this.array(v.get("from"), path + ".from");
    for (let i = 0; i < from.length && !this.failed; i++) {
      const fp = path + ".from[" + i.toString() + "]";
      const f = from[i];
      if (!this.fields(f, fp, FROM_KEYS)) break;
      const source = f.get("source");
      if (source === null) {
        this.fail(fp + ".source", "is required");
        break;
      }
      rule.from.push(this.source(source, fp + ".source"));
    }
    const to = this.array(v.get("to"), path + ".to");
    for (let i = 0; i < to.length && !this.failed; i++) {
      const tp = path + ".to[" + i.toString() + "]";
      const t = to[i];
      if (!this.fields(t, tp, TO_KEYS)) break;
      const operation = t.get("operation");
      if (operation === null) {
        this.fail(tp + ".operation", "is required");
        break;
      }
      rule.to.push(this.operation(operation, tp + ".operation"));
    }
    const when = this.array(v.get("when"), path + ".when");
    for (let i = 0; i < when.length && !this.failed; i++) {
      this.condition(when[i], path + ".when[" + i.toString() + "]", rule.when);
    }
    return this.failed ? null : rule;
  }

  source(v: JValue, path: string): Cond[] {
    const conds: Cond[] = [];
    if (!this.fields(v, path, SOURCE_KEYS)) return conds;
    this.field(v, path, "principals", Attr.Principal, false, ValueType.Pattern, conds);
    this.field(v, path, "notPrincipals", Attr.Principal, true, ValueType.Pattern, conds);
    this.requestAuth(v, path, "requestPrincipals", false, conds);
    this.requestAuth(v, path, "notRequestPrincipals", true, conds);
    this.field(v, path, "namespaces", Attr.Namespace, false, ValueType.Pattern, conds);
    this.field(v, path, "notNamespaces", Attr.Namespace, true, ValueType.Pattern, conds);
    this.field(v, path, "ipBlocks", Attr.SourceIp, false, ValueType.Cidr, conds);
    this.field(v, path, "notIpBlocks", Attr.SourceIp, true, ValueType.Cidr, conds);
    // Without trusted X-Forwarded-For hops the original client is the peer: same address as ipBlocks.
    this.field(v, path, "remoteIpBlocks", Attr.SourceIp, false, ValueType.Cidr, conds);
    this.field(v, path, "notRemoteIpBlocks", Attr.SourceIp, true, ValueType.Cidr, conds);
    return conds;
  }

  operation(v: JValue, path: string): Cond[] {
    const conds: Cond[] = [];
    if (!this.fields(v, path, OPERATION_KEYS)) return conds;
    this.field(v, path, "hosts", Attr.Host, false, ValueType.PatternLower, conds);
    this.field(v, path, "notHosts", Attr.Host, true, ValueType.PatternLower, conds);
    this.field(v, path, "ports", Attr.Port, false, ValueType.Port, conds);
    this.field(v, path, "notPorts", Attr.Port, true, ValueType.Port, conds);
    this.field(v, path, "methods", Attr.Method, false, ValueType.Pattern, conds);
    this.field(v, path, "notMethods", Attr.Method, true, ValueType.Pattern, conds);
    this.field(v, path, "paths", Attr.Path, false, ValueType.Pattern, conds);
    this.field(v, path, "notPaths", Attr.Path, true, ValueType.Pattern, conds);
    return conds;
  }

  /** A list field of a source or operation; an empty or absent list adds no condition. */
  field(v: JValue, path: string, key: string, attr: Attr, negate: bool, type: ValueType, conds: Cond[]): void {
    if (this.failed) return;
    const c = new Cond(attr, negate);
    if (this.values(v.get(key), path + "." + key, type, c)) conds.push(c);
  }

  /** requestPrincipals / notRequestPrincipals: request.auth.principal ("<iss>/<sub>"). */
  requestAuth(v: JValue, path: string, key: string, negate: bool, conds: Cond[]): void {
    if (this.failed) return;
    const c = new Cond(Attr.RequestAuth, negate);
    c.authPath = ["principal"];
    if (this.values(v.get(key), path + "." + key, ValueType.Pattern, c)) conds.push(c);
  }

  /** Compiles a list of values into c; false when the list is empty (or invalid). */
  values(list: JValue | null, path: string, type: ValueType, c: Cond): bool {
    const items = this.array(list, path);
    for (let i = 0; i < items.length; i++) {
      const ip = path + "[" + i.toString() + "]";
      const s = this.str(items[i], ip, true);
      if (this.failed) return false;
      if (s.length == 0) {
        this.fail(ip, "must not be empty");
        return false;
      }
      if (type == ValueType.Cidr) {
        const cidr = parseCidr(s);
        if (cidr === null) {
          this.fail(ip, "\"" + s + "\" is not a valid CIDR");
          return false;
        }
        c.cidrs.push(cidr);
      } else if (type == ValueType.Port) {
        const port = parseDecimal(s, 5);
        if (port < 0 || port > 65535) {
          this.fail(ip, "\"" + s + "\" is not a port number");
          return false;
        }
        c.ports.push(port);
      } else {
        c.strings.push(StringMatcher.parse(s, type == ValueType.PatternLower));
      }
    }
    return items.length > 0;
  }

  /** A `when` condition: up to two Conds (values, notValues), both must hold. */
  condition(v: JValue, path: string, out: Cond[]): void {
    if (!this.fields(v, path, WHEN_KEYS)) return;
    const key = this.str(v.get("key"), path + ".key", true);
    if (this.failed) return;
    const proto = this.conditionKey(key, path + ".key");
    if (proto === null) return;
    let any = false;
    for (let k = 0; k < 2 && !this.failed; k++) {
      const negate = k == 1;
      const c = new Cond(proto.attr, negate);
      c.name = proto.name;
      c.authPath = proto.authPath;
      const field = negate ? "notValues" : "values";
      if (this.values(v.get(field), path + "." + field, proto.type, c)) {
        out.push(c);
        any = true;
      }
    }
    if (!this.failed && !any) this.fail(path, "needs values or notValues");
  }

  conditionKey(key: string, path: string): ConditionKey | null {
    if (key == "source.ip" || key == "remote.ip") return new ConditionKey(Attr.SourceIp, ValueType.Cidr);
    if (key == "destination.ip") return new ConditionKey(Attr.DestinationIp, ValueType.Cidr);
    if (key == "destination.port") return new ConditionKey(Attr.Port, ValueType.Port);
    if (key == "source.principal") return new ConditionKey(Attr.Principal, ValueType.Pattern);
    if (key == "source.namespace") return new ConditionKey(Attr.Namespace, ValueType.Pattern);
    if (key == "request.auth.principal" || key == "request.auth.audiences" || key == "request.auth.presenter") {
      const k = new ConditionKey(Attr.RequestAuth, ValueType.Pattern);
      k.authPath = [key.substring("request.auth.".length)];
      return k;
    }
    if (key == "connection.sni") {
      const k = new ConditionKey(Attr.Property, ValueType.Pattern);
      k.name = propertyPath(["connection", "requested_server_name"]);
      return k;
    }
    if (key.startsWith("request.headers[")) {
      const names = this.brackets(key, "request.headers".length, path);
      if (names === null) return null;
      if (names.length != 1) {
        this.fail(path, "\"" + key + "\": use request.headers[<name>]");
        return null;
      }
      const k = new ConditionKey(Attr.Header, ValueType.Pattern);
      k.name = String.UTF8.encode(names[0].toLowerCase());
      return k;
    }
    if (key.startsWith("request.auth.claims[")) {
      const names = this.brackets(key, "request.auth.claims".length, path);
      if (names === null) return null;
      const k = new ConditionKey(Attr.RequestAuth, ValueType.Pattern);
      k.authPath = ["claims"];
      for (let i = 0; i < names.length; i++) k.authPath.push(names[i]);
      return k;
    }
    this.fail(path, "unsupported key \"" + key + "\" (supported: request.headers[<name>], source.ip, remote.ip, " +
      "source.namespace, source.principal, destination.ip, destination.port, connection.sni, " +
      "request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>])");
    return null;
  }

  /** "[a][b]" starting at `from` in key: the names, or null (after failing). */
  brackets(key: string, from: i32, path: string): string[] | null {
    const names: string[] = [];
    let i = from;
    const n = key.length;
    while (i < n) {
      if (key.charCodeAt(i) != 0x5b) break;
      const close = key.indexOf("]", i + 1);
      if (close < 0) break;
      const name = key.substring(i + 1, close);
      if (name.length == 0) break;
      names.push(name);
      i = close + 1;
    }
    if (i != n || names.length == 0) {
      this.fail(path, "\"" + key + "\" is malformed (expected names in square brackets, like request.headers[x-user])");
      return null;
    }
    return names;
  }

  bucket(v: JValue, path: string): Bucket | null {
    if (!this.fields(v, path, BUCKET_KEYS)) return null;
    const name = this.str(v.get("name"), path + ".name", true);
    if (this.failed) return null;
    if (name.length == 0) {
      this.fail(path + ".name", "must not be empty");
      return null;
    }
    const d = v.get("descriptor");
    const dp = path + ".descriptor";
    if (d === null) {
      this.fail(dp, "is required");
      return null;
    }
    if (!this.fields(d, dp, DESCRIPTOR_KEYS)) return null;
    if (d.keys.length != 1) {
      this.fail(dp, "must have exactly one of header, sourcePrincipal, pathPrefix, global");
      return null;
    }
    const which = d.keys[0];
    const value = d.items[0];
    let b: Bucket;
    if (which == "header") {
      const header = this.str(value, dp + ".header", true).toLowerCase();
      if (this.failed) return null;
      if (header.length == 0) {
        this.fail(dp + ".header", "must not be empty");
        return null;
      }
      b = new Bucket(name, DescriptorKind.Header);
      b.arg = header;
      b.argBytes = String.UTF8.encode(header);
    } else if (which == "pathPrefix") {
      const prefix = this.str(value, dp + ".pathPrefix", true);
      if (this.failed) return null;
      if (!prefix.startsWith("/")) {
        this.fail(dp + ".pathPrefix", "must start with '/'");
        return null;
      }
      b = new Bucket(name, DescriptorKind.PathPrefix);
      b.arg = prefix;
    } else {
      if (value.kind != JKind.Bool || !value.boolean) {
        this.fail(dp + "." + which, "must be true");
        return null;
      }
      b = new Bucket(name, which == "global" ? DescriptorKind.Global : DescriptorKind.SourcePrincipal);
    }
    b.maxTokens = <i64>this.int(v.get("maxTokens"), path + ".maxTokens", 1, 1e9);
    b.tokensPerFill = <i64>this.int(v.get("tokensPerFill"), path + ".tokensPerFill", 1, 1e9, <f64>b.maxTokens);
    b.fillIntervalNs = <u64>this.int(v.get("fillIntervalMs"), path + ".fillIntervalMs", 1, 86400000) * 1_000_000;
    return this.failed ? null : b;
  }
}

class ConditionKey {
  attr: Attr;
  type: ValueType;
  name: ArrayBuffer = new ArrayBuffer(0);
  authPath: string[] = [];
  constructor(attr: Attr, type: ValueType) {
    this.attr = attr;
    this.type = type;
  }
}

function defineDecision(p: Policy, decision: string): void {
  p.counter = new Counter(DECISIONS + "{decision=\"" + decision + "\",policy=" + labelValue(p.id) + "}");
}
