// Resource routes, the same for every kind:
//   GET    /apis                                 the kinds, with their URL names
//   GET    /apis/{kind}[?namespace=]             list (a List document, re-appliable)
//   GET    /apis/{kind}?watch=true[&namespace=]  server-sent events: the current state as ADDED,
//                                                then ADDED | MODIFIED | DELETED as they happen
//   POST   /apis/{kind}                          create (409 if it exists)
//   GET    /apis/{kind}/{namespace}/{name}
//   PUT    /apis/{kind}/{namespace}/{name}       create or replace; metadata.resourceVersion, when
//                                                given, must be the stored one (else 409)
//   DELETE /apis/{kind}/{namespace}/{name}[?resourceVersion=]
// {kind} is the plural lowercase form (virtualservices) or the Kind (VirtualService).
// Bodies are JSON or YAML (one document).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { documentLimitErrors, fromObjects, parseDocuments, type ConfigDocument } from '../../../mesh/src/documents.ts';
import { keyOf, resourceKey } from '../store/common.ts';
import { RESOURCE_KINDS, type ConfigStore, type Resource, type ResourceKind, type WatchEvent } from '../store/types.ts';
import { ErrorCode, HttpError } from './errors.ts';
import { KIND_URL_NAMES, PLURALS, kindFromUrl } from './kinds.ts';
import { invalid, toInput, withoutReadOnly, writerOf, type ConfigWriter } from './writer.ts';
import { withHistory } from '../rollout/history.ts';
import { checkNamespaces } from '../auth/access.ts';
import { checkSecretWrites, shown } from './secrets.ts';

export interface ResourceRoutesOptions {
  store: ConfigStore;
  writer: ConfigWriter;
}

// Not an enum: an unknown kind is a 404 naming the kinds, not a schema error.
const kindParam = { type: 'string', description: `Plural lowercase kind or the Kind: ${KIND_URL_NAMES.join(', ')}.` };
const itemParams = {
  type: 'object',
  properties: { kind: kindParam, namespace: { type: 'string' }, name: { type: 'string' } },
  required: ['kind', 'namespace', 'name'],
};
const resourceBody = {
  description: 'An Istio resource (apiVersion, kind, metadata, spec) as JSON or YAML; see schemas/json/ for each kind.',
  anyOf: [{ type: 'object' }, { type: 'string', description: 'YAML (application/yaml)' }],
};
const SSE_HEARTBEAT_MS = 15_000;

export async function resourceRoutes(app: FastifyInstance, opts: ResourceRoutesOptions): Promise<void> {
  const { store, writer } = opts;
  const streams = new Set<FastifyReply>();
  app.addHook('preClose', async () => {
    for (const reply of streams) reply.raw.end();
  });

  app.get('/apis', { config: { access: 'read', namespaces: 'none' }, schema: { summary: 'The resource kinds', tags: ['resources'] } }, async () => ({
    kinds: RESOURCE_KINDS.map((kind) => ({ kind, plural: PLURALS[kind], path: `/apis/${PLURALS[kind]}` })),
  }));

  app.get<{ Params: { kind: string }; Querystring: { namespace?: string; watch?: boolean } }>(
    '/apis/:kind',
    {
      config: { access: (request) => ((request.query as { watch?: unknown }).watch === 'true' || (request.query as { watch?: unknown }).watch === true ? 'watch' : 'read'), namespaces: 'query' },
      schema: {
        summary: 'List resources of a kind, or watch them (?watch=true, text/event-stream)',
        tags: ['resources'],
        params: { type: 'object', properties: { kind: kindParam }, required: ['kind'] },
        querystring: { type: 'object', properties: { namespace: { type: 'string' }, watch: { type: 'boolean' } }, additionalProperties: false },
      },
    },
    async (request, reply) => {
      const kind = kindOf(request.params.kind);
      if (request.query.watch) return watch(request, reply, kind, request.query.namespace);
      const [items, revision] = await Promise.all([store.list(kind, request.query.namespace), store.revision()]);
      return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: String(revision) }, items: items.map(shown) };
    },
  );

  app.get<{ Params: { kind: string; namespace: string; name: string } }>(
    '/apis/:kind/:namespace/:name',
    { config: { access: 'read', namespaces: 'param' }, schema: { summary: 'Get one resource', tags: ['resources'], params: itemParams } },
    async (request) => {
      const kind = kindOf(request.params.kind);
      const { namespace, name } = request.params;
      const resource = await store.get(kind, namespace, name);
      if (!resource) throw notFound(kind, namespace, name);
      return shown(resource);
    },
  );

  app.post<{ Params: { kind: string } }>(
    '/apis/:kind',
    {
      config: { access: 'write', namespaces: 'body' },
      schema: { summary: 'Create a resource (409 if it exists)', tags: ['resources'], params: { type: 'object', properties: { kind: kindParam }, required: ['kind'] }, body: resourceBody },
    },
    async (request, reply) => {
      const kind = kindOf(request.params.kind);
      const doc = singleDocument(request, kind);
      const value = doc.value as Record<string, unknown> & { metadata: { name: string; namespace?: string } };
      checkNamespaces(request, [{ document: `${kind} ${value.metadata.namespace || 'default'}/${value.metadata.name}`, namespace: value.metadata.namespace || 'default' }]);
      checkSecretWrites(request, [{ kind, document: `${kind} ${value.metadata.namespace || 'default'}/${value.metadata.name}` }]);
      const stored = await writer.serialize(async () => {
        if (await store.get(kind, value.metadata.namespace || 'default', value.metadata.name)) {
          throw new HttpError(409, ErrorCode.AlreadyExists, [
            { document: `${kind} ${value.metadata.namespace || 'default'}/${value.metadata.name}`, path: '', message: 'already exists: use PUT to replace it' },
          ]);
        }
        await writer.check({ put: [doc] });
        return store.put(withHistory(toInput(value), undefined, writerOf(request)));
      });
      return reply.code(201).send(shown(stored));
    },
  );

  app.put<{ Params: { kind: string; namespace: string; name: string } }>(
    '/apis/:kind/:namespace/:name',
    { config: { access: 'write', namespaces: 'param' }, schema: { summary: 'Create or replace a resource', tags: ['resources'], params: itemParams, body: resourceBody } },
    async (request, reply) => {
      const kind = kindOf(request.params.kind);
      const { namespace, name } = request.params;
      checkSecretWrites(request, [{ kind, document: `${kind} ${namespace}/${name}` }]);
      const doc = singleDocument(request, kind, namespace, name);
      const { stored, created } = await writer.serialize(async () => {
        await writer.check({ put: [doc] });
        const existing = await store.get(kind, namespace, name);
        return { stored: await store.put(withHistory(toInput(doc.value), existing, writerOf(request))), created: existing === undefined };
      });
      return reply.code(created ? 201 : 200).send(shown(stored));
    },
  );

  app.delete<{ Params: { kind: string; namespace: string; name: string }; Querystring: { resourceVersion?: string } }>(
    '/apis/:kind/:namespace/:name',
    {
      config: { access: 'write', namespaces: 'param' },
      schema: {
        summary: 'Delete a resource (409 if resourceVersion is given and stale)',
        tags: ['resources'],
        params: itemParams,
        querystring: { type: 'object', properties: { resourceVersion: { type: 'string' } }, additionalProperties: false },
      },
    },
    async (request) => {
      const kind = kindOf(request.params.kind);
      const { namespace, name } = request.params;
      checkSecretWrites(request, [{ kind, document: `${kind} ${namespace}/${name}` }]);
      const deleted = await writer.serialize(async () => {
        if (!(await store.get(kind, namespace, name))) throw notFound(kind, namespace, name);
        // Removing a resource can break others (a route to a ServiceEntry's host): check the rest.
        await writer.check({ remove: [resourceKey(kind, namespace, name)] });
        return store.delete(kind, namespace, name, request.query.resourceVersion);
      });
      if (!deleted) throw notFound(kind, namespace, name);
      return shown(deleted);
    },
  );

  /** Streams server-sent events until the client goes away or the app closes. */
  async function watch(request: FastifyRequest, reply: FastifyReply, kind: ResourceKind, namespace: string | undefined): Promise<void> {
    const matches = (r: Resource): boolean => r.kind === kind && (namespace === undefined || r.metadata.namespace === namespace);
    // What the client has been told, per resource: its resourceVersion (as a number). Events that
    // the initial list already covers are dropped, so the client sees each change exactly once.
    const known = new Map<string, number>();
    let buffered: WatchEvent[] | undefined = [];
    const send = (type: WatchEvent['type'], resource: Resource): void => {
      reply.raw.write(`event: ${type}\ndata: ${JSON.stringify(shown(resource))}\n\n`);
    };
    const deliver = (event: WatchEvent): void => {
      if (!matches(event.resource)) return;
      const key = keyOf(event.resource);
      const seen = known.get(key);
      if (event.type === 'DELETED') {
        if (seen === undefined || seen > event.revision) return;
        known.delete(key);
        send('DELETED', event.resource);
        return;
      }
      if (seen !== undefined && seen >= event.revision) return;
      known.set(key, event.revision);
      send(seen === undefined ? 'ADDED' : 'MODIFIED', event.resource);
    };
    // Subscribe before listing, buffering, so nothing between the list and the subscription is lost.
    const stop = store.watch((event) => (buffered ? buffered.push(event) : deliver(event)));
    let items: Resource[];
    try {
      items = await store.list(kind, namespace);
    } catch (err) {
      stop();
      throw err;
    }
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    for (const r of items) {
      known.set(keyOf(r), Number(r.metadata.resourceVersion));
      send('ADDED', r);
    }
    const pending = buffered;
    buffered = undefined;
    for (const event of pending) deliver(event);
    reply.raw.write(': synced\n\n');
    streams.add(reply);
    const heartbeat = setInterval(() => reply.raw.write(': heartbeat\n\n'), SSE_HEARTBEAT_MS);
    heartbeat.unref();
    const end = (): void => {
      clearInterval(heartbeat);
      stop();
      streams.delete(reply);
    };
    request.raw.on('close', end);
    reply.raw.on('close', end);
  }
}

function kindOf(segment: string): ResourceKind {
  const kind = kindFromUrl(segment);
  if (!kind) throw new HttpError(404, ErrorCode.NotFound, `unknown kind "${segment}": use one of ${RESOURCE_KINDS.map((k) => PLURALS[k]).join(', ')}`);
  return kind;
}

function notFound(kind: ResourceKind, namespace: string, name: string): HttpError {
  return new HttpError(404, ErrorCode.NotFound, [{ document: `${kind} ${namespace}/${name}`, path: '', message: 'not found' }]);
}

/**
 * The request body as one document of `kind`, with kind, name and namespace filled in from the
 * URL when the body leaves them out, and a 400 when they disagree with it.
 */
function singleDocument(request: FastifyRequest, kind: ResourceKind, namespace?: string, name?: string): ConfigDocument {
  let doc: ConfigDocument;
  if (typeof request.body === 'string') {
    const parsed = parseDocuments(request.body, 'request');
    if (parsed.errors.length > 0) throw new HttpError(400, ErrorCode.Invalid, parsed.errors.map((e) => ({ document: e.document, path: e.path, message: e.message })));
    if (parsed.documents.length !== 1) throw new HttpError(400, ErrorCode.BadRequest, `expected exactly one document, got ${parsed.documents.length} (use POST /apply for several)`);
    doc = parsed.documents[0]!;
  } else {
    doc = fromObjects([request.body], 'request')[0]!;
    const tooLarge = documentLimitErrors([doc]);
    if (tooLarge.length > 0) throw invalid(tooLarge);
  }
  const value = doc.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, ErrorCode.BadRequest, 'the body must be one resource object');
  const v = { ...(value as Record<string, unknown>) };
  const mismatch = (path: string, message: string): HttpError => new HttpError(400, ErrorCode.Invalid, [{ document: 'request', path, message }]);
  if (v.kind === undefined) v.kind = kind;
  else if (v.kind !== kind) throw mismatch('/kind', `kind ${JSON.stringify(v.kind)} does not match the URL (${kind})`);
  const metadata = typeof v.metadata === 'object' && v.metadata !== null && !Array.isArray(v.metadata) ? { ...(v.metadata as Record<string, unknown>) } : undefined;
  if (!metadata) {
    if (v.metadata !== undefined || name === undefined) throw mismatch('/metadata', 'metadata with a name is required');
  }
  const meta = metadata ?? {};
  if (name !== undefined) {
    if (meta.name === undefined) meta.name = name;
    else if (meta.name !== name) throw mismatch('/metadata/name', `name ${JSON.stringify(meta.name)} does not match the URL (${name})`);
  }
  if (namespace !== undefined) {
    if (meta.namespace === undefined) meta.namespace = namespace;
    else if (meta.namespace !== namespace) throw mismatch('/metadata/namespace', `namespace ${JSON.stringify(meta.namespace)} does not match the URL (${namespace})`);
  }
  if (typeof meta.name !== 'string') throw mismatch('/metadata/name', 'metadata.name is required');
  v.metadata = meta;
  return { source: doc.source, value: withoutReadOnly(v) };
}
