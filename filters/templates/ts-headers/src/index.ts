// Sets and removes request and response headers, and replaces text in response bodies, as
// configured (README.md). A WebAssembly component of the filter world: the host calls one
// function per phase and applies what it returns.
import { go, nothing, unchanged, type Fields, type Handler, type Needs } from './world.ts';

interface Config {
  request: Fields;
  response: Fields;
  removeResponse: string[];
  replaceInResponseBody?: { from: string; to: string };
}

const enc = new TextEncoder();
const dec = new TextDecoder();
let config: Config = { request: [], response: [], removeResponse: [] };

/** The configuration (the WasmPlugin's pluginConfig, as JSON), checked field by field. */
function parseConfig(bytes: Uint8Array): Config {
  let raw: unknown;
  try {
    raw = bytes.length === 0 ? {} : JSON.parse(dec.decode(bytes));
  } catch (e) {
    throw `configuration is not JSON: ${(e as Error).message}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw 'configuration: must be an object';
  const c = raw as Record<string, unknown>;
  const headers = (field: string): Fields => {
    const v = c[field] ?? {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw `${field}: must be an object of header names to values`;
    return Object.entries(v).map(([name, value]) => {
      if (typeof value !== 'string') throw `${field}[${JSON.stringify(name)}]: must be a string`;
      return [name.toLowerCase(), enc.encode(value)];
    });
  };
  const remove = c.removeResponse ?? [];
  if (!Array.isArray(remove) || !remove.every((n) => typeof n === 'string')) throw 'removeResponse: must be a list of header names';
  const replace = c.replaceInResponseBody as { from?: unknown; to?: unknown } | undefined;
  if (replace !== undefined && (typeof replace !== 'object' || typeof replace.from !== 'string' || replace.from === '' || typeof replace.to !== 'string')) {
    throw 'replaceInResponseBody: must be { from: non-empty string, to: string }';
  }
  return {
    request: headers('request'),
    response: headers('response'),
    removeResponse: remove.map((n: string) => n.toLowerCase()),
    ...(replace ? { replaceInResponseBody: { from: replace.from as string, to: replace.to as string } } : {}),
  };
}

export const handler: Handler = {
  configure(bytes): Needs {
    config = parseConfig(bytes);
    return {
      phases: config.replaceInResponseBody ? ['request-headers', 'response-headers', 'response-body'] : ['request-headers', 'response-headers'],
      properties: [],
      sharedKeys: [],
      metrics: [],
    };
  },
  onRequestHeaders() {
    return { action: go, headers: { remove: [], set: config.request, add: [] }, effects: nothing() };
  },
  onResponseHeaders() {
    // The body may change length: the proxy frames it anew without the app's content-length.
    const remove = config.replaceInResponseBody ? [...config.removeResponse, 'content-length'] : config.removeResponse;
    return { action: go, headers: { remove, set: config.response, add: [] }, effects: nothing() };
  },
  onResponseBody(_ctx, body, endOfStream) {
    const replace = config.replaceInResponseBody;
    if (!replace) return { action: go, body: undefined, headers: unchanged(), effects: nothing() };
    // Hold the chunks until the whole body is here (each call sees everything held so far).
    if (!endOfStream) return { action: { tag: 'stop' }, body: undefined, headers: unchanged(), effects: nothing() };
    const text = dec.decode(body);
    const replaced = text.replaceAll(replace.from, replace.to);
    if (replaced === text) return { action: go, body: undefined, headers: unchanged(), effects: nothing() };
    return { action: go, body: enc.encode(replaced), headers: unchanged(), effects: { logs: [{ level: 'debug', message: `replaced "${replace.from}" in a response body` }], metrics: [], sharedWrites: [] } };
  },
  onRequestBody: () => ({ action: go, body: undefined, headers: unchanged(), effects: nothing() }),
  onRequestTrailers: () => ({ action: go, trailers: unchanged(), effects: nothing() }),
  onResponseTrailers: () => ({ action: go, trailers: unchanged(), effects: nothing() }),
  onStreamDone: () => nothing(),
};
