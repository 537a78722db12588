// ReportFilterStats over real gRPC: a proxy's canary outcomes reach the orchestrator; a token bound to
// a namespace reports on its own namespace's plugins and the mesh-wide ones only; no token, no report.
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { discoveryDefinition, type FilterStatsReport } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { startXdsServer } from '../src/xds/server.ts';

const quiet = () => {};

function entry(plugin: string) {
  return { plugin, sha256: 'a'.repeat(64), canary: true, streams: 10, failed_streams: 1, traps: 0, bad: false };
}

test('reports reach the orchestrator, limited to what the token may speak for', async () => {
  const tokens = TokenStore.inMemory();
  const proxyToken = tokens.create('proxy', { namespace: 'shop', serviceAccount: 'web' });
  const received: FilterStatsReport[] = [];
  const server = await startXdsServer({ store: new MemoryStore(), tokens, host: '127.0.0.1', port: 0, log: quiet, onFilterStats: (r) => void received.push(r) });
  const { Client } = discoveryDefinition();
  const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const send = (token: string | undefined, filters: ReturnType<typeof entry>[]) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const md = new grpc.Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      client.ReportFilterStats({ node_id: 'web.shop~host~1', config_version: 'v1', filters }, md, { deadline: Date.now() + 5000 }, (err) => resolve(err));
    });
  try {
    assert.is(await send(proxyToken, [entry('shop/authz'), entry('istio-system/telemetry'), entry('billing/authz')]), null);
    assert.is(received.length, 1);
    assert.is(received[0]!.node_id, 'web.shop~host~1');
    assert.equal(received[0]!.filters.map((f) => f.plugin), ['shop/authz', 'istio-system/telemetry'], 'another namespace’s plugin is dropped');
    assert.is(Number(received[0]!.filters[0]!.streams), 10);
    const refused = await send(undefined, [entry('shop/authz')]);
    assert.is(refused?.code, grpc.status.UNAUTHENTICATED);
    assert.is(received.length, 1);
  } finally {
    client.close();
    await server.close();
  }
});

test.run();
