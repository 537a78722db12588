// WebAssembly components built from JavaScript at test time with componentize-js (10-17 s each on
// a 2-core machine), cached under the OS temp dir by a hash of the source, the WIT, the world and
// componentize-js's version, so reruns take no time. The cache file is written whole (temp file,
// then rename), so a build that dies midway leaves nothing behind.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ComponentSource {
  /** The JavaScript module (ES module) implementing the world. */
  source: string;
  /** The WIT text holding the world (one file, one package). */
  wit: string;
  world: string;
}

const CACHE_DIR = join(tmpdir(), 'wasmesh-test-components');

interface Componentize {
  componentize(source: string, opts: { witWorld: string; worldName: string; disableFeatures?: string[] }): Promise<{ component: Uint8Array }>;
}

async function componentizeVersion(): Promise<string> {
  const url = new URL('../../../node_modules/@bytecodealliance/componentize-js/package.json', import.meta.url);
  return (JSON.parse(await readFile(url, 'utf8')) as { version: string }).version;
}

/** The component for `c`: from the cache, or built (and cached) now. */
export async function buildComponent(c: ComponentSource): Promise<{ bytes: Uint8Array; cached: boolean; ms: number }> {
  const started = Date.now();
  const key = createHash('sha256').update(JSON.stringify({ componentize: await componentizeVersion(), ...c })).digest('hex').slice(0, 32);
  const file = join(CACHE_DIR, `${key}.wasm`);
  if (existsSync(file)) return { bytes: new Uint8Array(await readFile(file)), cached: true, ms: Date.now() - started };
  await mkdir(CACHE_DIR, { recursive: true });
  const work = await mkdtemp(join(CACHE_DIR, 'build-'));
  try {
    const { componentize } = (await import('@bytecodealliance/componentize-js')) as unknown as Componentize;
    // The WIT goes in as text: the splicer inside is WASI-compiled and sees no host directories.
    // Every WASI feature off: a filter gets no clocks, randomness, stdio or HTTP from the host.
    const { component } = await componentize(c.source, { witWorld: c.wit, worldName: c.world, disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'] });
    const tmp = join(work, 'out.wasm');
    await writeFile(tmp, component);
    await rename(tmp, file);
    return { bytes: new Uint8Array(component), cached: false, ms: Date.now() - started };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * add-header in JavaScript against the filter world: sets the configured request and response
 * headers (config `{"request": {"name": "value"}, "response": {...}}`, as the AssemblyScript
 * example) and counts requests in add_header_requests_total.
 */
export const JS_ADD_HEADER = `
const enc = new TextEncoder();
const dec = new TextDecoder();
let config = { request: [], response: [] };
const unchanged = () => ({ remove: [], set: [], add: [] });
const nothing = () => ({ logs: [], metrics: [], sharedWrites: [] });
const go = { tag: 'continue' };
const pairs = (o) => Object.entries(o ?? {}).map(([k, v]) => [k.toLowerCase(), enc.encode(String(v))]);
export const handler = {
  configure(bytes) {
    let parsed;
    try {
      parsed = bytes.length === 0 ? {} : JSON.parse(dec.decode(bytes));
    } catch (e) {
      throw 'add-header: configuration is not JSON: ' + e.message;
    }
    config = { request: pairs(parsed.request), response: pairs(parsed.response) };
    return {
      phases: ['request-headers', 'response-headers'],
      properties: [],
      sharedKeys: [],
      metrics: [{ name: 'add_header_requests_total', kind: 'counter' }],
    };
  },
  onRequestHeaders(ctx, headers, endOfStream) {
    return {
      action: go,
      headers: { remove: [], set: config.request, add: [] },
      effects: { logs: [], metrics: [{ name: 'add_header_requests_total', op: 'add', value: 1n }], sharedWrites: [] },
    };
  },
  onRequestBody(ctx, body, endOfStream) { return { action: go, body: undefined, headers: unchanged(), effects: nothing() }; },
  onRequestTrailers(ctx, trailers) { return { action: go, trailers: unchanged(), effects: nothing() }; },
  onResponseHeaders(ctx, headers, endOfStream) { return { action: go, headers: { remove: [], set: config.response, add: [] }, effects: nothing() }; },
  onResponseBody(ctx, body, endOfStream) { return { action: go, body: undefined, headers: unchanged(), effects: nothing() }; },
  onResponseTrailers(ctx, trailers) { return { action: go, trailers: unchanged(), effects: nothing() }; },
  onStreamDone(streamId) { return nothing(); },
};
`;

/** JS_ADD_HEADER built against schemas/wit/filter.wit (cached like every component here). */
export async function jsAddHeaderComponent(): Promise<{ bytes: Uint8Array; cached: boolean; ms: number }> {
  const wit = await readFile(new URL('../../../schemas/wit/filter.wit', import.meta.url), 'utf8');
  return buildComponent({ source: JS_ADD_HEADER, wit, world: 'http-filter' });
}
