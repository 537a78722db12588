// Downstream request and response headers in the proxy's one shape (a flat lowercase list with
// HTTP/2 pseudo-headers), with hop-by-hop headers removed as RFC 9110 §7.6.1 says and the proxy's
// own headers (x-request-id, x-forwarded-for, x-forwarded-proto) set.
import { randomUUID } from 'node:crypto';
import type { HeaderList } from '../../../wasm/src/index.ts';
import type { DownstreamRequest } from '../listener/listener.ts';

/** Hop-by-hop headers; `te` is kept only as "te: trailers" (gRPC needs it end to end). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authenticate', 'proxy-authorization', 'http2-settings']);

export interface DownstreamFacts {
  scheme: 'http' | 'https';
  /** Client IP, appended to x-forwarded-for. */
  remoteAddress: string;
  /** The listener generates x-request-id when absent (both sides do: the first proxy's id wins). */
  generateRequestId: boolean;
}

/**
 * Builds the request header list from a Node request (HTTP/1.1 or HTTP/2). The names of raw
 * headers are lowercased once here; nothing downstream of this lowercases again.
 */
export function requestHeaderList(req: DownstreamRequest, facts: DownstreamFacts): HeaderList {
  const raw = req.rawHeaders;
  const isH2 = req.httpVersionMajor === 2;
  const out: HeaderList = isH2 ? [] : [':method', req.method ?? 'GET', ':path', req.url ?? '/', ':authority', '', ':scheme', facts.scheme];
  let connectionTokens: string | undefined;
  let xff: number = -1;
  let hasRequestId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    if (name === 'host') {
      if (!isH2) out[5] = value;
      else if (!hasPseudo(out, ':authority')) out.push(':authority', value);
      continue;
    }
    if (name === 'connection') {
      connectionTokens = connectionTokens ? `${connectionTokens},${value}` : value;
      continue;
    }
    if (HOP_BY_HOP.has(name)) {
      if (name === 'te' && value.trim().toLowerCase() === 'trailers') out.push('te', 'trailers');
      continue;
    }
    if (name === 'x-forwarded-for') xff = out.length;
    else if (name === 'x-request-id') hasRequestId = true;
    else if (name === 'expect') continue; // Node answered 100-continue already; never forward it.
    out.push(name, value);
  }
  if (xff >= 0) out[xff + 1] = `${out[xff + 1]}, ${facts.remoteAddress}`;
  else out.push('x-forwarded-for', facts.remoteAddress);
  if (connectionTokens && !namesNoHeader(connectionTokens)) removeConnectionTokens(out, connectionTokens);
  out.push('x-forwarded-proto', facts.scheme);
  if (!hasRequestId && facts.generateRequestId) out.push('x-request-id', randomUUID());
  return out;
}

function hasPseudo(list: HeaderList, name: string): boolean {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return true;
  return false;
}

/**
 * Nearly every Connection header is just "keep-alive", "close" or "upgrade", which name no header
 * still in the list: skip building the token set for those (this ran on every upstream response).
 */
function namesNoHeader(tokens: string): boolean {
  const t = tokens.length < 16 ? tokens.trim().toLowerCase() : '';
  return t === 'keep-alive' || t === 'close' || t === 'upgrade';
}

/** Headers named in Connection are hop-by-hop too. */
function removeConnectionTokens(list: HeaderList, tokens: string): void {
  const names = new Set(tokens.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (names.has(list[r]) && !list[r].startsWith(':')) continue;
    list[w++] = list[r];
    list[w++] = list[r + 1];
  }
  list.length = w;
}

/** Response headers from an upstream (undici's object form) into a list with :status first. */
export function responseHeaderList(status: number, headers: Record<string, string | string[] | undefined>): HeaderList {
  const out: HeaderList = [':status', String(status)];
  let connectionTokens: string | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'connection') {
      connectionTokens = Array.isArray(value) ? value.join(',') : value;
      continue;
    }
    if (HOP_BY_HOP.has(name) || name.charCodeAt(0) === 58 /* : */) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  if (connectionTokens && !namesNoHeader(connectionTokens)) removeConnectionTokens(out, connectionTokens);
  return out;
}

/** Trailers (undici/http2 object form) into a list. */
export function trailerList(trailers: Record<string, string | string[] | undefined> | undefined): HeaderList | undefined {
  if (!trailers) return undefined;
  const out: HeaderList = [];
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined || name.charCodeAt(0) === 58) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  return out.length > 0 ? out : undefined;
}

/** Downstream request trailers (HTTP/1.1 chunked or HTTP/2) as a list, if any. */
export function requestTrailerList(req: DownstreamRequest): HeaderList | undefined {
  const raw = req.rawTrailers;
  if (!raw || raw.length === 0) return undefined;
  const out: HeaderList = [];
  for (let i = 0; i < raw.length; i += 2) out.push(raw[i].toLowerCase(), raw[i + 1]);
  return out;
}

export function getHeader(list: HeaderList, name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

/** True when a request carries a body: HTTP/1.1 by its framing headers, HTTP/2 by its stream state. */
export function requestHasBody(req: DownstreamRequest): boolean {
  if (req.httpVersionMajor === 2) return !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders;
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  return cl !== undefined && cl !== '0';
}
