// Validation of config documents: first the JSON Schemas in schemas/json/ (ajv, all errors), then
// the checks a schema cannot express (references between documents, weights, durations, regexes,
// module urls, duplicates). Every error names its document, the field (a JSON pointer) and why.
//
// A pure function of its inputs: documents are never modified, nothing is read but the schemas
// (once, at first use), and the same documents always give the same errors in the same order.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import {
  KINDS,
  describeDocument,
  formatResource,
  formatSource,
  isKind,
  isRecord,
  namespaceOf,
  resourceRef,
  type ConfigDocument,
  type ConfigError,
  type DestinationRule,
  type DestinationSpec,
  type Kind,
  type ServiceEntry,
  type ServicePort,
  type VirtualService,
  type WasmPlugin,
  type RequestAuthentication,
  type Gateway,
  type TLSSecret,
} from './documents.ts';
import { checkRequestAuthentication } from './translate/request-authn.ts';
import { checkGateway, checkVirtualServiceGateways } from './validate-gateway.ts';
import { tlsSecretProblems, tlsSecrets } from './tls-secret.ts';
import { checkTelemetryDocuments } from './telemetry/check.ts';
import { ServiceRegistry, hostMatches, resolveHost } from './translate/clusters.ts';
import { DURATION_PATTERN, parseDuration } from './translate/durations.ts';
import { regexProblem } from './translate/routes.ts';
import { translationProblems } from './translate/resource-problems.ts';
import { closest, didYouMean } from './suggest.ts';
import { rateLimitPolicyProblems, type RateLimitPolicy } from './translate/ratelimit.ts';
import { checkTargetRefs } from './translate/target-refs.ts';
import { pathToFileURL } from 'node:url';
import { installPath } from '../../schemas/repo-files.ts';

export type { ConfigError } from './documents.ts';

/** Kinds whose targetRefs name Gateways (translate/target-refs.ts); Telemetry has its own check. */
const TARGETING_KINDS: ReadonlySet<string> = new Set(['AuthorizationPolicy', 'RequestAuthentication', 'RateLimitPolicy', 'WasmPlugin']);

// ---------------------------------------------------------------------------------------------
// Schemas

export const SCHEMA_FILES: Readonly<Record<Kind, string>> = {
  ServiceEntry: 'service-entry.schema.json',
  WorkloadEntry: 'workload-entry.schema.json',
  VirtualService: 'virtual-service.schema.json',
  DestinationRule: 'destination-rule.schema.json',
  WasmPlugin: 'wasm-plugin.schema.json',
  PeerAuthentication: 'peer-authentication.schema.json',
  AuthorizationPolicy: 'authorization-policy.schema.json',
  RequestAuthentication: 'request-authentication.schema.json',
  RateLimitPolicy: 'rate-limit-policy.schema.json',
  Gateway: 'gateway.schema.json',
  TLSSecret: 'tls-secret.schema.json',
  Telemetry: 'telemetry.schema.json',
  MeshConfig: 'mesh-config.schema.json',
};

/** The installation's schemas/json/ (from source or from a build in dist/). */
const SCHEMA_DIR = pathToFileURL(installPath('schemas', 'json') + '/');

export type JsonSchema = Record<string, unknown> & { $defs?: Record<string, JsonSchema> };

const schemaCache = new Map<Kind, JsonSchema>();

/** The JSON Schema of a kind (parsed once; do not modify the returned object). */
export function schemaFor(kind: Kind): JsonSchema {
  let schema = schemaCache.get(kind);
  if (!schema) {
    schema = JSON.parse(readFileSync(new URL(SCHEMA_FILES[kind], SCHEMA_DIR), 'utf8')) as JsonSchema;
    schemaCache.set(kind, schema);
  }
  return schema;
}

let validators: Map<Kind, ValidateFunction> | undefined;

function validatorFor(kind: Kind): ValidateFunction {
  if (!validators) {
    // verbose: errors carry the offending data and schema, for messages. No useDefaults,
    // coerceTypes or removeAdditional: validation must never modify the documents.
    const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, strictRequired: false });
    validators = new Map(KINDS.map((k) => [k, ajv.compile(schemaFor(k))]));
  }
  return validators.get(kind)!;
}

// ---------------------------------------------------------------------------------------------
// Public API

export type ValidationMode = 'standalone' | 'managed';

export interface ValidateOptions {
  /**
   * standalone (default): a proxy configured from files; WasmPlugin urls must be file://.
   * managed: configured by the orchestrator; WasmPlugin urls must name uploaded modules
   * (module://<name>@<version>, digest:sha256:<hex>), which is all a managed proxy can load.
   */
  readonly mode?: ValidationMode;
}

export interface ValidationResult {
  readonly ok: boolean;
  readonly errors: readonly ConfigError[];
}

/** Validates documents as one set (references are resolved within the set). */
export function validateDocuments(documents: readonly ConfigDocument[], options: ValidateOptions = {}): ValidationResult {
  const mode = options.mode ?? 'standalone';
  const errors: ConfigError[] = [];
  const known: ConfigDocument[] = [];
  const valid = new Set<ConfigDocument>();

  for (const doc of documents) {
    const report = reporter(doc, errors);
    const value = doc.value;
    if (!isRecord(value)) {
      report('', `a document must be an object with apiVersion, kind, metadata and spec (got ${describeValue(value)})`);
      continue;
    }
    if (value.kind === undefined) {
      report('', 'missing required field "kind"');
      continue;
    }
    if (!isKind(value.kind)) {
      const guess = typeof value.kind === 'string' ? closest(value.kind, KINDS) : undefined;
      report('/kind', `unsupported kind ${JSON.stringify(value.kind)}: ${guess ? `did you mean ${JSON.stringify(guess)}? ` : ''}supported kinds are ${KINDS.join(', ')}`);
      continue;
    }
    const kind = value.kind;
    const validate = validatorFor(kind);
    known.push(doc);
    if (validate(value)) valid.add(doc);
    else for (const e of schemaErrors(validate.errors ?? [], kind)) report(e.path, e.message);
  }

  checkDuplicates(documents, errors);
  const index = new ReferenceIndex(documents);
  let secrets: Map<string, TLSSecret> | undefined;
  for (const doc of known) {
    const report = reporter(doc, errors);
    const value = doc.value as Record<string, unknown> & { kind: Kind };
    // Durations and regexes are checked wherever they sit, even in a document with schema errors
    // (the walk only looks at strings where the schema expects them); the checks of whole
    // resources below need the shape the schema guarantees.
    walkSchema(schemaFor(value.kind), value, '', (def, v, path) => {
      // A duration that does not match the pattern already has its schema error.
      if (def === 'Duration' && typeof v === 'string' && DURATION_PATTERN.test(v)) {
        try {
          parseDuration(v);
        } catch (err) {
          report(path, (err as Error).message);
        }
      } else if (def === 'Regex' && typeof v === 'string') {
        const problem = regexProblem(v);
        if (problem) report(path, problem);
      } else if (def === 'ClientTLSSettings' && isRecord(v)) {
        checkClientTls(v, path, report);
      }
    });
    if (!valid.has(doc)) continue;
    if (value.kind === 'VirtualService') checkVirtualService(value as unknown as VirtualService, index, report);
    if (value.kind === 'VirtualService') checkVirtualServiceGateways(value as unknown as VirtualService, documents, report);
    if (value.kind === 'Gateway') checkGateway(value as unknown as Gateway, report, (secrets ??= tlsSecrets(known.filter((d) => valid.has(d)))));
    if (value.kind === 'TLSSecret') for (const p of tlsSecretProblems(value.spec)) report(p.path, p.message);
    if (value.kind === 'WasmPlugin') checkWasmPlugin(value as unknown as WasmPlugin, mode, report);
    // What passes the schema but the filters cannot evaluate (translation would refuse it).
    for (const p of translationProblems(value)) report(p.path, p.message);
    if (value.kind === 'RequestAuthentication' && valid.has(doc)) checkRequestAuthentication(value as unknown as RequestAuthentication, report);
    if (value.kind === 'RateLimitPolicy') checkRateLimitPolicy(value as unknown as RateLimitPolicy, index, report);
    if (TARGETING_KINDS.has(value.kind)) checkTargetRefs(value.kind, value as unknown as Parameters<typeof checkTargetRefs>[1], documents, report);
  }
  // Telemetry and MeshConfig: provider references, access-log formats, filter expressions.
  checkTelemetryDocuments(known.filter((d) => valid.has(d)), (doc) => reporter(doc, errors));
  // Group by document, in input order (sort is stable: within a document, schema errors come first).
  const position = new Map(documents.map((d, i) => [d.source, i]));
  errors.sort((a, b) => (a.source ? position.get(a.source) ?? -1 : -1) - (b.source ? position.get(b.source) ?? -1 : -1));
  return { ok: errors.length === 0, errors };
}

/**
 * One line per error: `mesh.yaml#3 line 17 VirtualService default/reviews: spec.http[0].route[1].weight: <message>`
 * (the line of the field, when the document came from YAML text).
 */
export function formatErrors(errors: readonly ConfigError[]): string {
  return errors
    .map((e) => {
      const where = e.source ? [formatSource(e.source), e.line !== undefined ? `line ${e.line}` : '', e.resource].filter(Boolean).join(' ') : e.document;
      return e.path === '' ? `${where}: ${e.message}` : `${where}: ${formatPath(e.path)}: ${e.message}`;
    })
    .join('\n');
}

/** JSON pointer -> the dotted form people read: "/spec/http/0/route" -> "spec.http[0].route". */
export function formatPath(pointer: string): string {
  if (pointer === '') return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^(0|[1-9][0-9]*)$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reporting

type Report = (path: string, message: string) => void;

function reporter(doc: ConfigDocument, errors: ConfigError[]): Report {
  const resource = resourceLabel(doc.value);
  const document = resource ? `${resource} (${formatSource(doc.source)})` : describeDocument(doc);
  return (path, message) => {
    const at = doc.positionOf?.(path);
    const line = at?.line ?? doc.lineOf?.(path);
    errors.push({ document, path, message, source: doc.source, ...(resource ? { resource } : {}), ...(line !== undefined ? { line } : {}), ...(at !== undefined ? { column: at.column } : {}) });
  };
}

function resourceLabel(value: unknown): string | undefined {
  const ref = resourceRef(value);
  if (ref) return formatResource(ref);
  return isRecord(value) && typeof value.kind === 'string' ? value.kind : undefined;
}

function pointer(...segments: (string | number)[]): string {
  return segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

// ---------------------------------------------------------------------------------------------
// Schema errors -> messages

/** Enum values Istio has and we reject, with the reason (keyed by kind and field). */
const UNSUPPORTED_VALUES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  'AuthorizationPolicy /spec/action': {
    CUSTOM: 'action CUSTOM is not supported: there is no external authorization provider; use ALLOW, DENY or AUDIT',
  },
  'ServiceEntry /spec/resolution': {
    DNS_ROUND_ROBIN: 'resolution DNS_ROUND_ROBIN is not supported; use DNS',
  },
};

const PATTERN_MESSAGES: Readonly<Record<string, (data: unknown) => string>> = {
  Duration: (d) => `invalid duration ${JSON.stringify(d)}: use a number and a unit (h, m, s or ms), like 1.5s or 100ms`,
  Name: (d) => `invalid name ${JSON.stringify(d)}: use lowercase letters, digits, "-" and ".", starting and ending with a letter or digit`,
  Namespace: (d) => `invalid namespace ${JSON.stringify(d)}: use lowercase letters, digits and "-", starting and ending with a letter or digit`,
  Host: (d) => `invalid host ${JSON.stringify(d)}: use a DNS name, optionally with a leading "*." wildcard`,
  ExportTo: (d) => `invalid exportTo entry ${JSON.stringify(d)}: use ".", "*" or a namespace name`,
  sha256: (d) => `invalid sha256 ${JSON.stringify(d)}: must be 64 hexadecimal characters`,
  name: (d) => `invalid name ${JSON.stringify(d)}: use lowercase letters, digits and "-"`,
};

interface PathMessage {
  path: string;
  message: string;
}

/** Schema errors reported per document; past it, one line says how many more there were. */
const MAX_SCHEMA_ERRORS = 100;

function schemaErrors(errors: readonly ErrorObject[], kind: Kind): PathMessage[] {
  // oneOf failures come with one error per branch; keep only the oneOf error itself. Indexed by
  // path: a document with thousands of bad items has thousands of oneOf errors, and comparing each
  // error with each of them took seconds.
  const oneOfs = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    if (e.keyword !== 'oneOf') continue;
    const at = oneOfs.get(e.instancePath);
    if (at) at.push(e);
    else oneOfs.set(e.instancePath, [e]);
  }
  const insideOneOf = (e: ErrorObject): boolean => (oneOfs.get(e.instancePath) ?? []).some((o) => o !== e && e.schemaPath.startsWith(`${o.schemaPath}/`));
  const out: PathMessage[] = [];
  const seen = new Set<string>();
  let more = 0;
  for (const e of errors) {
    if (e.keyword === 'propertyNames' || insideOneOf(e)) continue;
    const pm = describeSchemaError(e, kind);
    const key = `${pm.path}\u0000${pm.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (out.length < MAX_SCHEMA_ERRORS) out.push(pm);
    else more++;
  }
  if (more > 0) out.push({ path: '', message: `${more} more schema error${more === 1 ? '' : 's'} in this document (the first ${MAX_SCHEMA_ERRORS} are listed)` });
  return out;
}

function describeSchemaError(e: ErrorObject, kind: Kind): PathMessage {
  const params = e.params as Record<string, unknown>;
  const at = e.instancePath;
  const data: unknown = e.data;
  const parent = (e.parentSchema ?? {}) as JsonSchema;
  if (e.propertyName !== undefined) {
    const expected = e.keyword === 'pattern' && /^\^\[1-9\]/.test(String(params.pattern)) ? ': must be a port number' : '';
    return { path: at + pointer(e.propertyName), message: `invalid key ${JSON.stringify(e.propertyName)}${expected}` };
  }
  switch (e.keyword) {
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const known = Object.keys((parent.properties as Record<string, unknown> | undefined) ?? {});
      return { path: at + pointer(field), message: `unsupported field ${JSON.stringify(field)}${didYouMean(field, known)}` };
    }
    case 'required':
      return { path: at, message: `missing required field ${JSON.stringify(String(params.missingProperty))}` };
    case 'type': {
      const type = String(params.type);
      const article = /^[aeiou]/.test(type) ? 'an' : 'a';
      return { path: at, message: `must be ${article} ${type} (got ${describeValue(data)})` };
    }
    case 'enum': {
      const special = UNSUPPORTED_VALUES[`${kind} ${at}`]?.[String(data)];
      if (special) return { path: at, message: special };
      const allowed = (params.allowedValues as unknown[]).map(String).join(', ');
      return { path: at, message: `must be one of ${allowed} (got ${describeValue(data)})` };
    }
    case 'const':
      return { path: at, message: `must be ${JSON.stringify(params.allowedValue)} (got ${describeValue(data)})` };
    case 'pattern': {
      const m = /\/([^/]+)(?:\/items)?\/pattern$/.exec(e.schemaPath);
      const describe = m ? PATTERN_MESSAGES[m[1]!] : undefined;
      return { path: at, message: describe ? describe(data) : `${describeValue(data)} does not match ${String(params.pattern)}` };
    }
    case 'minimum':
    case 'maximum':
      return { path: at, message: `must be ${String(params.comparison)} ${String(params.limit)} (got ${describeValue(data)})` };
    case 'minItems':
      return { path: at, message: `must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}` };
    case 'maxItems':
      return { path: at, message: `must have at most ${String(params.limit)} items` };
    case 'minLength':
      return { path: at, message: params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters long` };
    case 'maxLength':
      return { path: at, message: `must be at most ${String(params.limit)} characters long` };
    case 'minProperties':
    case 'maxProperties': {
      const names = Object.keys((parent.properties as Record<string, unknown> | undefined) ?? {}).join(', ');
      const exactly = parent.minProperties === 1 && parent.maxProperties === 1;
      return { path: at, message: `must have ${exactly ? 'exactly' : e.keyword === 'maxProperties' ? 'at most' : 'at least'} one of ${names}` };
    }
    case 'oneOf': {
      const branches = (e.schema as JsonSchema[] | undefined) ?? [];
      const names = branches.map((b) => (Array.isArray(b.required) && b.required.length === 1 ? String(b.required[0]) : undefined));
      if (names.every((n) => n !== undefined)) {
        const passing = params.passingSchemas as number[] | null;
        const present = passing ? passing.map((i) => names[i]).join(' and ') : undefined;
        return {
          path: at,
          message: present ? `must have only one of ${names.join(', ')} (found ${present})` : `must have exactly one of ${names.join(', ')}`,
        };
      }
      return { path: at, message: e.message ?? 'must match exactly one alternative' };
    }
    default:
      return { path: at, message: e.message ?? `fails ${e.keyword}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Walking a document with its schema

/**
 * Calls `visit` for every value of `value` that its schema declares through a `$ref` to a named
 * definition (`#/$defs/<name>`), with the value's JSON pointer. Follows properties, map values
 * (additionalProperties) and array items; values whose shape differs from the schema are skipped.
 */
export function walkSchema(
  root: JsonSchema,
  value: unknown,
  path: string,
  visit: (def: string, value: unknown, path: string) => void,
  schema: JsonSchema = root,
): void {
  const ref = schema.$ref;
  if (typeof ref === 'string' && ref.startsWith('#/$defs/')) {
    const def = ref.slice('#/$defs/'.length);
    visit(def, value, path);
    const target = root.$defs?.[def];
    if (target) walkSchema(root, value, path, visit, target);
  }
  if (Array.isArray(value)) {
    const items = schema.items;
    if (isRecord(items)) value.forEach((v, i) => walkSchema(root, v, path + pointer(i), visit, items as JsonSchema));
    return;
  }
  if (!isRecord(value)) return;
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const additional = schema.additionalProperties;
  for (const [k, v] of Object.entries(value)) {
    const sub = properties[k] ?? (isRecord(additional) ? (additional as JsonSchema) : undefined);
    if (sub) walkSchema(root, v, path + pointer(k), visit, sub);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks across documents

function checkDuplicates(documents: readonly ConfigDocument[], errors: ConfigError[]): void {
  const first = new Map<string, ConfigDocument>();
  for (const doc of documents) {
    const ref = resourceRef(doc.value);
    if (!ref || !isKind(ref.kind)) continue;
    const key = `${ref.kind}\u0000${ref.namespace}\u0000${ref.name}`;
    const earlier = first.get(key);
    if (earlier) {
      reporter(doc, errors)('', `duplicate: already defined in ${formatSource(earlier.source)}`);
    } else {
      first.set(key, doc);
    }
  }
}

/** What VirtualService destinations can refer to: every ServiceEntry host and DestinationRule subset in the set. */
class ReferenceIndex {
  readonly registry: ServiceRegistry;
  readonly #rules: { host: string; subsets: string[] }[] = [];

  constructor(documents: readonly ConfigDocument[]) {
    // Best effort over every plausible document, valid or not, so that one broken ServiceEntry
    // does not also make every route to it "unknown".
    const entries: ServiceEntry[] = [];
    for (const doc of documents) {
      const v = doc.value;
      if (!isRecord(v) || !isRecord(v.spec) || !resourceRef(v)) continue;
      const spec = v.spec;
      if (v.kind === 'ServiceEntry' && Array.isArray(spec.hosts)) {
        const hosts = spec.hosts.filter((h): h is string => typeof h === 'string');
        const ports = Array.isArray(spec.ports) ? spec.ports.filter((p) => isRecord(p) && typeof p.number === 'number') : [];
        entries.push({
          ...(v as unknown as ServiceEntry),
          spec: { ...(spec as unknown as ServiceEntry['spec']), hosts, ports: ports as unknown as ServicePort[] },
        });
      } else if (v.kind === 'DestinationRule' && typeof spec.host === 'string') {
        const rule = v as unknown as DestinationRule;
        const subsets = Array.isArray(spec.subsets)
          ? spec.subsets.filter((s) => isRecord(s) && typeof s.name === 'string').map((s) => (s as { name: string }).name)
          : [];
        this.#rules.push({ host: resolveHost(spec.host, namespaceOf(rule)), subsets });
      }
    }
    this.registry = new ServiceRegistry(entries);
  }

  /** Subsets defined for a (resolved) host, and whether any DestinationRule covers it. */
  subsets(host: string): { covered: boolean; names: string[] } {
    const rules = this.#rules.filter((r) => hostMatches(r.host, host));
    return { covered: rules.length > 0, names: [...new Set(rules.flatMap((r) => r.subsets))] };
  }
}

function checkVirtualService(vs: VirtualService, index: ReferenceIndex, report: Report): void {
  const namespace = namespaceOf(vs);
  (vs.spec.http ?? []).forEach((http, i) => {
    const base = pointer('spec', 'http', i);
    if (http.rewrite && http.redirect) report(base + pointer('rewrite'), 'rewrite cannot be combined with redirect');
    const route = http.route ?? [];
    if (route.length > 1) {
      const total = route.reduce((sum, d) => sum + (d.weight ?? 0), 0);
      if (total !== 100) report(base + pointer('route', route.length - 1, 'weight'), `weights add up to ${total}, not 100`);
    } else if (route.length === 1 && route[0]!.weight !== undefined && route[0]!.weight !== 0 && route[0]!.weight !== 100) {
      report(
        base + pointer('route', 0, 'weight'),
        `a single destination receives all traffic: weight must be 100 or left out (got ${route[0]!.weight})`,
      );
    }
    route.forEach((d, j) => checkDestination(d.destination, namespace, base + pointer('route', j, 'destination'), index, report));
    if (http.mirror) checkDestination(http.mirror, namespace, base + pointer('mirror'), index, report);
  });
  const hosts = vs.spec.hosts.map((h) => resolveHost(h, namespace));
  for (const kind of ['tcp', 'tls'] as const) {
    (vs.spec[kind] ?? []).forEach((rule, i) => {
      const base = pointer('spec', kind, i);
      const route = rule.route ?? [];
      checkWeights(route, base, report);
      route.forEach((d, j) => checkDestination(d.destination, namespace, base + pointer('route', j, 'destination'), index, report));
      (rule.match ?? []).forEach((m, j) => {
        (m.destinationSubnets ?? []).forEach((cidr, k) => {
          const problem = cidrProblem(cidr);
          if (problem) report(base + pointer('match', j, 'destinationSubnets', k), problem);
        });
        if (kind !== 'tls') return;
        // Istio: every SNI name must be within the VirtualService's hosts.
        ((m as { sniHosts?: string[] }).sniHosts ?? []).forEach((sni, k) => {
          const name = sni.toLowerCase();
          if (!hosts.some((h) => hostMatches(h, name) || hostMatches(name, h) || hostMatches(h, resolveHost(name, namespace)))) {
            report(base + pointer('match', j, 'sniHosts', k), `SNI host ${JSON.stringify(sni)} is not within the VirtualService's hosts (${vs.spec.hosts.join(', ')})`);
          }
        });
      });
    });
  }
}

function checkWeights(route: readonly { weight?: number }[], base: string, report: Report): void {
  if (route.length > 1) {
    const total = route.reduce((sum, d) => sum + (d.weight ?? 0), 0);
    if (total !== 100) report(base + pointer('route', route.length - 1, 'weight'), `weights add up to ${total}, not 100`);
  } else if (route.length === 1 && route[0]!.weight !== undefined && route[0]!.weight !== 0 && route[0]!.weight !== 100) {
    report(base + pointer('route', 0, 'weight'), `a single destination receives all connections: weight must be 100 or left out (got ${route[0]!.weight})`);
  }
}

/** Why a destinationSubnets entry is not an address or CIDR block, or undefined. */
function cidrProblem(text: string): string | undefined {
  const [address, bits, extra] = text.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return `${JSON.stringify(text)} is not an IP address or CIDR block (10.0.0.0/8, fd00::/8)`;
  if (bits !== undefined) {
    const n = Number(bits);
    const max = family === 4 ? 32 : 128;
    if (!/^[0-9]+$/.test(bits) || n > max) return `${JSON.stringify(text)}: the prefix length must be 0 to ${max}`;
  }
  return undefined;
}

function checkDestination(dest: DestinationSpec, namespace: string, at: string, index: ReferenceIndex, report: Report): void {
  const service = index.registry.lookup(dest.host, namespace);
  const host = service?.host ?? resolveHost(dest.host, namespace);
  if (!service && !dest.host.includes('.')) {
    report(
      at + pointer('host'),
      `unknown host ${JSON.stringify(dest.host)}: no ServiceEntry declares ${JSON.stringify(host)}; name a ServiceEntry host or a fully qualified name`,
    );
    return;
  }
  if (service) {
    const ports = service.entry.spec.ports.map((p) => p.number);
    if (dest.port && !ports.includes(dest.port.number)) {
      report(at + pointer('port', 'number'), `port ${dest.port.number} is not a port of ${host} (ports: ${ports.join(', ')})`);
    } else if (!dest.port && ports.length > 1) {
      report(at, `port is required: ${host} has more than one port (${ports.join(', ')})`);
    }
  }
  if (dest.subset !== undefined) {
    const { covered, names } = index.subsets(host);
    if (!names.includes(dest.subset)) {
      const known = covered ? ` (defined: ${names.length > 0 ? names.join(', ') : 'none'})` : '';
      report(at + pointer('subset'), `subset ${JSON.stringify(dest.subset)} is not defined in any DestinationRule for ${host}${known}`);
    }
  }
}

/** RateLimitPolicy past its schema (mesh/src/translate/ratelimit.ts): names, keys, the service's host and port. */
function checkRateLimitPolicy(policy: RateLimitPolicy, index: ReferenceIndex, report: Report): void {
  const known = (host: string, namespace: string) => {
    const service = index.registry.lookup(host, namespace);
    return service && { ports: service.entry.spec.ports.map((p) => p.number) };
  };
  for (const p of rateLimitPolicyProblems(policy, known)) report(p.path, p.message);
}

const DIGEST_URL = /^(?:digest:)?sha256:([A-Fa-f0-9]{64})$/;
/** A module uploaded to the orchestrator, by name and version: module://<name>@<version>. */
export const MODULE_URL = /^module:\/\/([A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9][A-Za-z0-9._+-]*)$/;

const TLS_FILES = ['caCertificates', 'clientCertificate', 'privateKey'] as const;

/** DestinationRule tls: MUTUAL needs its certificate and key; file fields are absolute paths and mean TLS. */
function checkClientTls(tls: Record<string, unknown>, at: string, report: Report): void {
  const mode = tls.mode;
  if (mode === 'MUTUAL') {
    for (const field of ['clientCertificate', 'privateKey'] as const) {
      if (tls[field] === undefined) report(at + pointer(field), `mode MUTUAL needs ${field} (the path of a PEM file on the proxy's host)`);
    }
  }
  for (const field of TLS_FILES) {
    const value = tls[field];
    if (value === undefined) continue;
    if (mode !== 'SIMPLE' && mode !== 'MUTUAL') report(at + pointer(field), `${field} applies to modes SIMPLE and MUTUAL only, not ${String(mode)}`);
    else if (field !== 'caCertificates' && mode !== 'MUTUAL') report(at + pointer(field), `${field} applies to mode MUTUAL only, not ${String(mode)}`);
    else if (typeof value === 'string' && !value.startsWith('/')) report(at + pointer(field), `${JSON.stringify(value)} is not an absolute path: give the file's full path on the proxy's host`);
  }
  if (tls.insecureSkipVerify !== undefined && mode !== 'SIMPLE' && mode !== 'MUTUAL') report(at + pointer('insecureSkipVerify'), `insecureSkipVerify applies to modes SIMPLE and MUTUAL only, not ${String(mode)}`);
}

function checkWasmPlugin(plugin: WasmPlugin, mode: ValidationMode, report: Report): void {
  const { url, sha256, canary } = plugin.spec;
  checkModuleUrl(url, sha256, pointer('spec', 'url'), pointer('spec', 'sha256'), mode, report);
  if (canary !== undefined) checkModuleUrl(canary.url, canary.sha256, pointer('spec', 'canary', 'url'), pointer('spec', 'canary', 'sha256'), mode, report);
  if (plugin.spec.type === 'NETWORK' && canary !== undefined) {
    // A canary splits streams by request id; a connection has none, and the rollout controller reads HTTP outcomes.
    report(pointer('spec', 'canary'), 'canary is not supported for type NETWORK (connections have no request id to split by): roll a network filter out by changing url');
  }
}

function checkModuleUrl(url: string, sha256: string | undefined, at: string, shaAt: string, mode: ValidationMode, report: Report): void {
  const supported =
    mode === 'standalone'
      ? 'only file:// urls (and, with an orchestrator, digests of uploaded modules) are supported'
      : 'only uploaded modules (module://<name>@<version> or digest:sha256:<hex>, uploaded with `wasmesh filter deploy`) are supported';
  if (url.startsWith('file://')) {
    if (url.length === 'file://'.length) report(at, 'file:// url has no path');
    // A managed proxy loads modules from the orchestrator only; the orchestrator serves what it owns
    // (uploads, the built-in filters), never a file a user names on its disk.
    else if (mode === 'managed') {
      report(
        at,
        'file:// modules cannot be served to managed proxies (they load modules from the orchestrator only): upload the module instead (`wasmesh filter deploy <module.wasm> --name NAME --version VERSION`) and use url module://NAME@VERSION',
      );
    }
    return;
  }
  if (url.startsWith('module://')) {
    if (!MODULE_URL.test(url)) report(at, 'invalid module url: expected module://<name>@<version> (as uploaded with `wasmesh filter deploy --name --version`)');
    else if (mode === 'standalone') report(at, 'module:// urls name modules uploaded to an orchestrator and need managed mode; in standalone mode use a file:// url');
    return;
  }
  if (/^(digest:)?sha256:/i.test(url)) {
    const m = DIGEST_URL.exec(url);
    if (!m) {
      report(at, 'invalid digest url: expected digest:sha256:<64 hexadecimal characters>');
    } else if (mode === 'standalone') {
      report(at, 'digest urls name modules uploaded to an orchestrator and need managed mode; in standalone mode use a file:// url');
    } else if (sha256 !== undefined && sha256.toLowerCase() !== m[1]!.toLowerCase()) {
      report(shaAt, 'sha256 does not match the digest in url');
    }
    return;
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1];
  report(
    at,
    scheme
      ? `${scheme.toLowerCase()}:// urls are not supported: ${supported}`
      : `url ${JSON.stringify(url)} has no scheme (Istio reads that as oci://), and oci:// is not supported: ${supported}`,
  );
}
