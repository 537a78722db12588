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
  /** componentize-js features left on (default: none: the component imports nothing). */
  features?: string[];
}

const ALL_FEATURES = ['random', 'stdio', 'clocks', 'http', 'fetch-event'];

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
    const { component } = await componentize(c.source, { witWorld: c.wit, worldName: c.world, disableFeatures: ALL_FEATURES.filter((f) => !(c.features ?? []).includes(f)) });
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

/**
 * A filter in JavaScript that uses every part of the world, for the proxy's tests. What it does for a
 * request is chosen by its `x-component` header:
 * - (none): sets the configured request/response headers (config as JS_ADD_HEADER's), `x-seen-path`
 *   and `x-plugin-name` from the properties it asked for, `x-hits` from shared data it counts in
 *   (a CAS write per request), logs one line, counts `js_requests_total` and observes body sizes
 *   in `js_body_bytes`; adds a trailer `x-filter-trailer: 1` to responses that have trailers
 * - `reply`: a local reply 418 `short and stout`, header x-replied: yes, details `component_reply`
 * - `grpc-reply`: a local reply with grpc-status 7
 * - `hold`: stops on the request headers; at the end of the body, upper-cases it and sets
 *   `x-body-length` on the held request headers
 * - `shout-response`: buffers the response body (stop until the end) and upper-cases it
 * - `reply-on-response`: answers 502 from the response headers phase
 * - `spin`: loops forever (the CPU budget stops it)
 * - `throw`: throws (a trap)
 */
export const JS_EVERYTHING = `
const enc = new TextEncoder();
const dec = new TextDecoder();
let config = { request: [], response: [] };
const streams = new Map();
const unchanged = () => ({ remove: [], set: [], add: [] });
const nothing = () => ({ logs: [], metrics: [], sharedWrites: [] });
const go = { tag: 'continue' };
const pairs = (o) => Object.entries(o ?? {}).map(([k, v]) => [k.toLowerCase(), enc.encode(String(v))]);
const header = (fields, name) => { for (const [n, v] of fields) if (n === name) return dec.decode(v); return undefined; };
const prop = (ctx, i) => ctx.properties[i] && ctx.properties[i].value !== undefined ? dec.decode(ctx.properties[i].value) : '';
export const handler = {
  configure(bytes) {
    let parsed;
    try {
      parsed = bytes.length === 0 ? {} : JSON.parse(dec.decode(bytes));
    } catch (e) {
      throw 'everything: configuration is not JSON: ' + e.message;
    }
    config = { request: pairs(parsed.request), response: pairs(parsed.response) };
    return {
      phases: ['request-headers', 'request-body', 'request-trailers', 'response-headers', 'response-body', 'response-trailers'],
      properties: [['request', 'path'], ['plugin_name']],
      sharedKeys: ['hits'],
      metrics: [{ name: 'js_requests_total', kind: 'counter' }, { name: 'js_body_bytes', kind: 'histogram' }],
    };
  },
  onRequestHeaders(ctx, headers, endOfStream) {
    const mode = header(headers, 'x-component') ?? '';
    streams.set(ctx.streamId, mode);
    if (mode === 'spin') { for (;;) {} }
    if (mode === 'throw') throw new Error('boom');
    const effects = { logs: [{ level: 'info', message: 'request ' + prop(ctx, 0) }], metrics: [{ name: 'js_requests_total', op: 'add', value: 1n }], sharedWrites: [] };
    const hits = ctx.shared[0];
    const n = hits.value === undefined ? 0 : Number(dec.decode(hits.value));
    effects.sharedWrites.push({ key: 'hits', value: enc.encode(String(n + 1)), cas: hits.cas });
    if (mode === 'reply') return { action: { tag: 'reply', val: { status: 418, headers: [['x-replied', enc.encode('yes')]], body: enc.encode('short and stout'), grpcStatus: undefined, details: 'component_reply' } }, headers: unchanged(), effects };
    if (mode === 'grpc-reply') return { action: { tag: 'reply', val: { status: 200, headers: [], body: enc.encode('denied by js'), grpcStatus: 7, details: 'component_grpc_reply' } }, headers: unchanged(), effects };
    const set = [...config.request, ['x-seen-path', enc.encode(prop(ctx, 0))], ['x-plugin-name', enc.encode(prop(ctx, 1))]];
    return { action: mode === 'hold' ? { tag: 'stop' } : go, headers: { remove: ['x-remove-me'], set, add: [] }, effects };
  },
  onRequestBody(ctx, body, endOfStream) {
    const effects = { logs: [], metrics: [{ name: 'js_body_bytes', op: 'observe', value: BigInt(body.length) }], sharedWrites: [] };
    if (streams.get(ctx.streamId) !== 'hold') return { action: go, body: undefined, headers: unchanged(), effects };
    if (!endOfStream) return { action: { tag: 'stop' }, body: undefined, headers: unchanged(), effects };
    const upper = enc.encode(dec.decode(body).toUpperCase());
    return { action: go, body: upper, headers: { remove: ['content-length'], set: [['x-body-length', enc.encode(String(body.length))]], add: [] }, effects };
  },
  onRequestTrailers(ctx, trailers) { return { action: go, trailers: unchanged(), effects: nothing() }; },
  onResponseHeaders(ctx, headers, endOfStream) {
    const mode = streams.get(ctx.streamId);
    if (mode === 'reply-on-response') return { action: { tag: 'reply', val: { status: 502, headers: [], body: enc.encode('upstream said ' + header(headers, ':status')), grpcStatus: undefined, details: 'component_response_reply' } }, headers: unchanged(), effects: nothing() };
    const hits = ctx.shared[0];
    const set = [...config.response, ['x-hits', hits.value ?? enc.encode('0')]];
    return { action: go, headers: { remove: mode === 'shout-response' ? ['content-length'] : [], set, add: [] }, effects: nothing() };
  },
  onResponseBody(ctx, body, endOfStream) {
    if (streams.get(ctx.streamId) !== 'shout-response') return { action: go, body: undefined, headers: unchanged(), effects: nothing() };
    if (!endOfStream) return { action: { tag: 'stop' }, body: undefined, headers: unchanged(), effects: nothing() };
    return { action: go, body: enc.encode(dec.decode(body).toUpperCase()), headers: unchanged(), effects: nothing() };
  },
  onResponseTrailers(ctx, trailers) { return { action: go, trailers: { remove: [], set: [], add: [['x-filter-trailer', enc.encode('1')]] }, effects: nothing() }; },
  onStreamDone(streamId) { streams.delete(streamId); return nothing(); },
};
`;

/** JS_EVERYTHING built against schemas/wit/filter.wit (cached like every component here). */
export async function jsEverythingComponent(): Promise<{ bytes: Uint8Array; cached: boolean; ms: number }> {
  const wit = await readFile(new URL('../../../schemas/wit/filter.wit', import.meta.url), 'utf8');
  return buildComponent({ source: JS_EVERYTHING, wit, world: 'http-filter' });
}
