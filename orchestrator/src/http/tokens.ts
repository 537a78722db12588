// POST /tokens: a new API token from the running orchestrator's own token store, for
// `wasmesh token create --server`. A token made by hand in some other data dir is one this
// orchestrator would reject; made here, it is valid at once. The token is in the answer only (the
// store keeps its sha256). Mesh-wide: admin tokens only (an editor is refused, as for the CA routes).
import type { FastifyInstance } from 'fastify';
import { ROLES, checkBinding, type Role, type TokenBinding, type TokenStore } from '../auth/tokens.ts';
import { ErrorCode, HttpError } from './errors.ts';
import { writerOf } from './writer.ts';

export interface TokenRoutesOptions {
  tokens: TokenStore;
}

interface CreateTokenBody {
  role: Role;
  namespace?: string;
  serviceAccount?: string;
}

export async function tokenRoutes(app: FastifyInstance, opts: TokenRoutesOptions): Promise<void> {
  app.post<{ Body: CreateTokenBody }>(
    '/tokens',
    {
      config: { access: 'write' },
      schema: {
        summary: 'Create an API token (shown in this answer only; the orchestrator keeps its sha256)',
        tags: ['tokens'],
        body: {
          type: 'object',
          required: ['role'],
          additionalProperties: false,
          properties: {
            role: { type: 'string', enum: [...ROLES] },
            namespace: { type: 'string', description: 'editor and proxy tokens: the namespace they are bound to' },
            serviceAccount: { type: 'string', description: 'proxy tokens: the service account they are bound to' },
          },
        },
      },
    },
    async (request, reply) => {
      const { role, namespace, serviceAccount } = request.body;
      const binding: TokenBinding | undefined =
        namespace !== undefined || serviceAccount !== undefined ? { namespace: namespace ?? '', ...(serviceAccount !== undefined ? { serviceAccount } : {}) } : undefined;
      try {
        checkBinding(role, binding);
      } catch (err) {
        throw new HttpError(400, ErrorCode.Invalid, [{ document: 'request', path: '', message: (err as Error).message }]);
      }
      const token = opts.tokens.create(role, binding);
      const id = opts.tokens.verify(token)!.id;
      request.log.info({ id, role, createdBy: writerOf(request) }, 'token created');
      return reply.code(201).send({ token, id, role, ...(binding ?? {}) });
    },
  );
}
