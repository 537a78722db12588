// Who may call which route. Every route declares `config.access`; the onRequest hook below
// authenticates the bearer token (401) and checks the role against the access (403) before the
// body is even read.
//
//   access    admin  viewer  proxy
//   public      x      x       x     (no token needed: GET /healthz)
//   read        x      x             (get and list resources and modules, OpenAPI)
//   watch       x      x       x     (watch streams: a proxy may stream config)
//   module      x      x       x     (module bytes by digest)
//   write       x                    (create, update, delete, apply, upload)

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, errorBody } from '../http/errors.ts';
import type { Role, TokenIdentity, TokenStore } from './tokens.ts';

export type Access = 'public' | 'read' | 'watch' | 'module' | 'write';

const ALLOWED: Readonly<Record<Exclude<Access, 'public'>, readonly Role[]>> = {
  read: ['admin', 'viewer'],
  watch: ['admin', 'viewer', 'proxy'],
  module: ['admin', 'viewer', 'proxy'],
  write: ['admin'],
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (see auth/access.ts); a function decides per request. Default: write. */
    access?: Access | ((request: FastifyRequest) => Access);
  }
  interface FastifyRequest {
    /** The caller, once authenticated. */
    identity?: TokenIdentity;
  }
}

export function mayAccess(role: Role, access: Access): boolean {
  return access === 'public' || ALLOWED[access].includes(role);
}

/** Parses `Authorization: Bearer <token>`. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

export function installAuth(app: FastifyInstance, tokens: TokenStore): void {
  app.decorateRequest('identity', undefined);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const declared = request.routeOptions.config?.access;
    // Unknown routes (no config) still need a token: they answer 404 only to authenticated callers.
    const access: Access = typeof declared === 'function' ? declared(request) : (declared ?? 'write');
    if (access === 'public') return;
    const token = bearerToken(request.headers.authorization);
    if (!token) {
      reply.header('www-authenticate', 'Bearer realm="wasmesh"');
      return reply.code(401).send(errorBody(ErrorCode.Unauthenticated, [{ document: 'request', path: '', message: 'missing bearer token: send "Authorization: Bearer <token>" (the admin token is in <data-dir>/admin-token)' }]));
    }
    const identity = tokens.verify(token);
    if (!identity) {
      reply.header('www-authenticate', 'Bearer realm="wasmesh", error="invalid_token"');
      return reply.code(401).send(errorBody(ErrorCode.Unauthenticated, [{ document: 'request', path: '', message: 'invalid or revoked token' }]));
    }
    request.identity = identity;
    if (!mayAccess(identity.role, access)) {
      return reply.code(403).send(errorBody(ErrorCode.Forbidden, [{ document: 'request', path: '', message: `a ${identity.role} token cannot ${describe(access)}` }]));
    }
  });
}

function describe(access: Access): string {
  switch (access) {
    case 'read':
      return 'read resources (use a viewer or admin token)';
    case 'watch':
      return 'watch resources';
    case 'module':
      return 'fetch modules';
    case 'write':
      return 'change resources or modules (use an admin token)';
    default:
      return access;
  }
}
