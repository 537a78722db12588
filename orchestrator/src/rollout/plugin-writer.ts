// Read-modify-write of one WasmPlugin on behalf of the orchestrator (rollback, rollout steps): the
// change is validated like any API write, stamped into the deploy history, and retried when another
// write got in between.
import { fromObjects } from '../../../mesh/src/documents.ts';
import { ConflictError, type ConfigStore, type Resource, type ResourceInput } from '../store/types.ts';
import { documentOf, toInput, type ConfigWriter } from '../http/writer.ts';
import { ErrorCode, HttpError } from '../http/errors.ts';
import { withHistory } from './history.ts';

export class PluginWriter {
  readonly #store: ConfigStore;
  readonly #writer: ConfigWriter;

  constructor(store: ConfigStore, writer: ConfigWriter) {
    this.#store = store;
    this.#writer = writer;
  }

  get(namespace: string, name: string): Promise<Resource | undefined> {
    return this.#store.get('WasmPlugin', namespace, name);
  }

  async mustGet(namespace: string, name: string): Promise<Resource> {
    const r = await this.get(namespace, name);
    if (!r) throw new HttpError(404, ErrorCode.NotFound, [{ document: `WasmPlugin ${namespace}/${name}`, path: '', message: 'no such WasmPlugin (deploy one first: wasmesh filter deploy)' }]);
    return r;
  }

  /**
   * Applies `change` to the stored plugin (a copy of its spec and annotations) and writes it. `change`
   * may throw HttpError to refuse. Returns the stored resource.
   */
  async update(namespace: string, name: string, by: string, change: (current: Resource, next: { spec: Record<string, unknown>; annotations: Record<string, string> }) => void): Promise<Resource> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.mustGet(namespace, name);
      const next = { spec: structuredClone(current.spec), annotations: { ...(current.metadata.annotations ?? {}) } };
      change(current, next);
      const value = { ...documentOf(current), metadata: { ...(documentOf(current).metadata as object), annotations: next.annotations }, spec: next.spec };
      const input: ResourceInput = { ...toInput(value), metadata: { ...toInput(value).metadata, resourceVersion: current.metadata.resourceVersion } };
      try {
        return await this.#writer.serialize(async () => {
          await this.#writer.check({ put: fromObjects([value], 'orchestrator') });
          return this.#store.put(withHistory(input, current, by));
        });
      } catch (err) {
        if (err instanceof ConflictError && attempt < 5) continue;
        throw err;
      }
    }
  }
}
