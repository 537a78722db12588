// Filter versions, rollback and canary rollouts, per WasmPlugin:
//   GET    /filters/{ns}/{name}            what it runs (and its canary), the module's versions, the
//                                          deploy history, the rollout
//   POST   /filters/{ns}/{name}/rollback   { to?: version } back to a version (default: the one before)
//   POST   /filters/{ns}/{name}/rollout    { to, steps?, intervalMs?, maxErrorRateIncrease?, ... }
//   GET    /filters/{ns}/{name}/rollout    the rollout's progress and the versions' outcomes
//   DELETE /filters/{ns}/{name}/rollout    abort: the canary is removed, the old version keeps serving
import type { FastifyInstance } from 'fastify';
import type { ConfigStore, ModuleRecord, Resource } from '../store/types.ts';
import { CHANGE_CAUSE_ANNOTATION, moduleNameOf, readHistory, resolveVersion } from '../rollout/history.ts';
import { readRollout, type RolloutController, type RolloutStatus } from '../rollout/controller.ts';
import type { PluginWriter } from '../rollout/plugin-writer.ts';
import { ErrorCode, HttpError } from './errors.ts';
import { writerOf } from './writer.ts';

export interface FilterRoutesOptions {
  store: ConfigStore;
  plugins: PluginWriter;
  rollouts: RolloutController;
}

export interface FilterStatusBody {
  namespace: string;
  plugin: string;
  module: string;
  current: { url: string; sha256?: string; version?: string };
  canary?: { url: string; sha256?: string; version?: string; weight: number };
  versions: Array<ModuleRecord & { current: boolean; canary: boolean }>;
  history: Array<{ url: string; at: string; by: string; cause?: string; sha256?: string; version?: string }>;
  rollout?: RolloutStatus;
}

const params = { type: 'object', properties: { namespace: { type: 'string' }, name: { type: 'string' } }, required: ['namespace', 'name'] } as const;

export async function filterRoutes(app: FastifyInstance, opts: FilterRoutesOptions): Promise<void> {
  const { store, plugins, rollouts } = opts;

  const describe = async (r: Resource): Promise<FilterStatusBody> => {
    const moduleName = moduleNameOf(r);
    const all = await store.listModules();
    const url = String(r.spec.url);
    const current = resolveVersion(url, all, moduleName);
    const canarySpec = r.spec.canary as { url: string; weight: number } | undefined;
    const canary = canarySpec ? resolveVersion(canarySpec.url, all, moduleName) : undefined;
    const rollout = await rollouts.status(r.metadata.namespace, r.metadata.name);
    return {
      namespace: r.metadata.namespace,
      plugin: r.metadata.name,
      module: moduleName,
      current: { url, ...(current.sha256 ? { sha256: current.sha256 } : {}), ...(current.version ? { version: current.version } : {}) },
      ...(canarySpec && canary ? { canary: { url: canarySpec.url, weight: canarySpec.weight, ...(canary.sha256 ? { sha256: canary.sha256 } : {}), ...(canary.version ? { version: canary.version } : {}) } } : {}),
      versions: all.filter((m) => m.name === moduleName).map((m) => ({ ...m, current: m.sha256 === current.sha256, canary: canary !== undefined && m.sha256 === canary.sha256 })),
      history: readHistory(r).map((e) => {
        const v = resolveVersion(e.url, all, moduleName);
        return { ...e, ...(v.sha256 ? { sha256: v.sha256 } : {}), ...(v.version ? { version: v.version } : {}) };
      }),
      ...(rollout ? { rollout } : {}),
    };
  };

  app.get<{ Params: { namespace: string; name: string } }>(
    '/filters/:namespace/:name',
    { config: { access: 'read', namespaces: 'param' }, schema: { summary: 'A WasmPlugin’s module versions, history and rollout', tags: ['filters'], params } },
    async (request) => describe(await plugins.mustGet(request.params.namespace, request.params.name)),
  );

  app.post<{ Params: { namespace: string; name: string }; Body: { to?: string } | undefined }>(
    '/filters/:namespace/:name/rollback',
    {
      config: { access: 'write', namespaces: 'param' },
      schema: {
        summary: 'Point a WasmPlugin back at an earlier module version (default: the one before)',
        tags: ['filters'],
        params,
        body: { type: 'object', properties: { to: { type: 'string' } }, additionalProperties: false },
      },
    },
    async (request) => {
      const { namespace, name } = request.params;
      const by = writerOf(request);
      const document = `WasmPlugin ${namespace}/${name}`;
      const r = await plugins.mustGet(namespace, name);
      const moduleName = moduleNameOf(r);
      const all = await store.listModules();
      const current = resolveVersion(String(r.spec.url), all, moduleName);
      let target: { sha256: string; label: string };
      const to = request.body?.to;
      if (to !== undefined) {
        const record = all.find((m) => m.name === moduleName && m.version === to);
        if (!record) {
          const have = all.filter((m) => m.name === moduleName).map((m) => m.version);
          throw new HttpError(404, ErrorCode.NotFound, [{ document, path: '/to', message: `module ${moduleName}@${to} has not been uploaded (versions: ${have.join(', ') || 'none'})` }]);
        }
        target = { sha256: record.sha256, label: `${record.name}@${record.version}` };
      } else {
        const previous = readHistory(r)
          .map((e) => ({ e, v: resolveVersion(e.url, all, moduleName) }))
          .reverse()
          .find(({ v }) => v.sha256 !== undefined && v.sha256 !== current.sha256);
        if (!previous) throw new HttpError(409, ErrorCode.Conflict, [{ document, path: '', message: 'no earlier version in the deploy history; name one with --to VERSION' }]);
        target = { sha256: previous.v.sha256!, label: previous.v.version ? `${previous.v.name}@${previous.v.version}` : `sha256:${previous.v.sha256!.slice(0, 12)}` };
      }
      if (readRollout(r)?.phase === 'Progressing') await rollouts.abort(namespace, name, by, `aborted: rollback to ${target.label} requested`);
      const updated = await plugins.update(namespace, name, by, (_c, next) => {
        next.spec.url = `digest:sha256:${target.sha256}`;
        delete next.spec.sha256;
        delete next.spec.canary;
        next.annotations[CHANGE_CAUSE_ANNOTATION] = `rollback to ${target.label}`;
      });
      return describe(updated);
    },
  );

  app.post<{
    Params: { namespace: string; name: string };
    Body: { to: string; steps?: number[]; intervalMs?: number; maxErrorRateIncrease?: number; maxTrapRateIncrease?: number; minStreams?: number; silentAfterMs?: number; maxSilenceMs?: number };
  }>(
    '/filters/:namespace/:name/rollout',
    {
      config: { access: 'write', namespaces: 'param' },
      schema: {
        summary: 'Start a canary rollout of a module version',
        tags: ['filters'],
        params,
        body: {
          type: 'object',
          required: ['to'],
          additionalProperties: false,
          properties: {
            to: { type: 'string', description: 'module version to roll out' },
            steps: { type: 'array', items: { type: 'number' }, description: 'percentages of streams, increasing, last ≤ 100 (default 5,25,50,100)' },
            intervalMs: { type: 'integer', description: 'time per step (default 30000)' },
            maxErrorRateIncrease: { type: 'number', description: 'roll back when the new version fails this much more of its streams (0..1, default 0.05)' },
            maxTrapRateIncrease: { type: 'number', description: 'roll back when the new version traps this much more per stream (0..1, default 0.01)' },
            minStreams: { type: 'integer', description: 'streams of the new version before error rates are compared (default 20)' },
            silentAfterMs: { type: 'integer', description: 'a proxy sent the new version that has not reported on it for this long holds the step (default 6000)' },
            maxSilenceMs: { type: 'integer', description: 'silent this long: roll back, naming the proxy (default 20000)' },
          },
        },
      },
    },
    async (request, reply) => {
      const { namespace, name } = request.params;
      const b = request.body;
      const thresholds = {
        ...(b.maxErrorRateIncrease !== undefined ? { maxErrorRateIncrease: b.maxErrorRateIncrease } : {}),
        ...(b.maxTrapRateIncrease !== undefined ? { maxTrapRateIncrease: b.maxTrapRateIncrease } : {}),
        ...(b.minStreams !== undefined ? { minStreams: b.minStreams } : {}),
        ...(b.silentAfterMs !== undefined ? { silentAfterMs: b.silentAfterMs } : {}),
        ...(b.maxSilenceMs !== undefined ? { maxSilenceMs: b.maxSilenceMs } : {}),
      };
      const status = await rollouts.start({ namespace, plugin: name, to: b.to, ...(b.steps ? { steps: b.steps } : {}), ...(b.intervalMs !== undefined ? { intervalMs: b.intervalMs } : {}), thresholds, by: writerOf(request) });
      return reply.code(202).send(status);
    },
  );

  app.get<{ Params: { namespace: string; name: string } }>(
    '/filters/:namespace/:name/rollout',
    { config: { access: 'read', namespaces: 'param' }, schema: { summary: 'A rollout’s progress', tags: ['filters'], params } },
    async (request) => {
      const { namespace, name } = request.params;
      await plugins.mustGet(namespace, name);
      const status = await rollouts.status(namespace, name);
      if (!status) throw new HttpError(404, ErrorCode.NotFound, [{ document: `WasmPlugin ${namespace}/${name}`, path: '', message: 'no rollout has run for this plugin' }]);
      return status;
    },
  );

  app.delete<{ Params: { namespace: string; name: string } }>(
    '/filters/:namespace/:name/rollout',
    { config: { access: 'write', namespaces: 'param' }, schema: { summary: 'Abort a rollout', tags: ['filters'], params } },
    async (request) => {
      const { namespace, name } = request.params;
      await plugins.mustGet(namespace, name);
      const status = await rollouts.abort(namespace, name, writerOf(request));
      if (!status) throw new HttpError(404, ErrorCode.NotFound, [{ document: `WasmPlugin ${namespace}/${name}`, path: '', message: 'no rollout to abort' }]);
      return status;
    },
  );
}
