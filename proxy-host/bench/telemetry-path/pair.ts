// One pair of sidecars (outbound -> inbound -> the app) of one configuration: started on the sidecars'
// CPU, the path checked once, load put through it with wrk, stopped. What a window of load measures
// is in measure.ts.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Children } from '../support/children.ts';
import { CPUS } from '../support/cpus.ts';
import { httpGet } from '../support/services.ts';
import { runWrk, type LoadResult } from '../support/wrk.ts';
import { clientConfig, HOST, serverConfig, type BenchConfig } from './configs.ts';
import { startBenchProcess, type BenchProcess } from './start.ts';

export interface Pair {
  config: BenchConfig;
  client: BenchProcess;
  server: BenchProcess;
}

export interface PairFiles {
  tmp: string;
  noopWasm: string;
  /** Identity PEM files (JSON) of the two workloads. */
  serverPems: string;
  clientPems: string;
}

/** Starts the pair's sidecars on the sidecars' CPU, the inbound one forwarding to `appPort`. */
export async function startPair(children: Children, c: BenchConfig, files: PairFiles, appPort: number): Promise<Pair> {
  const name = c.label.replace('@', '-');
  const serverFile = path.join(files.tmp, `server-${name}.json`);
  writeFileSync(serverFile, JSON.stringify(serverConfig(c, files.noopWasm)));
  const server = await startBenchProcess(children, `${c.label} inbound sidecar`, ['sidecar', c.root, serverFile, files.serverPems, 'inbound', String(appPort)], CPUS?.target);
  try {
    const clientFile = path.join(files.tmp, `client-${name}.json`);
    writeFileSync(clientFile, JSON.stringify(clientConfig(c, server.port, files.noopWasm)));
    const client = await startBenchProcess(children, `${c.label} outbound sidecar`, ['sidecar', c.root, clientFile, files.clientPems, 'outbound'], CPUS?.target);
    const pair = { config: c, client, server };
    await checkPath(pair);
    return pair;
  } catch (err) {
    await children.stop(server.cp);
    throw err;
  }
}

export async function stopPair(children: Children, pair: Pair): Promise<void> {
  await Promise.all([children.stop(pair.client.cp), children.stop(pair.server.cp)]);
}

/** One request through the pair; with mTLS also a plaintext one straight to the inbound sidecar, which STRICT must refuse. */
async function checkPath(pair: Pair): Promise<void> {
  const c = pair.config;
  const r = await httpGet(pair.client.port, '/reviews/1', HOST);
  if (r.status !== 200) throw new Error(`${c.label}: GET through the pair answered ${r.status}: ${r.body.slice(0, 200)}`);
  if (c.security === 'mtls') {
    const plain = await httpGet(pair.server.port, '/reviews/1', HOST).then((x) => x.status, () => 0);
    if (plain === 200) throw new Error(`${c.label}: the inbound sidecar answered a plaintext request under STRICT`);
  }
}

export interface Load {
  wrk: string;
  seconds: number;
  connections: number;
}

export function load(children: Children, pair: Pair, l: Load): Promise<LoadResult> {
  return runWrk(children, { bin: l.wrk, url: `http://127.0.0.1:${pair.client.port}/reviews/1`, host: HOST, seconds: l.seconds, connections: l.connections, cpu: CPUS?.load });
}
