// --concurrency N: N worker processes share the listening ports (node:cluster), each with its own
// VMs, like Envoy's worker threads. The primary serves the admin endpoint for all of them: counters,
// gauges and histogram series are summed across workers; config and clusters come from worker 1.
// Workers send the primary a heartbeat: one silent past the stall threshold makes /ready fail, past
// the exit threshold it is killed (SIGKILL) and another is forked, as for any worker that exits.
import cluster, { type Worker } from 'node:cluster';
import { startAdminServer, startStatusServer, type AdminServer, type AdminSource } from './admin/admin-server.ts';
import { LOOPBACK_HOST, type AdminWriteAccess } from './admin/admin-access.ts';
import { logError, logInfo } from './log.ts';
import type { Proxy } from './proxy.ts';
import { DEFAULT_WATCHDOG, EventLoopWatchdog, type WatchdogOptions } from './watchdog/event-loop-watchdog.ts';
import { LOOP_DELAY_METRIC } from './watchdog/loop-delay.ts';

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
/** A worker's "my loop runs", with why it should not take traffic (a recent stall of its own). */
interface Heartbeat {
  wasmeshHeartbeat: true;
  notReady?: string;
}

/** How often a worker beats: several times within the stall threshold. */
export function heartbeatInterval(stallMs: number): number {
  return Math.min(250, Math.max(10, Math.floor(stallMs / 4)));
}

/** In a worker: answer the primary's admin queries from this worker's proxy, say when ready, then beat. */
export function serveWorkerQueries(proxy: Proxy, heartbeatMs = heartbeatInterval(1000)): void {
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
  const beat = setInterval(() => {
    if (!process.connected) return clearInterval(beat);
    const notReady = proxy.notReadyReason();
    process.send?.({ wasmeshHeartbeat: true, ...(notReady ? { notReady } : {}) } satisfies Heartbeat);
  }, heartbeatMs);
  beat.unref();
}

/** Families merged by their largest value, not summed: the worst worker's event-loop delay. */
const MERGED_BY_MAX = new Set([LOOP_DELAY_METRIC]);

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
      const before = values.get(key);
      if (before === undefined) order.push(`${family}\u0000${key}`);
      values.set(key, before === undefined ? value : MERGED_BY_MAX.has(family) ? Math.max(before, value) : before + value);
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
  /** Thresholds for silent workers, and the primary's own watchdog (default DEFAULT_WATCHDOG). */
  watchdog?: WatchdogOptions;
}

/** In the primary: fork the workers, serve admin, forward SIGTERM, restart workers that die or go silent. */
export async function runPrimary(options: PrimaryOptions): Promise<number> {
  const limits = options.watchdog ?? DEFAULT_WATCHDOG;
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  const ready = new Set<Worker>();
  /** Per ready worker: when it last beat (performance.now()), what it says about itself, whether it was killed. */
  const health = new Map<Worker, { beatAt: number; notReady?: string; killed: boolean }>();
  let stopping = false;
  const fork = () => {
    const worker = cluster.fork({ WASMESH_WORKER: '1' });
    worker.on('message', (msg: Reply | Ready | Heartbeat) => {
      if ('wasmeshHeartbeat' in msg) {
        const h = health.get(worker);
        if (h) {
          h.beatAt = performance.now();
          h.notReady = msg.notReady;
        }
      } else if ('wasmeshReady' in msg) {
        ready.add(worker);
        health.set(worker, { beatAt: performance.now(), killed: false });
        if (ready.size === options.workers) logInfo('proxy', `${options.workers} workers listening: outbound ${options.host}:${msg.ports.outbound}, inbound ${options.host}:${msg.ports.inbound}`);
      } else if ('wasmeshReply' in msg) {
        pending.get(msg.id)?.(msg.result);
        pending.delete(msg.id);
      }
    });
    worker.on('exit', (code, signal) => {
      ready.delete(worker);
      health.delete(worker);
      if (!stopping) {
        logError('proxy', `worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
        setTimeout(fork, 500);
      }
    });
  };
  for (let i = 0; i < options.workers; i++) fork();
  const silentFor = (worker: Worker) => performance.now() - (health.get(worker)?.beatAt ?? performance.now());
  const answering = () => [...ready].filter((w) => silentFor(w) <= limits.stallMs);
  // A worker whose loop is stuck cannot end itself if its watchdog thread is stuck too (a stopped
  // process, a frozen machine): the primary kills it, and the exit above forks another.
  const check = setInterval(() => {
    if (stopping || limits.exitMs === 0) return;
    for (const [worker, h] of health) {
      const silent = silentFor(worker);
      if (h.killed || silent <= limits.exitMs) continue;
      h.killed = true;
      logError('proxy', `worker ${worker.process.pid} silent for ${Math.round(silent)} ms (limit ${limits.exitMs} ms): killing it (SIGKILL)`);
      worker.process.kill('SIGKILL');
    }
  }, heartbeatInterval(limits.stallMs));
  check.unref();
  const ownWatchdog = await EventLoopWatchdog.start({ ...limits, label: 'primary: ' });
  const ask = (worker: Worker, query: Query) =>
    new Promise<unknown>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      worker.send({ wasmeshQuery: query, id } satisfies Request);
      setTimeout(() => {
        if (pending.delete(id)) resolve(undefined);
      }, 2000).unref();
    });
  const cache: Record<string, unknown> = {};
  // The admin source is synchronous; answers are refreshed per request with the last reply cached.
  // Only workers that beat are asked, so a stuck one does not hold up every admin request.
  const refresh = async () => {
    const workers = answering();
    const texts = await Promise.all(workers.map((w) => ask(w, 'metrics')));
    cache.metrics = mergePrometheus(texts.filter((t): t is string => typeof t === 'string'));
    const w = workers[0];
    if (w) {
      cache.config = await ask(w, 'config_dump');
      cache.clusters = await ask(w, 'clusters');
      cache.info = await ask(w, 'server_info');
    }
  };
  // Each worker's own reasons (stalls, identity) arrive with its heartbeats; silence is a reason too.
  const notReadyReasons = (): string[] => {
    if (stopping) return ['draining'];
    const reasons: string[] = [];
    const own = ownWatchdog.notReadyReason();
    if (own) reasons.push(`primary: ${own}`);
    if (ready.size < options.workers) reasons.push(`${ready.size} of ${options.workers} workers ready`);
    for (const [worker, h] of health) {
      const silent = silentFor(worker);
      if (silent > limits.stallMs) reasons.push(`worker ${worker.process.pid} has not answered for ${Math.round(silent)} ms${limits.exitMs > 0 ? ` (killed at ${limits.exitMs} ms)` : ''}`);
      else if (h.notReady) reasons.push(`worker ${worker.process.pid}: ${h.notReady}`);
    }
    return reasons;
  };
  const source: AdminSource = {
    renderPrometheus: () => (cache.metrics as string) ?? '',
    configDump: () => cache.config ?? {},
    clustersDump: () => cache.clusters ?? [],
    serverInfo: () => ({ ...(cache.info as object), workers: ready.size }),
    ready: () => notReadyReasons().length === 0,
    notReadyReasons,
  };
  const adminHost = options.adminHost ?? LOOPBACK_HOST;
  const admin: AdminServer = await startAdminServer(source, { host: adminHost, port: options.adminPort, access: options.adminAccess ?? {}, refresh });
  const status = options.statusPort === undefined ? undefined : await startStatusServer(source, options.host, options.statusPort, refresh);
  logInfo('proxy', `admin ${adminHost}:${admin.port}${status ? `, status ${options.host}:${status.port}` : ''} (primary, ${options.workers} workers)`);
  return new Promise<number>((resolve) => {
    const stop = async (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      clearInterval(check);
      logInfo('proxy', `${signal}: draining ${ready.size} workers`);
      const exits = Object.values(cluster.workers ?? {}).map((w) => new Promise((r) => (w!.isDead() ? r(undefined) : w!.once('exit', r))));
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      const allExited = await Promise.race([Promise.all(exits).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), options.drainMs + 2000))]);
      if (!allExited) for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      await admin.close();
      await status?.close();
      await ownWatchdog.stop();
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
