// Prometheus text exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
// Served as `Content-Type: text/plain; version=0.0.4; charset=utf-8`.
//
// Counter naming: format 0.0.4 has no rule that a counter's name ends in `_total` (OpenMetrics adds the
// suffix; Prometheus client libraries append it). We keep every name exactly as the module or the runtime
// defined it and never append `_total`: a module that reads its metric back, a dashboard written against
// Envoy's proxy-wasm stats and our own `wasmesh_*_total` names all keep one spelling, and appending could
// make two distinct families (`x` and `x_total`) render under one name.
import { MetricType } from '../abi/constants.ts';
import type { MetricFamily } from './registry.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const TYPE_WORDS: Record<MetricType, string> = {
  [MetricType.Counter]: 'counter',
  [MetricType.Gauge]: 'gauge',
  [MetricType.Histogram]: 'histogram',
};

/**
 * A sample value as Prometheus parses it (Go strconv.ParseFloat): integers in plain digits (no exponent,
 * whatever their size), other finite numbers in JavaScript's shortest round-trip form, `+Inf` / `-Inf`.
 * NaN is formatted as `NaN` for completeness, but the renderer never emits a NaN sample.
 */
export function formatNumber(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  if (Number.isInteger(v)) return Number.isSafeInteger(v) ? String(v) : BigInt(v).toString();
  return String(v);
}

/** Label value escaping: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`)) : value;
}

/** HELP text escaping: backslash and line feed (quotes stay as they are). */
export function escapeHelp(help: string): string {
  return /[\\\n]/.test(help) ? help.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\')) : help;
}

/**
 * Renders families in the given order (the registry passes them sorted by name): `# HELP` (when the family has
 * help text) and `# TYPE` once per family, then each series. Histograms render cumulative `_bucket` lines with
 * an `le` label after the series' own labels (ending with `+Inf`, equal to `_count`), then `_sum` and `_count`.
 * A series whose value is NaN is left out.
 */
export function renderPrometheus(families: Iterable<MetricFamily>): string {
  let out = '';
  for (const family of families) {
    const series = family.sortedSeries();
    if (series.length === 0) continue;
    const name = family.name;
    if (family.help !== '') out += `# HELP ${name} ${escapeHelp(family.help)}\n`;
    out += `# TYPE ${name} ${TYPE_WORDS[family.type]}\n`;

    if (family.type !== MetricType.Histogram) {
      for (const m of series) {
        if (m.type === MetricType.Histogram) continue;
        if (Number.isNaN(m.value)) continue;
        out += `${m.key} ${formatNumber(m.value)}\n`;
      }
      continue;
    }

    const bounds = family.bounds;
    const leLabels = bounds === undefined ? [] : Array.from(bounds, (b) => `le="${formatNumber(b)}"`);
    for (const m of series) {
      if (m.type !== MetricType.Histogram) continue;
      if (Number.isNaN(m.sum)) continue;
      const open = m.labelText === '' ? '{' : `{${m.labelText},`;
      const braced = m.labelText === '' ? '' : `{${m.labelText}}`;
      for (let i = 0; i < m.cumulative.length; i++) {
        out += `${name}_bucket${open}${leLabels[i]}} ${formatNumber(m.cumulative[i]!)}\n`;
      }
      out += `${name}_bucket${open}le="+Inf"} ${formatNumber(m.count)}\n`;
      out += `${name}_sum${braced} ${formatNumber(m.sum)}\n`;
      out += `${name}_count${braced} ${formatNumber(m.count)}\n`;
    }
  }
  return out;
}
