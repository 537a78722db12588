// The bench's wasmesh target: one sidecar (Proxy.start) with one cluster and one virtual host `bench`
// forwarding to the upstream; optionally one outbound filter. Load goes to its outbound port.
// Usage: node --import tsx wasmesh-proxy.ts <upstreamPort> [<filter.wasm> <rootId> <pluginConfig JSON>]
import { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../test/support/config.ts';
// @ts-expect-error plain ESM helper without types
import { announceReady, exitWith } from './child-lifecycle.mjs';

const [upstreamPort, filterPath, rootId, pluginConfig] = process.argv.slice(2);
const CLUSTER = 'outbound|80||bench';

const config = proxyConfig({
  clusters: [cluster(CLUSTER, [{ port: Number(upstreamPort) }], { host: 'bench' })],
  virtualHosts: [{ name: 'bench', domains: ['bench'], routes: [forward('bench/default', CLUSTER)] }],
  outboundFilters: filterPath ? [filterBinding('add-header', filterPath, { rootId: rootId ?? '', pluginConfig: JSON.parse(pluginConfig ?? '{}') })] : [],
});

const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
announceReady({ port: proxy.outboundPort, adminPort: proxy.adminPort });
exitWith(() => proxy.stop(200));
