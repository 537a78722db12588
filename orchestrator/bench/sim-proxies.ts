// N simulated proxies for push.bench.ts, in their own process (started with fork, driven over IPC):
// each is a grpc-js discovery stream on its own connection that subscribes as a distinct workload,
// parses every response (as a proxy would), ACKs it at once, and notes when it arrived.
//
// Messages from the parent: {type:'start', address, n}, {type:'mark'}, {type:'report'}, {type:'stop'}.
// Replies: {type:'ready'} once every proxy has its first config, {type:'marked'},
// {type:'report', times} (per proxy: wall-clock ms of the first response received after the mark,
// or null), {type:'error', message}.
import * as grpc from '@grpc/grpc-js';
import {
  PROXY_CONFIG_TYPE_URL,
  discoveryDefinition,
  type DiscoveryClient,
  type DiscoveryRequestInput,
  type DiscoveryResponse,
} from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';

interface Sim {
  client: DiscoveryClient;
  call: grpc.ClientDuplexStream<DiscoveryRequestInput, DiscoveryResponse>;
  first: boolean;
  afterMark: number | null;
}

const wallNow = (): number => performance.timeOrigin + performance.now();
const sims: Sim[] = [];
let ready = 0;
let n = 0;

function send(message: unknown): void {
  process.send?.(message);
}

function start(address: string, count: number): void {
  n = count;
  const { Client } = discoveryDefinition();
  for (let i = 0; i < count; i++) {
    // A channel (and TCP connection) per proxy, as separate sidecars would have.
    const client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    const call = client.StreamResources(new grpc.Metadata());
    const sim: Sim = { client, call, first: true, afterMark: null };
    sims.push(sim);
    call.on('data', (res: DiscoveryResponse) => {
      const at = wallNow();
      if (sim.afterMark === null && !sim.first) sim.afterMark = at;
      const config = JSON.parse(Buffer.from(res.resources[0]!.body).toString('utf8')) as { version: string };
      call.write({ type_url: PROXY_CONFIG_TYPE_URL, version_info: config.version, response_nonce: res.nonce });
      if (sim.first) {
        sim.first = false;
        if (++ready === n) send({ type: 'ready' });
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) send({ type: 'error', message: `proxy ${i}: ${err.details || err.message}` });
    });
    const name = `bench-${i}`;
    call.write({
      node: { id: `${name}~sim~${process.pid}`, workload: name, namespace: 'bench', labels: { app: name, version: 'v1' }, service_account: name },
      type_url: PROXY_CONFIG_TYPE_URL,
      version_info: '',
    });
  }
}

process.on('message', (m: { type: string; address?: string; n?: number }) => {
  switch (m.type) {
    case 'start':
      start(m.address!, m.n!);
      break;
    case 'mark':
      for (const s of sims) {
        s.first = false;
        s.afterMark = null;
      }
      send({ type: 'marked' });
      break;
    case 'report':
      send({ type: 'report', times: sims.map((s) => s.afterMark) });
      break;
    case 'stop':
      for (const s of sims) {
        s.call.cancel();
        s.client.close();
      }
      setTimeout(() => process.exit(0), 50).unref();
      process.disconnect?.();
      break;
  }
});
process.on('disconnect', () => process.exit(0));
