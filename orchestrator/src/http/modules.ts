// Filter modules:
//   POST /modules?name=&version=   the .wasm bytes (application/wasm); a core module is validated by
//                                  compileModule (wasm magic, size limit, ABI marker, imports the
//                                  host provides, memory, allocator), a component must implement the
//                                  filter world (schemas/wit/filter.wit); stored by sha256 with what
//                                  the module says about itself (producers, a component's world).
//                                  name@version is immutable: the same bytes again is 200, other bytes 409.
//   GET  /modules[?name=]          every version: name, version, sha256, size, who uploaded, when
//   GET  /modules/{sha256}         the bytes (a proxy token may fetch them)
// A WasmPlugin uses an uploaded module with `url: digest:sha256:<hex>`.

import type { FastifyInstance } from 'fastify';
import { inspectModule, ModuleRejectedError } from '../modules/inspect.ts';
import type { ModuleMetadata } from '../../../wasm/src/producers.ts';
import { MAX_MODULE_BYTES } from '../../../wasm/src/limits.ts';
import { WasmeshWasmError } from '../../../wasm/src/errors.ts';
import { checkModuleName, sha256Hex } from '../store/common.ts';
import type { ConfigStore, ModuleRecord } from '../store/types.ts';
import { ErrorCode, HttpError } from './errors.ts';

export interface ModuleRoutesOptions {
  store: ConfigStore;
  onUploaded?: (record: ModuleRecord) => void;
}

export async function moduleRoutes(app: FastifyInstance, opts: ModuleRoutesOptions): Promise<void> {
  const { store } = opts;

  app.post<{ Querystring: { name: string; version: string } }>(
    '/modules',
    {
      config: { access: 'write', namespaces: 'none' },
      // The size limit is compileModule's; one byte more lets it report the limit itself.
      bodyLimit: MAX_MODULE_BYTES + 1,
      schema: {
        summary: 'Upload a filter module (application/wasm)',
        tags: ['modules'],
        querystring: {
          type: 'object',
          properties: { name: { type: 'string' }, version: { type: 'string' } },
          required: ['name', 'version'],
          additionalProperties: false,
        },
      },
    },
    async (request, reply) => {
      const { name, version } = request.query;
      const document = `module ${name}@${version}`;
      try {
        checkModuleName(name, version);
      } catch (err) {
        throw new HttpError(400, ErrorCode.BadRequest, [{ document, path: '', message: (err as Error).message }]);
      }
      if (!Buffer.isBuffer(request.body)) {
        throw new HttpError(415, ErrorCode.BadRequest, [{ document, path: '', message: 'send the module bytes with content-type application/wasm' }]);
      }
      const bytes = new Uint8Array(request.body.buffer, request.body.byteOffset, request.body.byteLength);
      let metadata: ModuleMetadata;
      try {
        metadata = await inspectModule(bytes, `${name}@${version}`);
      } catch (err) {
        if (err instanceof WasmeshWasmError || err instanceof ModuleRejectedError) {
          throw new HttpError(400, ErrorCode.BadModule, [{ document, path: '', message: `rejected (${err.code}): ${err.message}` }]);
        }
        throw err;
      }
      const sha256 = sha256Hex(bytes);
      const existed = (await store.listModules(name)).some((m) => m.version === version && m.sha256 === sha256);
      const identity = request.identity!;
      const record = await store.putModule(name, version, bytes, `${identity.role}:${identity.id}`, metadata);
      if (!existed) opts.onUploaded?.(record);
      return reply.code(existed ? 200 : 201).send(record);
    },
  );

  app.get<{ Querystring: { name?: string } }>(
    '/modules',
    {
      config: { access: 'read', namespaces: 'none' },
      schema: {
        summary: 'List uploaded module versions',
        tags: ['modules'],
        querystring: { type: 'object', properties: { name: { type: 'string' } }, additionalProperties: false },
      },
    },
    async (request) => ({ items: await store.listModules(request.query.name) }),
  );

  app.get<{ Params: { sha256: string } }>(
    '/modules/:sha256',
    {
      config: { access: 'module', namespaces: 'none' },
      schema: {
        summary: 'Fetch module bytes by sha256',
        tags: ['modules'],
        params: { type: 'object', properties: { sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' } }, required: ['sha256'] },
      },
    },
    async (request, reply) => {
      const sha256 = request.params.sha256.toLowerCase();
      const bytes = await store.getModule(sha256);
      if (!bytes) throw new HttpError(404, ErrorCode.NotFound, [{ document: `module sha256:${sha256}`, path: '', message: 'no module with this digest has been uploaded' }]);
      return reply
        .header('content-type', 'application/wasm')
        .header('etag', `"sha256:${sha256}"`)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  );
}
