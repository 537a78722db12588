// Who may change a proxy through its admin endpoint, and which requests it refuses whoever sends them.
//
// Reads (GET, HEAD) are open to whoever reaches the port, which binds loopback unless --admin-host
// says otherwise. Every other method is a write (module overrides, the log level) and needs either
//   - the admin token (--admin-token-file): `Authorization: Bearer <token>`; 401 without it, 403 with
//     another one; or
//   - --admin-writes: writes from a loopback peer need no token (`wasmesh filter dev` on a laptop);
// with neither, writes are refused (403) with a message saying how to enable them.
//
// Whatever the auth, a web page in the operator's browser must not be able to drive admin:
//   - Host must name the admin itself (127.0.0.1, localhost, [::1] or the --admin-host address, with
//     its port or none, as scrapers and scripts send it): a DNS-rebinding page reaches loopback under
//     its own name, which a browser puts in Host;
//   - Origin, when sent, must be the admin's own origin; Sec-Fetch-Site, when sent, same-origin or none;
//   - a write may not carry a content type a form or a fetch without preflight can send.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type http from 'node:http';
import { isIP } from 'node:net';

export interface AdminWriteAccess {
  /** The token every write must present (read from --admin-token-file). */
  token?: string;
  /** Writes from loopback peers need no token (--admin-writes). */
  loopbackWrites?: boolean;
}

/** Why a request is refused: its status and a message saying what to do instead. */
export interface Refusal {
  status: number;
  error: string;
  headers?: Record<string, string>;
}

export const LOOPBACK_HOST = '127.0.0.1';

/** Shortest token --admin-token-file accepts (a guessable token is no token). */
export const MIN_TOKEN_LENGTH = 16;

/** Content types a browser sends without a CORS preflight (a form post or a plain fetch). */
const SIMPLE_CONTENT_TYPES = new Set(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data']);

const ENABLE_WRITES =
  'start the proxy with --admin-token-file FILE (then send "Authorization: Bearer <token>") or with --admin-writes (loopback callers, no token)';

export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, '');
  if (a === 'localhost' || a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** GET and HEAD read; every other method changes something. */
export function isWrite(method: string | undefined): boolean {
  return method !== 'GET' && method !== 'HEAD';
}

/** The media type of a content-type header, lowercased, without parameters ('' when absent). */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * Reads the admin token from `path`, refusing (as ssh does with a private key) a file that its group
 * or others may read or write, and a token short enough to guess. Errors name the file.
 */
export function readAdminTokenFile(path: string): string {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    mode = st.mode & 0o777;
  } catch (err) {
    throw new Error(`--admin-token-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(`--admin-token-file ${path}: permissions ${mode.toString(8).padStart(4, '0')} are too open: the token must be readable by its owner only (chmod 600 ${path})`);
  }
  const token = readFileSync(path, 'utf8').trim();
  if (/\s/.test(token)) throw new Error(`--admin-token-file ${path}: the token is one line without spaces`);
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new Error(`--admin-token-file ${path}: the token has ${token.length} characters, use at least ${MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 32 > ${path})`);
  }
  return token;
}

/** Compares in constant time (over hashes, so the lengths do not show either). */
export function tokenMatches(expected: string, presented: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(expected), digest(presented));
}

/** The checks of one admin (or status) listener; `listening(port)` once its port is known. */
export class AdminGuard {
  readonly #access: AdminWriteAccess;
  readonly #bindHost: string;
  /** Host header values (lowercase) that name this listener; undefined: any (a wildcard bind). */
  #hosts: Set<string> | undefined = new Set();
  #origins = new Set<string>();

  constructor(access: AdminWriteAccess, bindHost: string) {
    if (access.token !== undefined && access.token.length < MIN_TOKEN_LENGTH) throw new Error(`admin token shorter than ${MIN_TOKEN_LENGTH} characters`);
    this.#access = access;
    this.#bindHost = bindHost;
  }

  /** The names the listener answers to, once it listens on `port`. */
  listening(port: number): void {
    const names = ['127.0.0.1', 'localhost', '[::1]'];
    const bound = this.#bindHost.includes(':') && !this.#bindHost.startsWith('[') ? `[${this.#bindHost}]` : this.#bindHost;
    if (!names.includes(bound)) names.push(bound);
    const wildcard = this.#bindHost === '0.0.0.0' || this.#bindHost === '::';
    // Bound to every address, it is reached under names it cannot know: the Host check is off (the
    // warning at start says so); Origin still has to be one of these.
    this.#hosts = wildcard ? undefined : new Set(names.flatMap((n) => [`${n}:${port}`, n].map((h) => h.toLowerCase())));
    this.#origins = new Set(names.map((n) => `http://${n}:${port}`.toLowerCase()));
  }

  /** Refuses requests a browser sends on behalf of another site (any method, any path). */
  checkBrowser(req: http.IncomingMessage, checkHost = true): Refusal | undefined {
    const host = (req.headers.host ?? '').toLowerCase();
    if (checkHost && this.#hosts && !this.#hosts.has(host)) {
      return { status: 403, error: `admin answers requests addressed to ${[...this.#hosts].filter((h) => /:\d+$/.test(h)).join(', ')} (or without the port) only, not to Host: ${req.headers.host ?? '(none)'} (a web page that renamed loopback, DNS rebinding)` };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.#origins.has(origin.toLowerCase())) {
      return { status: 403, error: `cross-site request refused: Origin ${origin} is not this admin endpoint` };
    }
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') {
      return { status: 403, error: `cross-site request refused (Sec-Fetch-Site: ${site})` };
    }
    return undefined;
  }

  /** Whether this write may go on: the token, or --admin-writes and a loopback peer. */
  authorizeWrite(req: http.IncomingMessage): Refusal | undefined {
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    const { token, loopbackWrites } = this.#access;
    if (token !== undefined) {
      if (presented !== undefined) return tokenMatches(token, presented) ? undefined : { status: 403, error: 'wrong admin token' };
      if (!loopbackWrites || !isLoopbackAddress(req.socket.remoteAddress ?? '')) {
        return { status: 401, error: 'admin writes need the admin token: send "Authorization: Bearer <token>" (the token in --admin-token-file)', headers: { 'www-authenticate': 'Bearer realm="wasmesh-admin"' } };
      }
      return undefined;
    }
    if (loopbackWrites) {
      if (isLoopbackAddress(req.socket.remoteAddress ?? '')) return undefined;
      return { status: 403, error: `--admin-writes accepts writes from loopback only, not from ${req.socket.remoteAddress}; use --admin-token-file for remote writes` };
    }
    return { status: 403, error: `admin writes are disabled on this proxy: ${ENABLE_WRITES}` };
  }

  /** Refuses a write body a browser could send without a preflight; `allowed` names what the endpoint takes. */
  static checkWriteBody(req: http.IncomingMessage, allowed?: readonly string[]): Refusal | undefined {
    const type = mediaType(req.headers['content-type']);
    if (allowed) {
      if (allowed.includes(type)) return undefined;
      return { status: 415, error: `send the body as ${allowed.join(' or ')}${type ? `, not ${type}` : ' (no content-type was given)'}` };
    }
    if (SIMPLE_CONTENT_TYPES.has(type)) return { status: 415, error: `content-type ${type} is refused on admin writes (a browser form could send it)` };
    return undefined;
  }
}
