// --concurrency N: N worker processes share the listening ports (node:cluster), each with its own
// VMs, like Envoy's worker threads. The primary serves the admin endpoint for all of them: counters,
// gauges and histogram series are summed across workers; config and clusters come from worker 1.
import cluster, { type Worker } from 'node:cluster';
import { startAdminServer, startStatusServer, type AdminServer, type AdminSource } from './admin/admin-server.ts';
import { LOOPBACK_HOST, type AdminWriteAccess } from './admin/admin-access.ts';
import { logError, logInfo } from './log.ts';
import type { Proxy } from './proxy.ts';

type Query = 'metrics' | 'config_dump' | 'clusters' | 'server_info';
interface Request {
  wasmeshQuery: Query;
  id: number;
}
interface Reply {
  wasmeshReply: true;
  id: number;
  result: unknown;
}
interface Ready {
  wasmeshReady: true;
  ports: { outbound: number; inbound: number };
}

/** In a worker: answer the primary's admin queries from this worker's proxy, and say when ready. */
export function serveWorkerQueries(proxy: Proxy): void {
  process.on('message', (msg: Request) => {
    if (!msg || typeof msg !== 'object' || !('wasmeshQuery' in msg)) return;
    let result: unknown;
    switch (msg.wasmeshQuery) {
      case 'metrics':
        result = proxy.renderPrometheus();
        break;
      case 'config_dump':
        result = proxy.configDump();
        break;
      case 'clusters':
        result = proxy.clustersDump();
        break;
      case 'server_info':
        result = proxy.serverInfo();
        break;
    }
    process.send?.({ wasmeshReply: true, id: msg.id, result } satisfies Reply);
  });
  process.send?.({ wasmeshReady: true, ports: { outbound: proxy.outboundPort, inbound: proxy.inboundPort } } satisfies Ready);
}

/** Sums Prometheus text from several workers series by series (HELP/TYPE lines kept once). */
export function mergePrometheus(texts: readonly string[]): string {
  const order: string[] = [];
  const values = new Map<string, number>();
  const meta = new Map<string, string[]>();
  for (const text of texts) {
    let family = '';
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        const name = line.split(' ')[2] ?? '';
        family = name;
        const lines = meta.get(name) ?? [];
        if (!lines.includes(line)) lines.push(line);
        meta.set(name, lines);
        continue;
      }
      const cut = line.lastIndexOf(' ');
      const key = line.slice(0, cut);
      const value = Number(line.slice(cut + 1));
      if (!values.has(key)) order.push(`${family}\u0000${key}`);
      values.set(key, (values.get(key) ?? 0) + value);
    }
  }
  const out: string[] = [];
  let lastFamily = '';
  for (const entry of order) {
    const [family, key] = entry.split('\u0000');
    if (family !== lastFamily) {
      out.push(...(meta.get(family) ?? []));
      lastFamily = family;
    }
    out.push(`${key} ${values.get(key)}`);
  }
  return out.join('\n') + '\n';
}

export interface PrimaryOptions {
  workers: number;
  /** Where the workers' listeners bind (the status port too). */
  host: string;
  adminPort: number;
  /** Where admin binds: loopback unless given, whatever `host` is. */
  adminHost?: string;
  adminAccess?: AdminWriteAccess;
  statusPort?: number;
  drainMs: number;
}

/** In the primary: fork the workers, serve admin, forward SIGTERM, restart workers that die. */
export async function runPrimary(options: PrimaryOptions): Promise<number> {
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  const ready = new Set<Worker>();
  let stopping = false;
  const fork = () => {
    const worker = cluster.fork({ WASMESH_WORKER: '1' });
    worker.on('message', (msg: Reply | Ready) => {
      if ('wasmeshReady' in msg) {
        ready.add(worker);
        if (ready.size === options.workers) logInfo('proxy', `${options.workers} workers listening: outbound ${options.host}:${msg.ports.outbound}, inbound ${options.host}:${msg.ports.inbound}`);
      } else if ('wasmeshReply' in msg) {
        pending.get(msg.id)?.(msg.result);
        pending.delete(msg.id);
      }
    });
    worker.on('exit', (code) => {
      ready.delete(worker);
      if (!stopping) {
        logError('proxy', `worker ${worker.process.pid} exited (${code}); starting another`);
        setTimeout(fork, 500);
      }
    });
  };
  for (let i = 0; i < options.workers; i++) fork();
  const ask = (worker: Worker, query: Query) =>
    new Promise<unknown>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      worker.send({ wasmeshQuery: query, id } satisfies Request);
      setTimeout(() => {
        if (pending.delete(id)) resolve(undefined);
      }, 2000).unref();
    });
  const first = () => [...ready][0];
  const cache: Record<string, unknown> = {};
  // The admin source is synchronous; answers are refreshed per request with the last reply cached.
  const refresh = async () => {
    const workers = [...ready];
    const texts = await Promise.all(workers.map((w) => ask(w, 'metrics')));
    cache.metrics = mergePrometheus(texts.filter((t): t is string => typeof t === 'string'));
    const w = first();
    if (w) {
      cache.config = await ask(w, 'config_dump');
      cache.clusters = await ask(w, 'clusters');
      cache.info = await ask(w, 'server_info');
    }
  };
  const source: AdminSource = {
    renderPrometheus: () => (cache.metrics as string) ?? '',
    configDump: () => cache.config ?? {},
    clustersDump: () => cache.clusters ?? [],
    serverInfo: () => ({ ...(cache.info as object), workers: ready.size }),
    ready: () => ready.size === options.workers && !stopping,
  };
  const adminHost = options.adminHost ?? LOOPBACK_HOST;
  const admin: AdminServer = await startAdminServer(source, { host: adminHost, port: options.adminPort, access: options.adminAccess ?? {}, refresh });
  const status = options.statusPort === undefined ? undefined : await startStatusServer(source, options.host, options.statusPort, refresh);
  logInfo('proxy', `admin ${adminHost}:${admin.port}${status ? `, status ${options.host}:${status.port}` : ''} (primary, ${options.workers} workers)`);
  return new Promise<number>((resolve) => {
    const stop = async (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logInfo('proxy', `${signal}: draining ${ready.size} workers`);
      const exits = Object.values(cluster.workers ?? {}).map((w) => new Promise((r) => (w!.isDead() ? r(undefined) : w!.once('exit', r))));
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      const allExited = await Promise.race([Promise.all(exits).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), options.drainMs + 2000))]);
      if (!allExited) for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      await admin.close();
      await status?.close();
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
