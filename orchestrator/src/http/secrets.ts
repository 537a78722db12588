// TLSSecret through the REST API: only admin tokens write one (an editor may not, even in its own
// namespace: a key is not configuration), and every read (get, list, watch, the answers of writes,
// the console) shows its redacted form: metadata, fingerprints and the certificate's public facts
// (mesh/src/tls-secret.ts). The store keeps the PEM; it leaves the orchestrator only inside the
// ProxyConfig of a gateway proxy of the secret's namespace whose Gateway names it.

import type { FastifyRequest } from 'fastify';
import { redactTlsSecret, TLS_SECRET_KIND } from '../../../mesh/src/tls-secret.ts';
import { ErrorCode, HttpError } from './errors.ts';

/** A resource as an API read may show it. */
export function shown<R extends { kind: string; spec?: unknown }>(resource: R): R | ReturnType<typeof redactTlsSecret<R>> {
  return resource.kind === TLS_SECRET_KIND ? redactTlsSecret(resource) : resource;
}

/** Refuses (403, naming each document) a write of TLSSecrets by anyone but an admin. */
export function checkSecretWrites(request: FastifyRequest, documents: ReadonlyArray<{ kind: unknown; document: string }>): void {
  const role = request.identity?.role;
  if (role === 'admin') return;
  const errors = documents
    .filter((d) => d.kind === TLS_SECRET_KIND)
    .map((d) => ({ document: d.document, path: '/kind', message: `a ${role ?? 'non-admin'} token cannot write a TLSSecret: secrets are written with an admin token only` }));
  if (errors.length > 0) throw new HttpError(403, ErrorCode.Forbidden, errors);
}
