// Telemetry metrics overrides of Istio's standard metrics (a metric disabled, labels upserted with a
// CEL expression or removed), applied where the telemetry filter defines its series: the proxy's
// registry hands the filter a stand-in for every istio_* series (a define hook), and the stand-in
// records into the series the overrides make of it. The filter is unchanged and keeps caching its ids
// per label set; the stand-in reads the overrides of the current config on each call, so a changed
// Telemetry applies to the running VM without reloading it.
//
// Which side: the series' reporter label (source: the outbound side, Istio's CLIENT; destination: the
// inbound side, SERVER). Static overrides (disable, remove, a literal) resolve to one series once per
// config; an expression that reads the request is evaluated per call against the request whose
// on_log is running (the proxy names it around the filter chain's finish: `withRequest`), and its
// results are cached per distinct value set (bounded by the registry's module series bound).
import { MetricType, type Metric, type MetricsRegistry } from '../../../wasm/src/index.ts';
import { parseMetricName } from '../../../wasm/src/metrics/registry.ts';
import { compileValue, type CompiledValue } from '../../../mesh/src/telemetry/cel.ts';
import type { RequestLogFacts } from '../../../mesh/src/telemetry/facts.ts';
import type { MetricOverrideConfig, StandardMetric } from '../../../mesh/src/telemetry/proxy-telemetry.ts';

const FAMILY_METRIC: Readonly<Record<string, StandardMetric>> = {
  istio_requests_total: 'REQUEST_COUNT',
  istio_request_duration_milliseconds: 'REQUEST_DURATION',
  istio_request_bytes: 'REQUEST_SIZE',
  istio_response_bytes: 'RESPONSE_SIZE',
};

/** What a label becomes: removed, or the value of an expression (undefined value: "unknown", as Istio). */
type TagOp = { remove: true } | { value: CompiledValue; literal?: string };

interface Plan {
  disabled: boolean;
  /** The one series (no expression reads the request). */
  fixed: Metric | undefined;
  /** Labels after removals and literal upserts, and the expressions still to evaluate. */
  labels: [string, string][];
  dynamic: [string, CompiledValue][];
  series: Map<string, Metric | undefined>;
}

/** How many MetricOverrides (proxies in this process) have an expression that reads the request. */
let readersOfRequest = 0;

/** Whether the proxy needs to name the request around chain.finish() (else it skips the closure). */
export function metricsReadRequest(): boolean {
  return readersOfRequest > 0;
}

/** The request whose filters are finishing (set by the proxy around chain.finish()). */
let current: (() => RequestLogFacts) | undefined;
let currentFacts: RequestLogFacts | undefined;

/** Runs `fn` (the filter chain's finish) with `facts` as the request metric expressions read. */
export function withRequest(facts: () => RequestLogFacts, fn: () => void): void {
  const prev = current;
  const prevFacts = currentFacts;
  current = facts;
  currentFacts = undefined;
  try {
    fn();
  } finally {
    current = prev;
    currentFacts = prevFacts;
  }
}

function requestFacts(): RequestLogFacts | undefined {
  if (currentFacts === undefined && current !== undefined) currentFacts = current();
  return currentFacts;
}

const UNKNOWN = 'unknown';

class OverriddenMetric implements Metric {
  readonly type: MetricType;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly key: string;
  readonly #pairs: readonly (readonly [string, string])[];
  readonly #metric: StandardMetric;
  readonly #side: 'inbound' | 'outbound';
  readonly #owner: MetricOverrides;
  #plan: Plan | undefined;
  #generation = -1;

  constructor(owner: MetricOverrides, type: MetricType, name: string, pairs: readonly (readonly [string, string])[], fullName: string) {
    this.#owner = owner;
    this.type = type;
    this.name = name;
    this.#pairs = pairs;
    const labels: Record<string, string> = {};
    for (const [k, v] of pairs) labels[k] = v;
    this.labels = Object.freeze(labels);
    this.key = fullName;
    this.#metric = FAMILY_METRIC[name]!;
    this.#side = labels.reporter === 'destination' ? 'inbound' : 'outbound';
  }

  #current(): Plan {
    if (this.#plan === undefined || this.#generation !== this.#owner.generation) {
      this.#plan = this.#owner.plan(this.type, this.name, this.#pairs, this.#metric, this.#side);
      this.#generation = this.#owner.generation;
    }
    return this.#plan;
  }

  #target(): Metric | undefined {
    const p = this.#current();
    if (p.disabled) return undefined;
    if (p.fixed !== undefined || p.dynamic.length === 0) return p.fixed;
    const f = requestFacts();
    const values = p.dynamic.map(([, e]) => (f === undefined ? undefined : e.value(f)) ?? UNKNOWN);
    const key = values.join('\n');
    let m = p.series.get(key);
    if (m === undefined && !p.series.has(key)) {
      const labels = p.labels.filter(([k]) => !p.dynamic.some(([d]) => d === k));
      p.dynamic.forEach(([k], i) => labels.push([k, values[i]!]));
      m = this.#owner.registry.defineSeries(this.type, this.name, labels);
      // Bounded by the registry's module series bound; a refused set is remembered as refused.
      if (p.series.size < 10_000) p.series.set(key, m);
    }
    return m;
  }

  increment(delta: number): boolean {
    if (this.#current().disabled) return true;
    return this.#target()?.increment(delta) ?? false;
  }

  record(value: number): boolean {
    if (this.#current().disabled) return true;
    return this.#target()?.record(value) ?? false;
  }

  get(): number | undefined {
    const p = this.#current();
    return p.disabled ? 0 : p.fixed?.get();
  }
}

export class MetricOverrides {
  /** Bumped by every set(); stand-ins recompute their plan when it moves. */
  generation = 0;
  #sides: { inbound: readonly MetricOverrideConfig[]; outbound: readonly MetricOverrideConfig[] } = { inbound: [], outbound: [] };
  readonly #standIns = new Map<string, OverriddenMetric>();
  readonly #compiled = new Map<string, CompiledValue>();
  #readsRequest = false;

  constructor(readonly registry: MetricsRegistry) {
    registry.setModuleDefineHook((type, fullName) => this.#define(type, fullName));
  }

  /** Throws if an expression of these overrides does not compile (before a config is accepted). */
  check(inbound: readonly MetricOverrideConfig[] | undefined, outbound: readonly MetricOverrideConfig[] | undefined): void {
    for (const o of [...(inbound ?? []), ...(outbound ?? [])]) for (const [, op] of o.tags ?? []) if ('value' in op) this.#compile(op.value);
  }

  /** The overrides of a new config (absent side: none). */
  set(inbound: readonly MetricOverrideConfig[] | undefined, outbound: readonly MetricOverrideConfig[] | undefined): void {
    const next = { inbound: inbound ?? [], outbound: outbound ?? [] };
    if (JSON.stringify(next) === JSON.stringify(this.#sides)) return;
    this.check(next.inbound, next.outbound);
    this.#sides = next;
    this.generation++;
    const reads = [...next.inbound, ...next.outbound].some((o) => (o.tags ?? []).some(([, op]) => 'value' in op && literalOf(op.value) === undefined));
    if (reads !== this.#readsRequest) readersOfRequest += reads ? 1 : -1;
    this.#readsRequest = reads;
  }

  #compile(expression: string): CompiledValue {
    let c = this.#compiled.get(expression);
    if (c === undefined) {
      const r = compileValue(expression);
      if ('message' in r) throw new Error(`metrics tagOverrides value ${JSON.stringify(expression)}: ${r.message}`);
      c = r;
      this.#compiled.set(expression, c);
    }
    return c;
  }

  #define(type: MetricType, fullName: string): Metric | undefined {
    const known = this.#standIns.get(fullName);
    if (known !== undefined) return known;
    if (!fullName.startsWith('istio_')) return undefined;
    const parsed = parseMetricName(fullName);
    if (parsed === undefined || FAMILY_METRIC[parsed.name] === undefined) return undefined;
    // parseMetricName checked the label names; the type against the family is checked when the plan
    // defines the series (no series is created here: a disabled or relabeled series must not appear).
    const m = new OverriddenMetric(this, type, parsed.name, parsed.labels, fullName);
    if (this.#standIns.size < 40_000) this.#standIns.set(fullName, m);
    return m;
  }

  /** What a series becomes under the current overrides of its side. */
  plan(type: MetricType, name: string, pairs: readonly (readonly [string, string])[], metric: StandardMetric, side: 'inbound' | 'outbound'): Plan {
    let disabled = false;
    const labels = new Map<string, string>(pairs.map(([k, v]) => [k, v]));
    const dynamic = new Map<string, CompiledValue>();
    for (const o of this.#sides[side]) {
      if (!o.metrics.includes(metric)) continue;
      if (o.disabled !== undefined) disabled = o.disabled;
      for (const [label, op] of o.tags ?? []) {
        if ('remove' in op) {
          labels.delete(label);
          dynamic.delete(label);
        } else {
          const c = this.#compile(op.value);
          const literal = literalOf(op.value);
          if (literal !== undefined) {
            labels.set(label, literal);
            dynamic.delete(label);
          } else {
            labels.delete(label);
            dynamic.set(label, c);
          }
        }
      }
    }
    const plan: Plan = { disabled, fixed: undefined, labels: [...labels], dynamic: [...dynamic], series: new Map() };
    if (!disabled && plan.dynamic.length === 0) plan.fixed = this.registry.defineSeries(type, name, plan.labels);
    return plan;
  }

  /** Stops intercepting (the proxy is stopping). */
  close(): void {
    this.registry.setModuleDefineHook(undefined);
    if (this.#readsRequest) readersOfRequest--;
    this.#readsRequest = false;
  }
}

/** A quoted string literal's value (no request needed), else undefined. */
function literalOf(expression: string): string | undefined {
  const m = /^\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*$/.exec(expression);
  return m === null ? undefined : (m[1] ?? m[2]);
}
