// The orchestrator's API with the token of this tab. The token lives in sessionStorage (this tab,
// until it closes) and goes out as Authorization: Bearer on same-origin fetches; no cookie
// authorizes anything, and the token is never put in a URL.

const KEY = 'wasmesh.console.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) ?? '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const errors = Array.isArray(body?.errors) ? body.errors : [];
    super(errors.length > 0 ? errors.map((e) => e.message).join('; ') : `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
    this.code = body?.code;
  }
}

/** JSON from the API; throws ApiError on a non-2xx answer. `body`: object (JSON) or string (YAML). */
export async function api(path, { method = 'GET', body, tokenOverride } = {}) {
  const headers = { authorization: `Bearer ${tokenOverride ?? token.get()}`, accept: 'application/json' };
  let payload;
  if (body instanceof Blob) {
    headers['content-type'] = 'application/wasm';
    payload = body;
  } else if (typeof body === 'string') {
    headers['content-type'] = 'application/yaml';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  const text = await res.text();
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}
