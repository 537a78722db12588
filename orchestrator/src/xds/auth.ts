// Who may use the discovery service: a bearer token with role proxy (or admin). A proxy token bound
// to a namespace (and optionally a service account) may only subscribe as a workload there.

import * as grpc from '@grpc/grpc-js';

export interface TokenClaims {
  role: string;
  namespace?: string;
  serviceAccount?: string;
}

/** Implemented by the API's token store: the claims of a valid token, undefined otherwise. */
export interface TokenVerifier {
  verify(token: string): TokenClaims | undefined;
}

/** An error carrying the gRPC status to end the call with. */
export interface CallError {
  code: grpc.status;
  details: string;
}

const ROLES_ALLOWED = new Set(['proxy', 'admin']);

/**
 * The caller's claims, or the status to refuse it with. Without a verifier every caller is allowed
 * (as an admin: a development setup, or tests).
 */
export function authenticate(metadata: grpc.Metadata, tokens: TokenVerifier | undefined): { ok: true; claims: TokenClaims } | { ok: false; error: CallError } {
  if (tokens === undefined) return { ok: true, claims: { role: 'admin' } };
  const header = metadata.get('authorization')[0];
  const value = typeof header === 'string' ? header : header?.toString('utf8');
  const m = value === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(value);
  if (!m) return { ok: false, error: { code: grpc.status.UNAUTHENTICATED, details: 'missing bearer token: pass "authorization: Bearer <token>" metadata (wasmesh proxy --token-file)' } };
  let claims: TokenClaims | undefined;
  try {
    claims = tokens.verify(m[1]!);
  } catch {
    claims = undefined;
  }
  if (!claims) return { ok: false, error: { code: grpc.status.UNAUTHENTICATED, details: 'invalid or revoked token' } };
  if (!ROLES_ALLOWED.has(claims.role)) {
    return { ok: false, error: { code: grpc.status.PERMISSION_DENIED, details: `role ${claims.role} cannot stream config or fetch modules (needs proxy or admin)` } };
  }
  return { ok: true, claims };
}

/** Whether the claims allow subscribing as this workload; the refusal otherwise. */
export function authorizeWorkload(claims: TokenClaims, workload: { namespace: string; serviceAccount: string }): CallError | undefined {
  if (claims.role === 'admin') return undefined;
  if (claims.namespace !== undefined && claims.namespace !== workload.namespace) {
    return { code: grpc.status.PERMISSION_DENIED, details: `token is bound to namespace ${claims.namespace}, cannot subscribe as a workload in ${workload.namespace}` };
  }
  if (claims.serviceAccount !== undefined && claims.serviceAccount !== workload.serviceAccount) {
    return { code: grpc.status.PERMISSION_DENIED, details: `token is bound to service account ${claims.serviceAccount}, cannot subscribe as ${workload.serviceAccount}` };
  }
  return undefined;
}
