// Who may call which route. Every route declares `config.access`; the onRequest hook below
// authenticates the bearer token (401) and checks the role against the access (403) before the
// body is even read.
//
//   access    admin  viewer  editor  proxy
//   public      x      x       x       x     (no token needed: GET /healthz)
//   read        x      x       x             (get and list resources and modules, OpenAPI)
//   watch       x      x       x       x     (watch streams: a proxy may stream config)
//   module      x      x       x       x     (module bytes by digest)
//   write       x              x             (create, update, delete, apply, upload)
//
// An editor is bound to one namespace, as a Kubernetes RoleBinding binds a Role: it reads and writes
// that namespace only. Every route says where its namespace comes from (`config.namespaces`, see
// NamespaceSource); a route that says nothing is mesh-wide (CA rotation) and refused to an editor.
// Modules are content-addressed and mesh-wide: an editor may list and upload them, and uses them
// through WasmPlugins of its own namespace.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ROOT_NAMESPACE } from '../../../mesh/src/documents.ts';
import { ErrorCode, HttpError, errorBody } from '../http/errors.ts';
import type { Role, TokenIdentity, TokenStore } from './tokens.ts';

export type Access = 'public' | 'read' | 'watch' | 'module' | 'write';

/**
 * Where a route's namespace is, for a token bound to one (editor):
 *   param  the :namespace of the URL
 *   query  ?namespace=, which an editor must give (without it the route covers every namespace)
 *   body   each document's metadata.namespace: the handler calls checkNamespaces once it parsed them
 *   none   the route is about no namespace (the kinds, modules, the trust bundle)
 */
export type NamespaceSource = 'param' | 'query' | 'body' | 'none';

const ALLOWED: Readonly<Record<Exclude<Access, 'public'>, readonly Role[]>> = {
  read: ['admin', 'viewer', 'editor'],
  watch: ['admin', 'viewer', 'editor', 'proxy'],
  module: ['admin', 'viewer', 'editor', 'proxy'],
  write: ['admin', 'editor'],
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (see auth/access.ts); a function decides per request. Default: write. */
    access?: Access | ((request: FastifyRequest) => Access);
    /** Where the route's namespace is (see NamespaceSource); absent: mesh-wide, refused to an editor. */
    namespaces?: NamespaceSource;
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
    if (identity.role === 'editor') {
      const refused = editorScope(request, identity, access);
      if (refused) return reply.code(403).send(errorBody(ErrorCode.Forbidden, [{ document: 'request', path: '', message: refused }]));
    }
  });
}

/** Why an editor may not call this route for this namespace; undefined when it may. */
function editorScope(request: FastifyRequest, identity: TokenIdentity, access: Access): string | undefined {
  const own = identity.namespace;
  const source = request.routeOptions.config?.namespaces;
  const verb = access === 'write' ? 'write in' : 'read';
  if (own === undefined) return 'this editor token is bound to no namespace: create a new one with --namespace';
  switch (source) {
    case 'none':
    case 'body':
      return undefined;
    case 'param':
      return outside(own, (request.params as { namespace?: string }).namespace ?? '', verb);
    case 'query': {
      const asked = (request.query as { namespace?: unknown }).namespace;
      if (typeof asked !== 'string' || asked === '') {
        return `an editor token of namespace ${own} reads that namespace only: name it (?namespace=${own}; on the command line -n ${own}), not every namespace`;
      }
      return outside(own, asked, verb);
    }
    default:
      return `an editor token of namespace ${own} cannot call ${request.method} ${request.routeOptions.url ?? request.url}: it is mesh-wide, use an admin token`;
  }
}

function outside(own: string, namespace: string, verb: string): string | undefined {
  if (namespace === own) return undefined;
  const root = namespace === ROOT_NAMESPACE ? ` (${ROOT_NAMESPACE} is the root namespace: what is there applies mesh-wide)` : '';
  return `an editor token of namespace ${own} cannot ${verb} namespace ${namespace}${root}`;
}

/**
 * For routes whose namespaces are in the body (`namespaces: 'body'`): refuses (403, naming each
 * document) when a namespace-bound caller names a namespace not its own. Others pass.
 */
export function checkNamespaces(request: FastifyRequest, documents: ReadonlyArray<{ document: string; namespace: string }>): void {
  const identity = request.identity;
  if (identity?.role !== 'editor') return;
  const own = identity.namespace ?? '';
  const errors = documents.flatMap((d) => {
    const refused = outside(own, d.namespace, 'write in');
    return refused ? [{ document: d.document, path: '/metadata/namespace', message: refused }] : [];
  });
  if (errors.length > 0) throw new HttpError(403, ErrorCode.Forbidden, errors);
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
      return 'change resources or modules (use an admin token, or an editor token of the namespace)';
    default:
      return access;
  }
}
