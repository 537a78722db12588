// The metrics store shared by every plugin of one proxy: what proxy-wasm modules define through
// proxy_define_metric and the runtime's own metrics (wasmesh_*). Exported as Prometheus text by
// prometheus.ts and as plain objects by snapshot().
//
// Model: a *family* is one base name with one type (and, for histograms, one set of bucket bounds);
// a *series* is one label set inside a family and is the Metric object callers hold on to. Defining
// the same series twice yields the same object, so VMs of one plugin (or several plugins) that
// define the same name share the value, as in Envoy.
import { MetricType } from '../abi/constants.ts';
import { DEFAULT_HISTOGRAM_BUCKETS } from '../limits.ts';
import { escapeLabelValue, formatNumber, renderPrometheus } from './prometheus.ts';

/** `# HELP` text of a family a module created (modules cannot pass a help string). */
export const MODULE_METRIC_HELP = 'proxy-wasm module metric';
/**
 * Base names starting with this prefix belong to the runtime: a module cannot define (and so cannot
 * increment or overwrite) them, whatever punctuation it uses (`wasmesh.vm...` sanitizes to `wasmesh_vm...`).
 */
export const HOST_METRIC_PREFIX = 'wasmesh_';
/** A full name (base name plus label syntax) longer than this is refused. */
export const MAX_METRIC_NAME_LENGTH = 4096;
/** Series modules may create in one registry (label cardinality bound); past it define() refuses new series. */
export const DEFAULT_MAX_MODULE_SERIES = 10_000;

export type MetricTypeName = 'counter' | 'gauge' | 'histogram';
export const METRIC_TYPE_NAMES: readonly MetricTypeName[] = ['counter', 'gauge', 'histogram'];

/** One series: what define()/counter()/gauge()/histogram() hand out. Methods never allocate. */
export interface Metric {
  readonly type: MetricType;
  /** Sanitized base name (the family name). */
  readonly name: string;
  /** Label set of this series (frozen; empty-valued labels are dropped, see parseMetricName). */
  readonly labels: Readonly<Record<string, string>>;
  /** Canonical series name: `name{a="x",b="y"}` with labels sorted by name, or just `name`. */
  readonly key: string;
  /** Counter: adds delta if delta > 0. Gauge: adds any finite delta. Histogram: refused. */
  increment(delta: number): boolean;
  /** Counter: adds value if >= 0 (Envoy adds). Gauge: sets value. Histogram: observes value. */
  record(value: number): boolean;
  /** Counter/gauge value; undefined for a histogram. */
  get(): number | undefined;
}

export interface MetricSnapshot {
  name: string;
  type: MetricTypeName;
  labels: Record<string, string>;
  /** Counter and gauge value. */
  value?: number;
  /** Histogram sum of observations. */
  sum?: number;
  /** Histogram observation count (the `+Inf` bucket). */
  count?: number;
  /** Histogram [upper bound, cumulative count] per finite bucket; `+Inf` is `count`, left out so JSON stays finite. */
  buckets?: Array<[number, number]>;
}

/**
 * Sees every module define() first (after the type and length checks): a Metric it returns is what the
 * module gets (a stand-in that records elsewhere, or records nothing); undefined lets define() go on.
 * The proxy uses it to apply Telemetry overrides to Istio's standard metrics.
 */
export type ModuleDefineHook = (type: MetricType, fullName: string) => Metric | undefined;

export interface MetricsRegistryOptions {
  /** Bound on series created through define(); default DEFAULT_MAX_MODULE_SERIES. */
  maxModuleSeries?: number;
}

type LabelPairs = Array<[string, string]>;

abstract class SeriesBase {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly key: string;
  /** Labels as rendered inside braces: `a="x",b="y"` (sorted, escaped), '' when there are none. */
  readonly labelText: string;

  constructor(name: string, sortedLabels: LabelPairs, labelText: string) {
    this.name = name;
    const labels: Record<string, string> = {};
    for (const [k, v] of sortedLabels) labels[k] = v;
    this.labels = Object.freeze(labels);
    this.labelText = labelText;
    this.key = labelText === '' ? name : `${name}{${labelText}}`;
  }
}

export class CounterMetric extends SeriesBase implements Metric {
  readonly type = MetricType.Counter;
  /** @internal read by the exporters; mutate through increment/record. */
  value = 0;

  increment(delta: number): boolean {
    // `!(delta > 0)` also refuses NaN.
    if (!(delta > 0) || delta === Infinity) return false;
    this.value += delta;
    return true;
  }

  record(value: number): boolean {
    if (!(value >= 0) || value === Infinity) return false;
    this.value += value;
    return true;
  }

  get(): number {
    return this.value;
  }
}

export class GaugeMetric extends SeriesBase implements Metric {
  readonly type = MetricType.Gauge;
  /** @internal read by the exporters; mutate through increment/record. */
  value = 0;

  increment(delta: number): boolean {
    if (!Number.isFinite(delta)) return false;
    this.value += delta;
    return true;
  }

  record(value: number): boolean {
    if (!Number.isFinite(value)) return false;
    this.value = value;
    return true;
  }

  get(): number {
    return this.value;
  }
}

export class HistogramMetric extends SeriesBase implements Metric {
  readonly type = MetricType.Histogram;
  /** Finite upper bounds, strictly increasing (shared with the family). */
  readonly bounds: Float64Array;
  /** cumulative[i] = observations <= bounds[i]; the `+Inf` bucket is `count`. */
  readonly cumulative: Float64Array;
  sum = 0;
  count = 0;

  constructor(name: string, sortedLabels: LabelPairs, labelText: string, bounds: Float64Array) {
    super(name, sortedLabels, labelText);
    this.bounds = bounds;
    this.cumulative = new Float64Array(bounds.length);
  }

  increment(_delta: number): boolean {
    return false;
  }

  record(value: number): boolean {
    if (!Number.isFinite(value)) return false;
    this.sum += value;
    this.count++;
    // Cumulative buckets: every bucket whose bound is >= value counts it. Bounds are increasing, so
    // walk down from the largest and stop at the first bound below the value.
    const bounds = this.bounds;
    const cumulative = this.cumulative;
    for (let i = bounds.length - 1; i >= 0 && value <= bounds[i]!; i--) cumulative[i]!++;
    return true;
  }

  get(): undefined {
    return undefined;
  }
}

export type AnyMetric = CounterMetric | GaugeMetric | HistogramMetric;

/** A base name with its type, help text and series. */
export class MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  /** '' means no `# HELP` line. */
  help: string;
  /** True once the host gave the help text (a module-created family starts with MODULE_METRIC_HELP). */
  helpFromHost: boolean;
  /** Histogram bucket bounds shared by every series of the family. */
  readonly bounds: Float64Array | undefined;
  readonly series = new Map<string, AnyMetric>();
  private sorted: AnyMetric[] | undefined;

  constructor(name: string, type: MetricType, help: string, helpFromHost: boolean, bounds: Float64Array | undefined) {
    this.name = name;
    this.type = type;
    this.help = help;
    this.helpFromHost = helpFromHost;
    this.bounds = bounds;
  }

  /** @internal */
  add(metric: AnyMetric): void {
    this.series.set(metric.labelText, metric);
    this.sorted = undefined;
  }

  /** Series ordered by their rendered label text (labels sorted by name), so output is deterministic. */
  sortedSeries(): readonly AnyMetric[] {
    if (this.sorted === undefined) {
      this.sorted = [...this.series.values()].sort((a, b) => compareStrings(a.labelText, b.labelText));
    }
    return this.sorted;
  }
}

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Prometheus metric name from whatever a module passed: invalid characters become `_`, a leading digit gets a `_` prefix. */
export function sanitizeMetricName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, '_');
  return s.charCodeAt(0) >= 48 && s.charCodeAt(0) <= 57 ? `_${s}` : s;
}

/** A valid Prometheus label name that is not reserved (`__` prefix). */
export function isValidLabelName(name: string): boolean {
  return LABEL_NAME_RE.test(name) && !name.startsWith('__');
}

/**
 * Splits a module's full metric name into a sanitized base name and its labels:
 * `my_filter.requests_total{method="GET",code="200"}` → `my_filter_requests_total`, [[method, GET], [code, 200]].
 * Label syntax is Prometheus': names [a-zA-Z_][a-zA-Z0-9_]* (not `__...`), values in double quotes with
 * `\\`, `\"` and `\n` escapes (any other escape is refused); spaces around tokens and a trailing comma are
 * allowed; nothing may follow the closing brace. Returns undefined when the syntax is wrong, the base name
 * is empty or a label name repeats. Labels are returned in the order written (validation of values happens
 * in the registry).
 */
export function parseMetricName(fullName: string): { name: string; labels: LabelPairs } | undefined {
  const brace = fullName.indexOf('{');
  const rawBase = brace < 0 ? fullName : fullName.slice(0, brace);
  if (rawBase.length === 0) return undefined;
  const name = sanitizeMetricName(rawBase);
  const labels: LabelPairs = [];
  if (brace < 0) return { name, labels };

  const s = fullName;
  const n = s.length;
  let i = brace + 1;
  const skipSpaces = (): void => {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  for (;;) {
    skipSpaces();
    if (i >= n) return undefined;
    if (s[i] === '}') break; // `{}` or a trailing comma
    const nameStart = i;
    while (i < n && s[i] !== '=' && s[i] !== ' ' && s[i] !== '\t' && s[i] !== '}' && s[i] !== ',') i++;
    const labelName = s.slice(nameStart, i);
    if (!isValidLabelName(labelName)) return undefined;
    skipSpaces();
    if (s[i] !== '=') return undefined;
    i++;
    skipSpaces();
    if (s[i] !== '"') return undefined;
    i++;
    let value = '';
    let closed = false;
    while (i < n) {
      const c = s[i]!;
      if (c === '"') {
        closed = true;
        i++;
        break;
      }
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else return undefined;
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    if (!closed) return undefined;
    for (const [k] of labels) if (k === labelName) return undefined;
    labels.push([labelName, value]);
    skipSpaces();
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (s[i] === '}') break;
    return undefined;
  }
  // s[i] is the closing brace; it must end the name.
  if (i !== n - 1) return undefined;
  return { name, labels };
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Names a family's samples use; a new family may not take any name an existing family uses. */
function exposedNames(name: string, type: MetricType): string[] {
  return type === MetricType.Histogram ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

function sameBounds(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks host-supplied bucket bounds: finite, strictly increasing; a trailing +Inf is implied and dropped. */
function normalizeBounds(buckets: readonly number[]): Float64Array | string {
  const list = buckets.length > 0 && buckets[buckets.length - 1] === Infinity ? buckets.slice(0, -1) : buckets;
  for (let i = 0; i < list.length; i++) {
    const b = list[i]!;
    if (!Number.isFinite(b)) return `bucket bound ${String(b)} is not finite`;
    if (i > 0 && !(b > list[i - 1]!)) return 'bucket bounds must be strictly increasing';
  }
  return Float64Array.from(list);
}

const DEFAULT_BOUNDS = Float64Array.from(DEFAULT_HISTOGRAM_BUCKETS);

type Origin = 'module' | 'host';

export class MetricsRegistry {
  private readonly families = new Map<string, MetricFamily>();
  /** Every sample name in use (family names and histogram suffixes) → the family using it. */
  private readonly exposed = new Map<string, MetricFamily>();
  /** define() fast path: full name as the module spelled it → series. Bounded (see define). */
  private readonly byFullName = new Map<string, AnyMetric>();
  private sortedFamilies: MetricFamily[] | undefined;
  private moduleSeries = 0;
  private readonly maxModuleSeries: number;
  private defineHook: ModuleDefineHook | undefined;

  constructor(options: MetricsRegistryOptions = {}) {
    this.maxModuleSeries = options.maxModuleSeries ?? DEFAULT_MAX_MODULE_SERIES;
  }

  /**
   * proxy_define_metric: the series named by `fullName` (see parseMetricName), created on first use.
   * undefined (→ BadArgument) for an unknown type, a malformed or reserved name, a label set the family's
   * type does not allow, a type differing from the family's, or when the module series bound is reached.
   */
  define(type: MetricType, fullName: string): Metric | undefined {
    if (type !== MetricType.Counter && type !== MetricType.Gauge && type !== MetricType.Histogram) return undefined;
    if (typeof fullName !== 'string' || fullName.length === 0 || fullName.length > MAX_METRIC_NAME_LENGTH) return undefined;
    if (this.defineHook !== undefined) {
      const hooked = this.defineHook(type, fullName);
      if (hooked !== undefined) return hooked.type === type ? hooked : undefined;
    }
    const cached = this.byFullName.get(fullName);
    if (cached !== undefined) return cached.type === type ? cached : undefined;
    const parsed = parseMetricName(fullName);
    if (parsed === undefined || parsed.name.startsWith(HOST_METRIC_PREFIX)) return undefined;
    const result = this.obtain('module', type, parsed.name, parsed.labels, '', undefined);
    if (typeof result === 'string') return undefined;
    // Many spellings can name one series (`a.b` / `a_b`, label order, spaces); cap the alias cache so a
    // module cannot grow it without bound. Misses just take the parse path.
    if (this.byFullName.size < 4 * this.maxModuleSeries) this.byFullName.set(fullName, result);
    return result;
  }

  /** Installs (or, with undefined, removes) the hook every module define() consults first. */
  setModuleDefineHook(hook: ModuleDefineHook | undefined): void {
    this.defineHook = hook;
  }

  /**
   * A module series by base name and labels, as define() would create it from a full name, without the
   * hook (what a hook's stand-ins record into). undefined when refused (reserved name, bad label,
   * type conflict, series bound reached).
   */
  defineSeries(type: MetricType, name: string, labels: readonly (readonly [string, string])[]): Metric | undefined {
    if (!METRIC_NAME_RE.test(name) || name.startsWith(HOST_METRIC_PREFIX)) return undefined;
    for (const [k] of labels) if (!isValidLabelName(k)) return undefined;
    const result = this.obtain('module', type, name, labels.map(([k, v]) => [k, v]), '', undefined);
    return typeof result === 'string' ? undefined : result;
  }

  /** A runtime counter. Throws on an invalid name/label or a conflict with an existing family: host names are fixed in code. */
  counter(name: string, help: string, labels?: Readonly<Record<string, string>>): Metric {
    return this.hostMetric(MetricType.Counter, name, help, labels, undefined);
  }

  /** A runtime gauge. Throws like counter(). */
  gauge(name: string, help: string, labels?: Readonly<Record<string, string>>): Metric {
    return this.hostMetric(MetricType.Gauge, name, help, labels, undefined);
  }

  /**
   * A runtime histogram. `buckets` (finite, strictly increasing; default DEFAULT_HISTOGRAM_BUCKETS) is fixed by
   * the family's first definition; a later call passing different buckets throws.
   */
  histogram(name: string, help: string, labels?: Readonly<Record<string, string>>, buckets?: readonly number[]): Metric {
    return this.hostMetric(MetricType.Histogram, name, help, labels, buckets);
  }

  /** Prometheus text exposition format 0.0.4. */
  renderPrometheus(): string {
    return renderPrometheus(this.familyList());
  }

  /** Every series as a plain object, families by name, series by label set. */
  snapshot(): MetricSnapshot[] {
    const out: MetricSnapshot[] = [];
    for (const family of this.familyList()) {
      for (const m of family.sortedSeries()) {
        const entry: MetricSnapshot = { name: m.name, type: METRIC_TYPE_NAMES[m.type]!, labels: { ...m.labels } };
        if (m.type === MetricType.Histogram) {
          entry.sum = m.sum;
          entry.count = m.count;
          entry.buckets = Array.from(m.bounds, (b, i): [number, number] => [b, m.cumulative[i]!]);
        } else {
          entry.value = m.value;
        }
        out.push(entry);
      }
    }
    return out;
  }

  /** Families sorted by name (code-unit order). */
  familyList(): readonly MetricFamily[] {
    if (this.sortedFamilies === undefined) {
      this.sortedFamilies = [...this.families.values()].sort((a, b) => compareStrings(a.name, b.name));
    }
    return this.sortedFamilies;
  }

  private hostMetric(
    type: MetricType,
    name: string,
    help: string,
    labels: Readonly<Record<string, string>> | undefined,
    buckets: readonly number[] | undefined,
  ): Metric {
    if (!METRIC_NAME_RE.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    const pairs: LabelPairs = labels === undefined ? [] : Object.entries(labels);
    for (const [k, v] of pairs) {
      if (!isValidLabelName(k)) throw new Error(`metric ${name}: invalid label name ${JSON.stringify(k)}`);
      if (typeof v !== 'string') throw new Error(`metric ${name}: label ${k} is not a string`);
    }
    let bounds: Float64Array | undefined;
    if (buckets !== undefined) {
      const b = normalizeBounds(buckets);
      if (typeof b === 'string') throw new Error(`metric ${name}: ${b}`);
      bounds = b;
    }
    const result = this.obtain('host', type, name, pairs, help, bounds);
    if (typeof result === 'string') throw new Error(`metric ${name}: ${result}`);
    return result;
  }

  /** Finds or creates a series; a string is the reason it was refused. */
  private obtain(
    origin: Origin,
    type: MetricType,
    name: string,
    rawLabels: LabelPairs,
    help: string,
    bounds: Float64Array | undefined,
  ): AnyMetric | string {
    // An empty label value is the same as no label in Prometheus; keeping it would let `x{a=""}` and `x`
    // be two series that a scraper sees as one (a duplicate sample), so drop it.
    const labels = rawLabels.filter(([, v]) => v !== '');
    if (type === MetricType.Histogram && labels.some(([k]) => k === 'le')) return 'label "le" is reserved for histogram buckets';
    labels.sort((a, b) => compareStrings(a[0], b[0]));
    const labelText = labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',');

    let family = this.families.get(name);
    if (family !== undefined) {
      if (family.type !== type) return `already defined as a ${METRIC_TYPE_NAMES[family.type]!}`;
      if (bounds !== undefined && family.bounds !== undefined && !sameBounds(bounds, family.bounds)) {
        return `already defined with buckets ${Array.from(family.bounds, formatNumber).join(',')}`;
      }
    } else {
      for (const n of exposedNames(name, type)) {
        const other = this.exposed.get(n);
        if (other !== undefined) return `name ${n} is already used by ${METRIC_TYPE_NAMES[other.type]!} ${other.name}`;
      }
    }

    const existing = family?.series.get(labelText);
    if (existing !== undefined) {
      if (family !== undefined) this.updateHelp(family, origin, help);
      return existing;
    }
    if (origin === 'module' && this.moduleSeries >= this.maxModuleSeries) return 'too many metric series';

    if (family === undefined) {
      const familyBounds = type === MetricType.Histogram ? (bounds ?? DEFAULT_BOUNDS) : undefined;
      family =
        origin === 'host'
          ? new MetricFamily(name, type, help, help !== '', familyBounds)
          : new MetricFamily(name, type, MODULE_METRIC_HELP, false, familyBounds);
      this.families.set(name, family);
      for (const n of exposedNames(name, type)) this.exposed.set(n, family);
      this.sortedFamilies = undefined;
    } else {
      this.updateHelp(family, origin, help);
    }

    let metric: AnyMetric;
    if (type === MetricType.Counter) metric = new CounterMetric(name, labels, labelText);
    else if (type === MetricType.Gauge) metric = new GaugeMetric(name, labels, labelText);
    else metric = new HistogramMetric(name, labels, labelText, family.bounds!);
    family.add(metric);
    if (origin === 'module') this.moduleSeries++;
    return metric;
  }

  /** The host's help text wins over the generic module text; the first host help text sticks. */
  private updateHelp(family: MetricFamily, origin: Origin, help: string): void {
    if (origin === 'host' && help !== '' && !family.helpFromHost) {
      family.help = help;
      family.helpFromHost = true;
    }
  }
}
