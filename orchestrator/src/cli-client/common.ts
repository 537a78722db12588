// Shared by the API commands (apply, get, delete, proxy-status, filter deploy): the connection
// options, kind names, tables, ages, and one wrapper that maps failures to exit codes
// (0 ok, 1 failure, 2 usage).

import { PLURALS, kindFromUrl } from '../http/kinds.ts';
import { RESOURCE_KINDS, type ResourceKind } from '../store/types.ts';
import { ApiClient, CliError, DEFAULT_DATA_DIR, DEFAULT_SERVER, Exit, UsageError } from './client.ts';
import { closest } from '../../../mesh/src/suggest.ts';
import { helpFor } from './help-text.ts';

export interface Output {
  write(text: string): unknown;
}

export interface Io {
  out: Output;
  err: Output;
  env?: NodeJS.ProcessEnv;
}

/** parseArgs options every API command takes. */
export const connectionOptions = {
  server: { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const connectionUsage = `Connection:
  --server URL            the orchestrator's REST API (default ${DEFAULT_SERVER}, or $WASMESH_SERVER)
  --token TOKEN           bearer token (default: $WASMESH_TOKEN, else <data-dir>/admin-token)
  --data-dir DIR          the orchestrator's data dir, for its admin-token file (default ${DEFAULT_DATA_DIR})
`;

/**
 * `--token X` as `--token=X`: tokens are base64url and one in 64 starts with "-", which parseArgs
 * would otherwise take for an option ("argument is ambiguous").
 */
export function joinTokenArg(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--token' && i + 1 < argv.length) {
      out.push(`--token=${argv[i + 1]}`);
      i++;
    } else out.push(argv[i]!);
  }
  return out;
}

export function clientFrom(values: { server?: string; token?: string; 'data-dir'?: string }, env?: NodeJS.ProcessEnv): ApiClient {
  return new ApiClient({
    ...(values.server !== undefined ? { server: values.server } : {}),
    ...(values.token !== undefined ? { token: values.token } : {}),
    ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
    ...(env ? { env } : {}),
  });
}

/**
 * Runs a command body: usage errors print the message and the usage (exit 2), CliErrors print
 * their lines (exit 1). `name` is e.g. "get" or "filter deploy".
 */
export async function runCommand(name: string, usage: string, io: Io, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err.write(`wasmesh ${name}: ${(e as Error).message}\n\n${helpFor(usage, io.err)}`);
      return Exit.Usage;
    }
    if (e instanceof CliError) {
      io.err.write(e.lines.map((l, i) => (i === 0 ? `wasmesh ${name}: ${l}` : `  ${l}`)).join('\n') + '\n');
      return Exit.Failure;
    }
    throw e;
  }
}

const SHORT_NAMES: Readonly<Record<string, ResourceKind>> = {
  se: 'ServiceEntry',
  we: 'WorkloadEntry',
  vs: 'VirtualService',
  dr: 'DestinationRule',
  wp: 'WasmPlugin',
  pa: 'PeerAuthentication',
  ap: 'AuthorizationPolicy',
  ra: 'RequestAuthentication',
  rlp: 'RateLimitPolicy',
  gw: 'Gateway',
  secret: 'TLSSecret',
  telemetry: 'Telemetry',
};

/** A kind as a user types it: VirtualService, virtualservice(s), vs. */
export function parseKind(value: string): ResourceKind {
  const kind = kindFromUrl(value) ?? kindFromUrl(value.toLowerCase()) ?? SHORT_NAMES[value.toLowerCase()];
  if (!kind) {
    const guess = closest(value, [...RESOURCE_KINDS, ...RESOURCE_KINDS.map((k) => PLURALS[k])]);
    throw new UsageError(`unknown kind "${value}": ${guess ? `did you mean "${guess}"? ` : ''}use one of ${RESOURCE_KINDS.map((k) => `${PLURALS[k]} (${Object.keys(SHORT_NAMES).find((s) => SHORT_NAMES[s] === k)})`).join(', ')}`);
  }
  return kind;
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** kubectl-style age: 45s, 12m, 3h, 5d. */
export function age(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '<unknown>';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '<unknown>';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** A content-hash version shortened for tables. */
export function shortVersion(v: string | undefined): string {
  if (!v) return '-';
  return v.replace(/^sha256:/, '').slice(0, 12);
}
