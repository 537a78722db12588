// The configurations the telemetry-path benchmark compares: plaintext or mTLS between the sidecars
// (the inbound one STRICT, or PERMISSIVE: Istio's default, where it tells TLS from plaintext by the
// first bytes),
// and no filter, a no-op wasm module, or the built-in telemetry binding on both sides of both sidecars;
// each either from this checkout or from a baseline checkout.
import path from 'node:path';
import type { ClusterConfig, FilterBinding, ProxyConfig, WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { withBuiltinFilters } from '../../../mesh/src/translate/builtin-filters.ts';
import { guestModule } from '../../../wasm/test/support/wat.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../test/support/config.ts';

export type Security = 'plain' | 'mtls' | 'permissive';
export type Filters = 'none' | 'noop' | 'telemetry';

export interface BenchConfig {
  security: Security;
  filters: Filters;
  /** `mtls-telemetry`, or `mtls-telemetry@baseline` for the baseline checkout's twin. */
  label: string;
  /** The checkout whose proxy code and filter modules the sidecars run. */
  root: string;
  baseline: boolean;
}

export const HOST = 'reviews.default.svc.cluster.local';
const CLUSTER = `outbound|9080||${HOST}`;
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/reviews';
const CLIENT: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const SERVER: WorkloadIdentity = { name: 'reviews', namespace: 'default', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'reviews' };

export const CONFIG_NAMES = (['plain', 'mtls', 'permissive'] as const).flatMap((s) => (['none', 'noop', 'telemetry'] as const).map((f) => `${s}-${f}`));

/** The configurations named (default all), each followed by its baseline twin when there is a baseline. */
export function chooseConfigs(names: readonly string[] | undefined, root: string, baselineRoot: string | undefined): BenchConfig[] {
  const chosen = names ? CONFIG_NAMES.filter((n) => names.includes(n)) : CONFIG_NAMES;
  if (chosen.length === 0) throw new Error(`BENCH_CONFIGS names none of ${CONFIG_NAMES.join(', ')}`);
  return chosen.flatMap((name) => {
    const [security, filters] = name.split('-') as [Security, Filters];
    const mine: BenchConfig = { security, filters, label: name, root, baseline: false };
    return baselineRoot === undefined ? [mine] : [mine, { ...mine, label: `${name}@baseline`, root: baselineRoot, baseline: true }];
  });
}

/** The chains of one configuration: as the translator gives them (telemetry), or one no-op module per side. */
function chains(c: BenchConfig, workload: WorkloadIdentity, noopWasm: string): { inbound: FilterBinding[]; outbound: FilterBinding[] } {
  if (c.filters === 'telemetry') return withBuiltinFilters({ inbound: [], outbound: [] }, [], [], workload, { filtersDir: path.join(c.root, 'filters') });
  if (c.filters === 'noop') {
    const noop = filterBinding('noop', noopWasm, { failStrategy: 'FAIL_OPEN' });
    return { inbound: [noop], outbound: [noop] };
  }
  return { inbound: [], outbound: [] };
}

/** The inbound sidecar (reviews): STRICT or PERMISSIVE with mTLS, DISABLE without. */
export function serverConfig(c: BenchConfig, noopWasm: string): ProxyConfig {
  const { inbound, outbound } = chains(c, SERVER, noopWasm);
  const base = proxyConfig({ inboundFilters: inbound, outboundFilters: outbound });
  return { ...base, workload: SERVER, mtls: { mode: c.security === 'mtls' ? 'STRICT' : c.security === 'permissive' ? 'PERMISSIVE' : 'DISABLE' }, version: `${base.version}-${c.label}` };
}

/** The outbound sidecar (productpage): ISTIO_MUTUAL to the inbound sidecar with mTLS, plaintext without. */
export function clientConfig(c: BenchConfig, serverPort: number, noopWasm: string): ProxyConfig {
  const { inbound, outbound } = chains(c, CLIENT, noopWasm);
  const upstream: ClusterConfig = cluster(CLUSTER, [{ port: serverPort }], { host: HOST, port: 9080 });
  const base = proxyConfig({
    clusters: [c.security !== 'plain' ? { ...upstream, tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [SERVER_ID] } } : upstream],
    virtualHosts: [{ name: HOST, domains: ['reviews', HOST, `${HOST}:9080`], routes: [forward('reviews/default', CLUSTER)] }],
    inboundFilters: inbound,
    outboundFilters: outbound,
  });
  return { ...base, workload: CLIENT, version: `${base.version}-${c.label}` };
}

/** A module that answers every callback it exports at once: the runtime's floor per stream. */
export const NOOP_WAT = guestModule({
  body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))`,
});
