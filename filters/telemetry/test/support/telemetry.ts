// Shared by the telemetry filter's tests: the built module, workload identities as node metadata,
// the peer header an identity encodes to, and a Prometheus text parser.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFilter } from '../../../toolchain/build.ts';
import { FilterHarness, type HarnessOptions, type PropertyValue } from '../../../../wasm/src/index.ts';

export const FILTER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WASM = path.join(FILTER_DIR, 'build', 'telemetry.wasm');
export const PEER_HEADER = 'x-wasmesh-peer-metadata';

/** Builds the filter if it is out of date (a no-op after `wasmesh filter build`). */
export async function ensureBuilt(): Promise<void> {
  const silent = { write: () => true };
  await buildFilter(FILTER_DIR, { quiet: true, stdout: silent, stderr: silent });
}

export interface WorkloadSpec {
  name: string;
  namespace: string;
  app?: string;
  version?: string;
  serviceAccount?: string;
}

export const PRODUCTPAGE: WorkloadSpec = { name: 'productpage', namespace: 'default', app: 'productpage', version: 'v1', serviceAccount: 'bookinfo-productpage' };
export const REVIEWS: WorkloadSpec = { name: 'reviews', namespace: 'default', app: 'reviews', version: 'v2', serviceAccount: 'bookinfo-reviews' };

/** Node metadata as the proxy serves it (node.metadata.*) plus xds.listener_direction (1 inbound, 2 outbound). */
export function nodeProperties(w: WorkloadSpec, side: 'inbound' | 'outbound'): Record<string, PropertyValue> {
  const labels = new Map<string, string>();
  if (w.app) labels.set('app', w.app);
  if (w.version) labels.set('version', w.version);
  const props: Record<string, PropertyValue> = {
    'node.metadata.NAME': w.name,
    'node.metadata.NAMESPACE': w.namespace,
    'node.metadata.LABELS': labels,
    'xds.listener_direction': side === 'inbound' ? 1 : 2,
  };
  if (w.serviceAccount) props['node.metadata.SERVICE_ACCOUNT'] = w.serviceAccount;
  return props;
}

/** The exchange header value a workload sends (the filter's documented encoding). */
export function peerHeader(w: WorkloadSpec): string {
  const text = `name=${w.name};namespace=${w.namespace};app=${w.app ?? 'unknown'};version=${w.version ?? 'unknown'};sa=${w.serviceAccount ?? 'unknown'}`;
  return Buffer.from(text, 'utf8').toString('base64');
}

export function decodePeerHeader(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const field of Buffer.from(value, 'base64').toString('utf8').split(';')) {
    const eq = field.indexOf('=');
    if (eq > 0) out[field.slice(0, eq)] = decodeURIComponent(field.slice(eq + 1));
  }
  return out;
}

/** A harness for one side of one workload. */
export function loadSide(side: 'inbound' | 'outbound', w: WorkloadSpec, options: HarnessOptions = {}): Promise<FilterHarness> {
  return FilterHarness.load(WASM, {
    rootId: 'telemetry',
    logLevel: 'info',
    ...options,
    properties: { ...nodeProperties(w, side), ...options.properties },
  });
}

export interface PromSample {
  labels?: Record<string, string>;
  value?: string;
  count?: string;
  sum?: string;
  buckets?: Record<string, string>;
}
export interface PromFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: PromSample[];
}

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format') as (text: string) => PromFamily[];

export function parseProm(text: string): PromFamily[] {
  return parsePrometheus(text);
}

/**
 * The same text with histograms read sample by sample. parse-prometheus-text-format merges every
 * series of a histogram family into one and drops labelled `_count` / `_sum` lines (it only handles
 * histograms without labels), so the `# TYPE`/`# HELP` lines of histograms are removed first: their
 * `<name>_count`, `<name>_sum` and `<name>_bucket` lines then parse as untyped samples with labels.
 */
export function parsePromHistogramSamples(text: string): PromFamily[] {
  const histograms = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) histogram$/gm)) histograms.add(m[1]);
  const kept = text.split('\n').filter((line) => {
    const m = /^# (?:TYPE|HELP) (\S+)/.exec(line);
    return !(m && histograms.has(m[1]));
  });
  return parsePrometheus(kept.join('\n'));
}

/** The samples named `name` (over every family of that name) whose labels include every `want` label. */
export function samples(families: PromFamily[], name: string, want: Record<string, string>): PromSample[] {
  return families
    .filter((f) => f.name === name)
    .flatMap((f) => f.metrics)
    .filter((m) => Object.entries(want).every(([k, v]) => m.labels?.[k] === v));
}

/** The labels every series carries for an HTTP request (grpc_response_status is empty for HTTP, and an empty label is no label). */
export const ISTIO_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'request_protocol', 'response_code',
  'response_flags', 'connection_security_policy',
].sort();
