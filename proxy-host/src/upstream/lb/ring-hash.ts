// Consistent hashing (DestinationRule consistentHash with ringHash): a ring of 32-bit points, each owned
// by an endpoint; a request's key is hashed and served by the owner of the first point at or after it.
//
// Ring layout. Envoy spreads minimumRingSize points over all endpoints, so an endpoint's point count
// depends on how many others there are, and removing one endpoint also re-shuffles keys between the
// survivors. Here every weight unit (weights divided by their GCD) gets minimumRingSize points of its
// own, so the ring is never smaller than minimumRingSize, each endpoint's points depend only on its
// address, port and weight, and removing an endpoint moves only the keys it owned (~1/N). The ring is
// capped at MAX_RING_POINTS (past that the per-unit count shrinks and that guarantee is lost). Points are
// sorted by (hash, endpoint key), so the ring does not depend on the order endpoints are listed in.
//
// Health. An unhealthy owner hands its keys to the next healthy owner along the ring, which is what a
// ring rebuilt without it would do; the other keys stay put. With no healthy endpoint (panic) the ring
// is used as is.
//
// Keys. Header value (first value), cookie, source IP or query parameter (raw value). A request without
// its key gets a weighted random endpoint, except that a missing cookie with a ttl configured is
// generated (random value, as Envoy does when `ttl` is set; 0 = session cookie), used as the key for this
// request and returned through `lastSetCookie` so the caller can send it back as `set-cookie`.

import type { LoadBalancerConfig } from '../../../../mesh/src/proxy-config.ts';
import { EndpointPool, type EndpointState } from '../endpoint.ts';
import type { LbContext, LoadBalancer } from '../load-balancer.ts';
import { FNV_OFFSET, FNV_PRIME, fmix32, fnv1a, hashString } from '../../stable-hash.ts';


export type ConsistentHashConfig = Extract<LoadBalancerConfig, { consistentHash: unknown }>['consistentHash'];

export const DEFAULT_MINIMUM_RING_SIZE = 1024;
export const MAX_RING_POINTS = 1 << 20;
/** Points are packed as hash * OWNER_SPACE + owner index in a Float64 (exact up to 2^53) for sorting. */
const OWNER_SPACE = 2 ** 21;

/** Hash of (endpoint key, point number): continues the key's FNV state over the 4 bytes of `j`. */
function pointHash(keyState: number, j: number): number {
  let h = keyState;
  h = Math.imul(h ^ 0x5f /* _ */, FNV_PRIME);
  h = Math.imul(h ^ (j & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((j >>> 8) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((j >>> 16) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ (j >>> 24), FNV_PRIME);
  return fmix32(h >>> 0);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

const HEADER = 0;
const COOKIE = 1;
const SOURCE_IP = 2;
const QUERY = 3;
const NONE = 4;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

export class RingHashLoadBalancer implements LoadBalancer {
  private readonly pool: EndpointPool;
  /** Endpoints sorted by key; ring owner indexes point here. */
  private readonly owners: EndpointState[];
  private readonly ringHashes: Uint32Array;
  private readonly ringOwners: Uint32Array;
  private readonly source: number;
  /** Lowercase header name, cookie name or query parameter name. */
  private readonly keyName: string;
  /** `; Max-Age=…; Path=…; HttpOnly`, or undefined when cookies are not generated (no ttl). */
  private readonly cookieSuffix: string | undefined;
  private setCookie: string | undefined = undefined;

  constructor(config: ConsistentHashConfig, endpoints: readonly EndpointState[], panicThresholdPercent = 0) {
    this.pool = new EndpointPool(endpoints, panicThresholdPercent);
    if (config.httpHeaderName !== undefined) {
      this.source = HEADER;
      this.keyName = config.httpHeaderName.toLowerCase();
    } else if (config.httpCookie !== undefined) {
      this.source = COOKIE;
      this.keyName = config.httpCookie.name;
    } else if (config.useSourceIp === true) {
      this.source = SOURCE_IP;
      this.keyName = '';
    } else if (config.httpQueryParameterName !== undefined) {
      this.source = QUERY;
      this.keyName = config.httpQueryParameterName;
    } else {
      this.source = NONE;
      this.keyName = '';
    }
    const cookie = config.httpCookie;
    if (this.source === COOKIE && cookie !== undefined && cookie.ttlSeconds !== undefined) {
      const maxAge = cookie.ttlSeconds > 0 ? `; Max-Age=${Math.floor(cookie.ttlSeconds)}` : '';
      const path = cookie.path !== undefined && cookie.path !== '' ? `; Path=${cookie.path}` : '';
      this.cookieSuffix = `${maxAge}${path}; HttpOnly`;
    } else {
      this.cookieSuffix = undefined;
    }

    this.owners = endpoints.slice().sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const units = this.owners.map((e) => Math.max(1, Math.round(e.weight)));
    const g = units.reduce(gcd, 0);
    let sumUnits = 0;
    for (let i = 0; i < units.length; i++) {
      units[i] = units[i]! / g;
      sumUnits += units[i]!;
    }
    let perUnit = Math.max(1, Math.floor(config.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE));
    if (perUnit * sumUnits > MAX_RING_POINTS) perUnit = Math.max(1, Math.floor(MAX_RING_POINTS / sumUnits));

    const packed = new Float64Array(perUnit * sumUnits);
    let k = 0;
    for (let i = 0; i < this.owners.length; i++) {
      const key = this.owners[i]!.key;
      const state = fnv1a(key, 0, key.length, FNV_OFFSET);
      const count = perUnit * units[i]!;
      for (let j = 0; j < count; j++) packed[k++] = pointHash(state, j) * OWNER_SPACE + i;
    }
    packed.sort();
    this.ringHashes = new Uint32Array(packed.length);
    this.ringOwners = new Uint32Array(packed.length);
    for (let p = 0; p < packed.length; p++) {
      const v = packed[p]!;
      const h = Math.floor(v / OWNER_SPACE);
      this.ringHashes[p] = h;
      this.ringOwners[p] = v - h * OWNER_SPACE;
    }
  }

  get lastSetCookie(): string | undefined {
    return this.setCookie;
  }

  get panic(): boolean {
    return this.pool.panic;
  }

  /** Number of points on the ring. */
  get ringSize(): number {
    return this.ringHashes.length;
  }

  pick(ctx: LbContext): EndpointState | undefined {
    this.setCookie = undefined;
    const pool = this.pool;
    if (pool.refresh().length === 0) return undefined;
    let h = -1;
    switch (this.source) {
      case HEADER:
        h = this.headerHash(ctx.headers);
        break;
      case COOKIE:
        h = this.cookieHash(ctx.headers);
        if (h < 0 && this.cookieSuffix !== undefined) h = this.generateCookie();
        break;
      case SOURCE_IP:
        if (ctx.sourceIp !== undefined) h = hashString(ctx.sourceIp);
        break;
      case QUERY:
        h = this.queryHash(ctx.path);
        break;
    }
    if (h < 0) return pool.randomPick(Math.random());
    return this.lookup(h);
  }

  /** The owner of the first point at or after `h` (wrapping), skipping unhealthy owners unless in panic. */
  private lookup(h: number): EndpointState {
    const ring = this.ringHashes;
    const len = ring.length;
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    let idx = lo === len ? 0 : lo;
    let owner = this.owners[this.ringOwners[idx]!]!;
    if (this.pool.panic) return owner;
    for (let steps = 1; !owner.healthy && steps < len; steps++) {
      idx = idx + 1 === len ? 0 : idx + 1;
      owner = this.owners[this.ringOwners[idx]!]!;
    }
    return owner;
  }

  private headerHash(headers: readonly string[]): number {
    const name = this.keyName;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i] === name) return hashString(headers[i + 1]!);
    }
    return -1;
  }

  /** Hash of the cookie's value (quotes stripped), looking through every `cookie` header. */
  private cookieHash(headers: readonly string[]): number {
    const name = this.keyName;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i] !== 'cookie') continue;
      const v = headers[i + 1]!;
      let pos = 0;
      while (pos < v.length) {
        while (pos < v.length && isSpace(v.charCodeAt(pos))) pos++;
        let semi = v.indexOf(';', pos);
        if (semi === -1) semi = v.length;
        const eq = pos + name.length;
        if (eq < semi && v.charCodeAt(eq) === 0x3d /* = */ && v.startsWith(name, pos)) {
          let s = eq + 1;
          let e = semi;
          while (e > s && isSpace(v.charCodeAt(e - 1))) e--;
          if (e - s >= 2 && v.charCodeAt(s) === 0x22 && v.charCodeAt(e - 1) === 0x22) {
            s++;
            e--;
          }
          return hashString(v, s, e);
        }
        pos = semi + 1;
      }
    }
    return -1;
  }

  /** Hash of the raw value of the first `name` query parameter (`?name` alone hashes the empty value). */
  private queryHash(path: string | undefined): number {
    if (path === undefined) return -1;
    const q = path.indexOf('?');
    if (q === -1) return -1;
    let end = path.indexOf('#', q);
    if (end === -1) end = path.length;
    const name = this.keyName;
    let pos = q + 1;
    while (pos < end) {
      let amp = path.indexOf('&', pos);
      if (amp === -1 || amp > end) amp = end;
      const after = pos + name.length;
      if (after <= amp && path.startsWith(name, pos)) {
        if (after === amp) return hashString(path, after, after);
        if (path.charCodeAt(after) === 0x3d /* = */) return hashString(path, after + 1, amp);
      }
      pos = amp + 1;
    }
    return -1;
  }

  /**
   * A fresh random cookie value; the request is placed by its hash, as later requests carrying it will be.
   * (Envoy derives the value from the downstream address; in a sidecar that is usually the local app for
   * every request, which would pin all new clients to one endpoint, so the value is random here.)
   */
  private generateCookie(): number {
    const hi = (Math.random() * 0x100000000) >>> 0;
    const lo = (Math.random() * 0x100000000) >>> 0;
    const value = hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
    this.setCookie = `${this.keyName}="${value}"${this.cookieSuffix!}`;
    return hashString(value);
  }
}
