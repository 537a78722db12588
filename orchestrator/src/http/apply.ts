// POST /apply: many documents at once, all or nothing. The body is multi-document YAML
// (application/yaml) or JSON: one resource, an array of them, or a `kind: List`. Every document is
// validated together with the stored state; one bad document rejects the whole request (400, each
// error naming its document, e.g. "VirtualService default/reviews (apply#3)"), and nothing is
// written. Otherwise every resource is written in one store transaction. With ?dryRun=true the same
// checks run (validation, namespaces, the stored state) and nothing is written: the answer says what
// each document would do (the console validates before it applies).

import type { FastifyInstance } from 'fastify';
import { describeDocument, documentLimitErrors, fromObjects, parseDocuments, type ConfigDocument } from '../../../mesh/src/documents.ts';
import { checkNamespaces } from '../auth/access.ts';
import { checkSecretWrites } from './secrets.ts';
import type { ConfigStore } from '../store/types.ts';
import { keyOf } from '../store/common.ts';
import { ErrorCode, HttpError } from './errors.ts';
import { invalid, toInput, withoutReadOnly, writerOf, type ConfigWriter } from './writer.ts';
import { withHistory } from '../rollout/history.ts';

export interface ApplyRoutesOptions {
  store: ConfigStore;
  writer: ConfigWriter;
}

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export async function applyRoutes(app: FastifyInstance, opts: ApplyRoutesOptions): Promise<void> {
  const { store, writer } = opts;
  app.post<{ Querystring: { dryRun?: boolean } }>(
    '/apply',
    {
      config: { access: 'write', namespaces: 'body' },
      schema: {
        summary: 'Create or replace many resources, all or nothing',
        description: 'Multi-document YAML (application/yaml) or JSON (a resource, an array, or a List).',
        tags: ['resources'],
        body: { description: 'Documents', anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'array' }] },
        querystring: { type: 'object', properties: { dryRun: { type: 'boolean', description: 'validate only: nothing is written' } }, additionalProperties: false },
      },
    },
    async (request) => {
      const documents = documentsOf(request.body).map((d) => ({ ...d, value: withoutReadOnly(d.value) }));
      if (documents.length === 0) throw new HttpError(400, ErrorCode.BadRequest, 'no documents to apply');
      // All or nothing here too: one document outside an editor's namespace refuses the request.
      checkNamespaces(request, documents.map((d) => ({ document: describeDocument(d), namespace: namespaceIn(d.value) })));
      checkSecretWrites(request, documents.map((d) => ({ document: describeDocument(d), kind: (d.value as { kind?: unknown } | null)?.kind })));
      return writer.serialize(async () => {
        const before = await writer.check({ put: documents });
        if (request.query.dryRun) {
          const existing = new Set(before.map(keyOf));
          return {
            dryRun: true,
            items: documents.map((d) => {
              const input = toInput(d.value);
              const ns = input.metadata.namespace || 'default';
              const action: 'created' | 'configured' = existing.has(keyOf({ kind: input.kind, metadata: { name: input.metadata.name, namespace: ns } })) ? 'configured' : 'created';
              return { kind: input.kind, namespace: ns, name: input.metadata.name, action };
            }),
          };
        }
        const previous = new Map(before.map((r) => [keyOf(r), r.metadata.resourceVersion]));
        const stored = new Map(before.map((r) => [keyOf(r), r]));
        const by = writerOf(request);
        const results = await store.putAll(
          documents.map((d) => {
            const input = toInput(d.value);
            return withHistory(input, stored.get(keyOf({ kind: input.kind, metadata: { name: input.metadata.name, namespace: input.metadata.namespace || 'default' } })), by);
          }),
        );
        const items = results.map((r) => {
          const was = previous.get(keyOf(r));
          const action: ApplyAction = was === undefined ? 'created' : was === r.metadata.resourceVersion ? 'unchanged' : 'configured';
          return { kind: r.kind, namespace: r.metadata.namespace, name: r.metadata.name, action, resourceVersion: r.metadata.resourceVersion, generation: r.metadata.generation };
        });
        return { items };
      });
    },
  );
}

/** The namespace a document will be stored in (the store's default when it names none). */
function namespaceIn(value: unknown): string {
  const ns = (value as { metadata?: { namespace?: unknown } } | null)?.metadata?.namespace;
  return typeof ns === 'string' && ns !== '' ? ns : 'default';
}

function documentsOf(body: unknown): ConfigDocument[] {
  const documents = bodyDocuments(body);
  // YAML text was held to the input limits as it was parsed; JSON bodies are held to them here.
  const tooLarge = typeof body === 'string' ? [] : documentLimitErrors(documents);
  if (tooLarge.length > 0) throw invalid(tooLarge);
  return documents;
}

function bodyDocuments(body: unknown): ConfigDocument[] {
  if (typeof body === 'string') {
    const parsed = parseDocuments(body, 'apply');
    if (parsed.errors.length > 0) throw invalid(parsed.errors);
    return [...parsed.documents];
  }
  if (Array.isArray(body)) return fromObjects(body, 'apply');
  if (typeof body === 'object' && body !== null && (body as { kind?: unknown }).kind === 'List' && Array.isArray((body as { items?: unknown }).items)) {
    return fromObjects((body as { items: unknown[] }).items, 'apply');
  }
  if (body === undefined || body === null) return [];
  return fromObjects([body], 'apply');
}
