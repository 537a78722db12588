// Shared by the policy filter tests: builds the filter once per test file and loads it in a harness.
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { buildFilter } from '../../toolchain/build.ts';
import { FilterHarness, type HarnessOptions, type RunResult } from '../../../wasm/src/harness.ts';
import type { StreamInfo } from '../../../wasm/src/host.ts';

export const FILTER_DIR = fileURLToPath(new URL('..', import.meta.url));

let built: Promise<{ wasmPath: string; bytes: Uint8Array }> | undefined;

/** Builds filters/policy (skipped when up to date) and returns the module. */
export function policyWasm(): Promise<{ wasmPath: string; bytes: Uint8Array }> {
  built ??= (async () => {
    const { wasmPath } = await buildFilter(FILTER_DIR, { quiet: true });
    return { wasmPath, bytes: new Uint8Array(await readFile(wasmPath)) };
  })();
  return built;
}

export const MTLS_PEER: StreamInfo = {
  peerPrincipal: 'spiffe://cluster.local/ns/default/sa/productpage',
  sourceAddress: '10.1.2.3:5555',
  destinationAddress: '127.0.0.1:9080',
  mtls: true,
};

export async function load(configuration: object, options: HarnessOptions = {}): Promise<FilterHarness> {
  const { bytes } = await policyWasm();
  return FilterHarness.load(bytes, { name: 'policy', rootId: 'policy', streamInfo: MTLS_PEER, ...options, configuration });
}

export interface Req {
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  streamInfo?: StreamInfo;
}

export async function send(h: FilterHarness, req: Req = {}): Promise<RunResult> {
  const headers: Record<string, string> = {
    ':method': req.method ?? 'GET',
    ':path': req.path ?? '/productpage',
    ':authority': req.host ?? 'reviews.default.svc.cluster.local:9080',
    ':scheme': 'http',
    ...req.headers,
  };
  return h.run({ request: { headers }, response: { headers: { ':status': '200' }, body: 'ok' }, streamInfo: req.streamInfo });
}

/** The status the client got: the filter's local reply, or the upstream's 200. */
export function status(r: RunResult): number {
  return r.localResponse?.status ?? Number(r.response?.headers[':status']);
}

/** One policy, evaluated for one request: the status the client gets. */
export async function decide(policies: object[], req: Req = {}, options: HarnessOptions = {}): Promise<number> {
  const h = await load({ policies }, options);
  try {
    return status(await send(h, req));
  } finally {
    await h.close();
  }
}

export const allow = (rules?: object[], name = 'allow-it') => ({ name, namespace: 'default', action: 'ALLOW', ...(rules ? { rules } : {}) });
export const deny = (rules?: object[], name = 'deny-it') => ({ name, namespace: 'default', action: 'DENY', ...(rules ? { rules } : {}) });
