// Hop-by-hop headers (RFC 9110 7.6.1) that a proxy must not forward, for the minimal Node proxies.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

/** Raw header pairs [k, v, k, v, ...] without hop-by-hop headers (and those named in Connection). */
export function forwardRaw(raw) {
  let named;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === 'connection') {
      for (const t of raw[i + 1].split(',')) (named ??= new Set()).add(t.trim().toLowerCase());
    }
  }
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (HOP.has(k) || named?.has(k)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** A header object (lowercase keys) without hop-by-hop headers. */
export function forwardObject(headers) {
  const named = headers.connection ? String(headers.connection).split(',').map((t) => t.trim().toLowerCase()) : [];
  const out = {};
  for (const k in headers) {
    if (HOP.has(k) || named.includes(k)) continue;
    out[k] = headers[k];
  }
  return out;
}
