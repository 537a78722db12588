// The CA's operator endpoints: read the trust bundle; rotate the root (a new root joins the bundle and
// signs from now on: proxies re-issue when they see it); retire old roots once workloads were re-issued.
import type { FastifyInstance } from 'fastify';
import type { CertificateAuthority } from '../certs/ca.ts';

export interface CaRoutesOptions {
  ca?: Pick<CertificateAuthority, 'trustBundle' | 'trustDomain' | 'rotateRoot' | 'retireOldRoots'>;
}

export async function caRoutes(app: FastifyInstance, opts: CaRoutesOptions): Promise<void> {
  const unavailable = { code: 'WASMESH_ORCH_NO_CA', errors: [{ document: '', path: '', message: 'this orchestrator runs without a certificate authority (start it with the gRPC listener)' }] };
  const bundle = () => ({ trustDomain: opts.ca!.trustDomain, roots: opts.ca!.trustBundle() });
  app.get('/ca/trust-bundle', { config: { access: 'read', namespaces: 'none' }, schema: { summary: 'The trust bundle: every root proxies accept', tags: ['ca'] } }, async (_req, reply) => {
    if (!opts.ca) return reply.code(503).send(unavailable);
    return bundle();
  });
  app.post('/ca/rotate', { config: { access: 'write' }, schema: { summary: 'Add a new root that signs from now on; both roots stay trusted', tags: ['ca'] } }, async (_req, reply) => {
    if (!opts.ca) return reply.code(503).send(unavailable);
    await opts.ca.rotateRoot();
    return bundle();
  });
  app.post('/ca/retire', { config: { access: 'write' }, schema: { summary: 'Remove every root but the newest (after workloads were re-issued)', tags: ['ca'] } }, async (_req, reply) => {
    if (!opts.ca) return reply.code(503).send(unavailable);
    await opts.ca.retireOldRoots();
    return bundle();
  });
}
