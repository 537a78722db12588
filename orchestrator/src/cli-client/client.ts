// The CLI's side of the orchestrator's REST API: where the server is, which token to send (and where
// it came from, so a 401 can say so), requests, and failures turned into messages that say what to do.
//
// Token, first found wins:
//   1. --token TOKEN
//   2. $WASMESH_TOKEN
//   3. <data-dir>/admin-token (the file the orchestrator writes on first start; --data-dir, default
//      .wasmesh/orchestrator, relative to the working directory)

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatPath } from '../../../mesh/src/validate.ts';

export const DEFAULT_SERVER = 'http://127.0.0.1:15014';
export const DEFAULT_DATA_DIR = '.wasmesh/orchestrator';
const REQUEST_TIMEOUT_MS = 30_000;

/** Exit codes every API command uses. */
export const Exit = { Ok: 0, Failure: 1, Usage: 2 } as const;

export interface TokenChoice {
  token: string | undefined;
  /** Human description of where the token came from (or where none was found). */
  source: string;
}

export function resolveToken(opts: { token?: string; dataDir?: string; env?: NodeJS.ProcessEnv }): TokenChoice {
  const env = opts.env ?? process.env;
  if (opts.token !== undefined && opts.token.trim() !== '') return { token: opts.token.trim(), source: '--token' };
  const fromEnv = env.WASMESH_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: '$WASMESH_TOKEN' };
  const file = join(opts.dataDir ?? DEFAULT_DATA_DIR, 'admin-token');
  if (existsSync(file)) {
    try {
      const text = readFileSync(file, 'utf8').trim();
      if (text) return { token: text, source: `the admin token file ${file}` };
    } catch (err) {
      return { token: undefined, source: `none (${file} is not readable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
    }
  }
  return { token: undefined, source: `none (no --token, no $WASMESH_TOKEN, no ${file})` };
}

/** One error of the API's `{ code, errors: [{ document, path, message }] }` body. */
export interface ApiErrorItem {
  document: string;
  path: string;
  message: string;
}

/** A failure the CLI reports and exits 1 on; `lines` are printed one per line. */
export class CliError extends Error {
  readonly lines: string[];
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly errors: ApiErrorItem[];
  constructor(lines: string[], opts: { status?: number; code?: string; errors?: ApiErrorItem[] } = {}) {
    super(lines.join('\n'));
    this.name = 'CliError';
    this.lines = lines;
    this.status = opts.status;
    this.code = opts.code;
    this.errors = opts.errors ?? [];
  }
}

/** A usage mistake (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export interface RequestOptions {
  query?: Record<string, string | undefined>;
  /** A JSON value, or bytes (sent as application/wasm). */
  body?: unknown;
  /** Statuses returned to the caller instead of thrown (e.g. 404 for "does it exist?"). */
  accept?: readonly number[];
}

export class ApiClient {
  readonly server: string;
  readonly token: TokenChoice;
  readonly dataDir: string;

  constructor(opts: { server?: string; token?: string; dataDir?: string; env?: NodeJS.ProcessEnv }) {
    const env = opts.env ?? process.env;
    this.server = normalizeServer(opts.server ?? env.WASMESH_SERVER ?? DEFAULT_SERVER);
    this.dataDir = opts.dataDir ?? DEFAULT_DATA_DIR;
    this.token = resolveToken({ ...(opts.token !== undefined ? { token: opts.token } : {}), dataDir: this.dataDir, env });
  }

  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(path, `${this.server}/`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token.token) headers.authorization = `Bearer ${this.token.token}`;
    let body: string | Uint8Array<ArrayBuffer> | undefined;
    if (opts.body instanceof Uint8Array) {
      headers['content-type'] = 'application/wasm';
      body = new Uint8Array(opts.body); // a copy backed by a plain ArrayBuffer (what fetch's types take)
    } else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (err) {
      throw this.#connectionError(err);
    }
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.ok || opts.accept?.includes(res.status)) return { status: res.status, body: parsed as T };
    throw this.#httpError(method, url, res.status, parsed);
  }

  #connectionError(err: unknown): CliError {
    const e = err as Error & { cause?: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] } };
    const code = e.cause?.code ?? e.cause?.errors?.[0]?.code ?? (e.name === 'TimeoutError' ? 'ETIMEDOUT' : undefined);
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ECONNRESET' || code === 'EAI_AGAIN') {
      return new CliError([
        `cannot reach the orchestrator at ${this.server} (${code})`,
        'is the orchestrator running? start it with `wasmesh orchestrator` (or point at it with --server URL or $WASMESH_SERVER)',
      ]);
    }
    if (code === 'ETIMEDOUT') {
      return new CliError([`no answer from the orchestrator at ${this.server} within ${REQUEST_TIMEOUT_MS / 1000} s`, 'check that --server names the REST API (default port 15014), not the gRPC port']);
    }
    return new CliError([`request to ${this.server} failed: ${e.cause?.message ?? e.message}`]);
  }

  #httpError(method: string, url: URL, status: number, body: unknown): CliError {
    const b = typeof body === 'object' && body !== null ? (body as { code?: unknown; errors?: unknown }) : {};
    const errors: ApiErrorItem[] = Array.isArray(b.errors)
      ? (b.errors as unknown[]).map((e) => {
          const x = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
          return { document: String(x.document ?? 'request'), path: String(x.path ?? ''), message: String(x.message ?? '') };
        })
      : [{ document: 'request', path: '', message: typeof body === 'string' && body !== '' ? body.slice(0, 500) : `HTTP ${status}` }];
    const code = typeof b.code === 'string' ? b.code : undefined;
    const opts = { status, errors, ...(code !== undefined ? { code } : {}) };
    if (status === 401) {
      const why = errors[0]?.message ?? 'unauthenticated';
      return new CliError(
        [
          `the orchestrator at ${this.server} refused the request (401): ${why}`,
          `token used: ${this.token.source}`,
          `get a token: the orchestrator writes an admin token to <data-dir>/admin-token on first start (pass --token "$(cat .wasmesh/orchestrator/admin-token)", set WASMESH_TOKEN, or run from the directory holding .wasmesh/); more tokens: wasmesh token create --role admin|viewer|editor --server <url> with an admin token (or --data-dir <data-dir> on the orchestrator's host)`,
        ],
        opts,
      );
    }
    if (status === 403) {
      return new CliError([`forbidden (403): ${errors.map((e) => e.message).join('; ')}`, `token used: ${this.token.source}`], opts);
    }
    const lines = errors.map(formatApiError);
    if (status === 404 && errors.length === 1 && errors[0]!.document === 'request' && errors[0]!.message.startsWith('no route')) {
      lines.push(`${method} ${url.pathname} does not exist on ${this.server}: is --server the wasmesh orchestrator's REST API, and is it as new as this CLI?`);
    }
    return new CliError(lines, opts);
  }
}

/** `document: field.path: reason` (path left out when the error is about the whole document). */
export function formatApiError(e: ApiErrorItem): string {
  return e.path ? `${e.document}: ${e.path.startsWith('/') ? formatPath(e.path) : e.path}: ${e.message}` : `${e.document}: ${e.message}`;
}

function normalizeServer(value: string): string {
  let v = value.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) v = `http://${v}`;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new UsageError(`--server must be a URL like ${DEFAULT_SERVER} (got ${JSON.stringify(value)})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--server must be http:// or https:// (got ${JSON.stringify(value)})`);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}
