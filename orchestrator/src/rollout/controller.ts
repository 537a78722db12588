// Canary rollouts of filter modules. A rollout moves a WasmPlugin from its module version to another
// in steps (5%, 25%, 50%, 100% of streams by default): each step writes spec.canary's weight, the
// proxies split streams by a stable hash of x-request-id and report each version's outcomes, and the
// controller compares the new version with the old one on every report. When the new one is worse
// past a threshold (failed repeatedly on a proxy, traps, a higher 5xx/reset rate) it is rolled back at
// once; when a step's interval passes without that, the next step starts; after the last one the new
// version becomes the plugin's module (a deploy-history entry) and the canary is removed.
//
// Silence is not success: a proxy that should report on the canary (connected to this replica, sent
// a config with it) and has not for silentAfterMs holds the step (it does not advance), and past
// maxSilenceMs rolls the rollout back naming the proxy; one that disconnects counts as silent. A
// proxy that reports zero streams (a quiet one) does not hold anything. Event-loop stalls of a proxy
// running the canary roll back too.
//
// The rollout's state lives in an annotation of the WasmPlugin (wasmesh.io/rollout), written on every
// transition, so `GET /filters/...` on any replica shows it and a restarted orchestrator resumes it.
// The replica that runs a rollout judges it on the reports of the proxies connected to it.
import type { ModuleRecord, Resource } from '../store/types.ts';
import { HttpError, ErrorCode } from '../http/errors.ts';
import { CanaryStats, type Baseline, type VersionTotals } from './canary-stats.ts';
import { CHANGE_CAUSE_ANNOTATION, moduleNameOf, resolveVersion } from './history.ts';
import type { PluginWriter } from './plugin-writer.ts';

export const ROLLOUT_ANNOTATION = 'wasmesh.io/rollout';

export type RolloutPhase = 'Progressing' | 'Succeeded' | 'RolledBack' | 'Aborted';

export interface RolloutThresholds {
  /** Roll back when the new version's failed-stream rate exceeds the old one's by more than this (0..1). */
  maxErrorRateIncrease: number;
  /** Roll back when the new version's traps per stream exceed the old one's by more than this (0..1). */
  maxTrapRateIncrease: number;
  /** Streams the new version must have served before rates are compared (traps and "bad" count at once). */
  minStreams: number;
  /** A proxy that should report on the canary and has not for this long is silent: the step waits for it (ms). */
  silentAfterMs: number;
  /** Silent this long: roll back (ms). */
  maxSilenceMs: number;
}

/** Proxies report every 2 s: silent after three missed reports, rolled back after ten. */
export const DEFAULT_THRESHOLDS: RolloutThresholds = { maxErrorRateIncrease: 0.05, maxTrapRateIncrease: 0.01, minStreams: 20, silentAfterMs: 6000, maxSilenceMs: 20_000 };
export const DEFAULT_STEPS = [5, 25, 50, 100];
export const DEFAULT_INTERVAL_MS = 30_000;

export interface VersionRef {
  sha256: string;
  name?: string;
  version?: string;
}

export interface RolloutStats extends VersionTotals {
  /** failedStreams / streams (0 without streams). */
  errorRate: number;
  trapRate: number;
}

export interface RolloutStatus {
  namespace: string;
  plugin: string;
  from: VersionRef;
  to: VersionRef;
  steps: number[];
  intervalMs: number;
  /** Index into steps of the current (or last) step. */
  step: number;
  /** The canary's current share of streams, percent. */
  weight: number;
  phase: RolloutPhase;
  /** Why it is where it is (the reason of a rollback, in particular). */
  message: string;
  thresholds: RolloutThresholds;
  startedAt: string;
  stepStartedAt: string;
  finishedAt?: string;
  startedBy: string;
  /** Since the rollout started, over the proxies reporting to this replica. */
  stable?: RolloutStats;
  canary?: RolloutStats;
  /** While it runs: the proxies expected to report on the canary, and those silent now. */
  reporting?: { expected: number; silent: SilentProxy[] };
}

export interface SilentProxy {
  node: string;
  /** Since its last report on the canary (or since it was sent the canary, if it never reported). */
  silentMs: number;
  /** Still connected to this replica. */
  connected: boolean;
}

export interface StartRollout {
  namespace: string;
  plugin: string;
  /** Module version (of the plugin's module name) to roll out. */
  to: string;
  steps?: number[];
  intervalMs?: number;
  thresholds?: Partial<RolloutThresholds>;
  by: string;
}

interface Running {
  status: RolloutStatus;
  baseline: Baseline;
  timer?: NodeJS.Timeout;
  check?: NodeJS.Timeout;
  /** A transition is being written: reports wait. */
  busy: boolean;
  /** Proxies that should report on the canary: node -> when this replica first saw it had the canary. */
  watched: Map<string, number>;
}

/** A config a proxy connected to this replica refused (a NACK), as the discovery service reports it. */
export interface Refusal {
  node: string;
  message: string;
  at: string;
}

/** A proxy connected to this replica, and the canaries of the config it runs or was sent (the discovery service's view). */
export interface ConnectedProxy {
  node: string;
  canaries?: ReadonlyArray<{ plugin: string; sha256: string }>;
}

export interface RolloutControllerOptions {
  writer: PluginWriter;
  stats: CanaryStats;
  listModules: (name?: string) => Promise<ModuleRecord[]>;
  /** The proxies' latest refusals: a proxy that cannot start the new version NACKs, and never reports on it. */
  refusals?: () => Refusal[];
  /** The proxies connected to this replica: those sent the canary must keep reporting on it. */
  proxies?: () => ConnectedProxy[];
  /** How often a running rollout is judged without a report (refusals, quiet proxies); default 1000 ms. */
  checkEveryMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export class RolloutController {
  readonly #opts: RolloutControllerOptions;
  /** `namespace/name` -> the rollout this replica runs. */
  readonly #running = new Map<string, Running>();
  readonly #stopReports: () => void;
  #closed = false;

  constructor(opts: RolloutControllerOptions) {
    this.#opts = opts;
    this.#stopReports = opts.stats.onReport((plugins) => {
      for (const id of plugins) {
        const r = this.#running.get(id);
        if (r !== undefined) void this.#judge(r, false);
      }
    });
  }

  #log(level: 'info' | 'warn' | 'error', message: string): void {
    this.#opts.log?.(level, `[rollout] ${message}`);
  }

  /** Starts a rollout; refuses (HttpError) when one is running, the version is unknown or already serving. */
  async start(req: StartRollout): Promise<RolloutStatus> {
    const id = `${req.namespace}/${req.plugin}`;
    const steps = req.steps ?? DEFAULT_STEPS;
    const document = `WasmPlugin ${id}`;
    const bad = (message: string, status = 400) => new HttpError(status, status === 409 ? ErrorCode.Conflict : ErrorCode.BadRequest, [{ document, path: '', message }]);
    if (steps.length === 0 || steps.some((s) => !(s > 0 && s <= 100)) || steps.some((s, i) => i > 0 && s <= steps[i - 1]!)) {
      throw bad(`steps must be increasing percentages in (0, 100], got ${steps.join(',')}`);
    }
    const intervalMs = req.intervalMs ?? DEFAULT_INTERVAL_MS;
    if (!(intervalMs >= 100)) throw bad(`interval must be at least 100 ms, got ${intervalMs}`);
    const thresholds = { ...DEFAULT_THRESHOLDS, ...(req.thresholds ?? {}) };
    if (!(thresholds.silentAfterMs >= 100)) throw bad(`silentAfterMs must be at least 100 ms (proxies report every 2 s: give it several reports), got ${thresholds.silentAfterMs}`);
    if (!(thresholds.maxSilenceMs >= thresholds.silentAfterMs)) throw bad(`maxSilenceMs (${thresholds.maxSilenceMs}) must be at least silentAfterMs (${thresholds.silentAfterMs})`);
    const current = await this.#opts.writer.mustGet(req.namespace, req.plugin);
    const existing = readRollout(current);
    if (this.#running.has(id) || existing?.phase === 'Progressing') throw bad(`a rollout to ${label(existing?.to)} is in progress; abort it first (wasmesh filter rollback ${req.plugin})`, 409);
    const moduleName = moduleNameOf(current);
    const modules = await this.#opts.listModules(moduleName);
    const target = modules.find((m) => m.version === req.to);
    if (!target) throw bad(`module ${moduleName}@${req.to} has not been uploaded (have: ${modules.map((m) => m.version).join(', ') || 'none'}); upload it with wasmesh filter deploy --upload-only`);
    const from = resolveVersion(String(current.spec.url), await this.#opts.listModules(), moduleName);
    if (from.sha256 === undefined) throw bad(`the plugin's url ${JSON.stringify(current.spec.url)} is not an uploaded module; deploy one first`);
    if (from.sha256 === target.sha256) throw bad(`${moduleName}@${req.to} is already what the plugin runs`, 409);
    const now = new Date().toISOString();
    const status: RolloutStatus = {
      namespace: req.namespace,
      plugin: req.plugin,
      from: { sha256: from.sha256, ...(from.name ? { name: from.name } : {}), ...(from.version ? { version: from.version } : {}) },
      to: { sha256: target.sha256, name: target.name, version: target.version },
      steps,
      intervalMs,
      step: 0,
      weight: steps[0]!,
      phase: 'Progressing',
      message: `step 1 of ${steps.length}: ${steps[0]}% of streams to ${target.name}@${target.version}`,
      thresholds,
      startedAt: now,
      stepStartedAt: now,
      startedBy: req.by,
    };
    const running: Running = { status, baseline: this.#opts.stats.baseline(id), busy: true, watched: new Map() };
    this.#running.set(id, running);
    try {
      await this.#write(running, req.by);
    } catch (err) {
      this.#running.delete(id);
      throw err;
    }
    running.busy = false;
    this.#log('info', `${id}: rollout ${label(status.from)} -> ${label(status.to)} started (steps ${steps.join(',')}, every ${intervalMs} ms)`);
    this.#schedule(running);
    return this.#withStats(running);
  }

  /** The rollout of a plugin: this replica's live view, else what the annotation says. */
  async status(namespace: string, plugin: string): Promise<RolloutStatus | undefined> {
    const running = this.#running.get(`${namespace}/${plugin}`);
    if (running) return this.#withStats(running);
    const r = await this.#opts.writer.get(namespace, plugin);
    return r ? readRollout(r) : undefined;
  }

  /** Stops a rollout in progress and removes the canary; the old version keeps every stream. */
  async abort(namespace: string, plugin: string, by: string, reason = 'aborted by request'): Promise<RolloutStatus | undefined> {
    const running = this.#running.get(`${namespace}/${plugin}`);
    if (running) {
      await this.#finish(running, 'Aborted', reason, by);
      return running.status;
    }
    // Started elsewhere (or before a restart): end it in the resource.
    const r = await this.#opts.writer.get(namespace, plugin);
    const status = r ? readRollout(r) : undefined;
    if (!status || status.phase !== 'Progressing') return status;
    const ended: RolloutStatus = { ...status, phase: 'Aborted', weight: 0, message: reason, finishedAt: new Date().toISOString() };
    await this.#opts.writer.update(namespace, plugin, by, (_c, next) => {
      delete next.spec.canary;
      next.annotations[ROLLOUT_ANNOTATION] = JSON.stringify(ended);
      delete next.annotations[CHANGE_CAUSE_ANNOTATION];
    });
    return ended;
  }

  /** Picks up rollouts left in progress (after a restart): the current step starts over. */
  async resume(plugins: readonly Resource[]): Promise<void> {
    for (const r of plugins) {
      const status = readRollout(r);
      if (status?.phase !== 'Progressing') continue;
      const id = `${r.metadata.namespace}/${r.metadata.name}`;
      if (this.#running.has(id)) continue;
      // Thresholds added since the rollout began take their defaults.
      const thresholds = { ...DEFAULT_THRESHOLDS, ...status.thresholds };
      const running: Running = { status: { ...status, thresholds, stepStartedAt: new Date().toISOString() }, baseline: this.#opts.stats.baseline(id), busy: false, watched: new Map() };
      this.#running.set(id, running);
      this.#log('info', `${id}: resuming rollout to ${label(status.to)} at step ${status.step + 1} (${status.weight}%)`);
      this.#schedule(running);
    }
  }

  close(): void {
    this.#closed = true;
    this.#stopReports();
    for (const r of this.#running.values()) {
      clearTimeout(r.timer);
      clearInterval(r.check);
    }
    this.#running.clear();
  }

  #schedule(r: Running): void {
    clearTimeout(r.timer);
    if (this.#closed) return;
    if (r.check === undefined) {
      r.check = setInterval(() => void this.#judge(r, false), this.#opts.checkEveryMs ?? 1000);
      r.check.unref();
    }
    const elapsed = Date.now() - Date.parse(r.status.stepStartedAt);
    r.timer = setTimeout(() => void this.#judge(r, true), Math.max(0, r.status.intervalMs - elapsed));
    r.timer.unref();
  }

  #stats(r: Running): { stable: RolloutStats; canary: RolloutStats } {
    const id = `${r.status.namespace}/${r.status.plugin}`;
    const withRates = (t: VersionTotals): RolloutStats => ({ ...t, errorRate: t.streams > 0 ? t.failedStreams / t.streams : 0, trapRate: t.streams > 0 ? t.traps / t.streams : 0 });
    return {
      stable: withRates(this.#opts.stats.totals(id, r.status.from.sha256, r.baseline)),
      canary: withRates(this.#opts.stats.totals(id, r.status.to.sha256, r.baseline)),
    };
  }

  #withStats(r: Running): RolloutStatus {
    if (r.status.phase !== 'Progressing') return r.status;
    return { ...r.status, ...this.#stats(r), reporting: { expected: r.watched.size, silent: this.#silent(r) } };
  }

  /**
   * The proxies that should report on the canary and have not for silentAfterMs, longest first. A
   * proxy joins the watch when this replica first sees the canary in its config; it leaves only by
   * being sent a config without it. Disconnecting does not take it off: a proxy that dies, or whose
   * stream ends, mid-step is silent.
   */
  #silent(r: Running): SilentProxy[] {
    const id = `${r.status.namespace}/${r.status.plugin}`;
    const sha = r.status.to.sha256.toLowerCase();
    const now = Date.now();
    const connected = new Set<string>();
    for (const p of this.#opts.proxies?.() ?? []) {
      connected.add(p.node);
      const runsCanary = (p.canaries ?? []).some((c) => c.plugin === id && c.sha256.toLowerCase() === sha);
      if (runsCanary && !r.watched.has(p.node)) r.watched.set(p.node, now);
      else if (!runsCanary) r.watched.delete(p.node);
    }
    const silent: SilentProxy[] = [];
    for (const [node, since] of r.watched) {
      const silentMs = now - Math.max(since, this.#opts.stats.lastReport(node, id, sha) ?? 0);
      if (silentMs > r.status.thresholds.silentAfterMs) silent.push({ node, silentMs, connected: connected.has(node) });
    }
    return silent.sort((a, b) => b.silentMs - a.silentMs);
  }

  /** Why the canary is worse than the stable version, or undefined when it is not (yet). */
  #verdict(r: Running): string | undefined {
    const id = `WasmPlugin ${r.status.namespace}/${r.status.plugin}`;
    const since = Date.parse(r.status.startedAt);
    const refused = this.#opts.refusals?.().find((n) => Date.parse(n.at) >= since && n.message.includes(id));
    if (refused) return `proxy ${refused.node} refused the new version: ${refused.message}`;
    const { stable, canary } = this.#stats(r);
    const t = r.status.thresholds;
    if (canary.badOn.length > 0) return `the new version failed repeatedly on ${canary.badOn.join(', ')}${causes(canary.trapCauses)}`;
    if (canary.traps > 0 && canary.trapRate - stable.trapRate > t.maxTrapRateIncrease) {
      return `the new version trapped ${canary.traps} time(s)${causes(canary.trapCauses)} in ${canary.streams} streams (${pct(canary.trapRate)} vs ${pct(stable.trapRate)} for the old one)`;
    }
    const stalled = canary.stalledOn[0];
    if (stalled) return `proxy ${stalled.node}'s event loop stalled ${stalled.stalls} time(s) while it ran the new version (step ${r.status.step + 1})`;
    if (canary.streams >= t.minStreams && canary.errorRate - stable.errorRate > t.maxErrorRateIncrease) {
      return `the new version failed ${pct(canary.errorRate)} of ${canary.streams} streams (5xx or reset) vs ${pct(stable.errorRate)} for the old one (allowed: +${pct(t.maxErrorRateIncrease)})`;
    }
    return undefined;
  }

  /** On a report, every checkEveryMs, and at the end of a step's interval (stepEnd). */
  async #judge(r: Running, stepEnd: boolean): Promise<void> {
    if (r.busy || r.status.phase !== 'Progressing' || this.#closed) return;
    const silent = this.#silent(r);
    const longest = silent[0];
    let reason = this.#verdict(r);
    if (reason === undefined && longest !== undefined && longest.silentMs > r.status.thresholds.maxSilenceMs) {
      reason = `proxy ${longest.node} stopped reporting during step ${r.status.step + 1} (no report for ${seconds(longest.silentMs)}${longest.connected ? '' : '; it disconnected'})`;
    }
    if (reason !== undefined) {
      this.#log('warn', `${r.status.namespace}/${r.status.plugin}: rolling back: ${reason}`);
      await this.#finish(r, 'RolledBack', `rolled back automatically: ${reason}`, 'orchestrator:rollout');
      return;
    }
    const s = r.status;
    // A step whose interval passed while a proxy was silent moves on once it reports again.
    const due = stepEnd || Date.now() - Date.parse(s.stepStartedAt) >= s.intervalMs;
    if (!due) return;
    if (longest !== undefined) {
      const waiting = `step ${s.step + 1} of ${s.steps.length} waits: proxy ${longest.node} has not reported for ${seconds(longest.silentMs)}${longest.connected ? '' : ' (disconnected)'}${silent.length > 1 ? ` (and ${silent.length - 1} more)` : ''}; rolled back at ${seconds(s.thresholds.maxSilenceMs)}`;
      if (!s.message.startsWith(`step ${s.step + 1} of ${s.steps.length} waits`)) this.#log('warn', `${s.namespace}/${s.plugin}: ${waiting}`);
      s.message = waiting;
      return;
    }
    const next = s.step + 1;
    if (next >= s.steps.length) {
      await this.#finish(r, 'Succeeded', `${label(s.to)} serves every stream`, 'orchestrator:rollout');
      return;
    }
    const { canary } = this.#stats(r);
    const thin = canary.streams < s.thresholds.minStreams ? ` (the previous step saw only ${canary.streams} streams of the new version)` : '';
    s.step = next;
    s.weight = s.steps[next]!;
    s.stepStartedAt = new Date().toISOString();
    s.message = `step ${next + 1} of ${s.steps.length}: ${s.weight}% of streams to ${label(s.to)}${thin}`;
    r.busy = true;
    try {
      await this.#write(r, 'orchestrator:rollout');
      this.#log('info', `${s.namespace}/${s.plugin}: ${s.message}`);
    } catch (err) {
      this.#log('error', `${s.namespace}/${s.plugin}: cannot write step ${next + 1}: ${messageOf(err)}; aborting`);
      r.busy = false;
      await this.#finish(r, 'Aborted', `could not write step ${next + 1}: ${messageOf(err)}`, 'orchestrator:rollout');
      return;
    }
    r.busy = false;
    this.#schedule(r);
  }

  async #finish(r: Running, phase: Exclude<RolloutPhase, 'Progressing'>, message: string, by: string): Promise<void> {
    const id = `${r.status.namespace}/${r.status.plugin}`;
    clearTimeout(r.timer);
    clearInterval(r.check);
    const stats = this.#stats(r);
    r.status = { ...r.status, ...stats, phase, message, finishedAt: new Date().toISOString(), weight: phase === 'Succeeded' ? 100 : 0 };
    r.busy = true;
    try {
      await this.#write(r, by);
    } catch (err) {
      this.#log('error', `${id}: cannot record the end of the rollout (${phase}): ${messageOf(err)}`);
    } finally {
      this.#running.delete(id);
    }
    this.#log(phase === 'Succeeded' ? 'info' : 'warn', `${id}: rollout ${phase}: ${message}`);
  }

  /** Writes the plugin for the rollout's current state: canary weight, or the end (promote / remove the canary). */
  async #write(r: Running, by: string): Promise<void> {
    const s = r.status;
    await this.#opts.writer.update(s.namespace, s.plugin, by, (_current, next) => {
      const canaryUrl = `digest:sha256:${s.to.sha256}`;
      delete next.annotations[CHANGE_CAUSE_ANNOTATION];
      if (s.phase === 'Progressing') {
        next.spec.canary = { url: canaryUrl, sha256: s.to.sha256, weight: s.weight };
      } else {
        delete next.spec.canary;
        if (s.phase === 'Succeeded') {
          next.spec.url = canaryUrl;
          delete next.spec.sha256;
          next.annotations[CHANGE_CAUSE_ANNOTATION] = `rollout to ${label(s.to)} (steps ${s.steps.join(',')}%)`;
        }
      }
      const { stable: _s, canary: _c, ...persisted } = s;
      next.annotations[ROLLOUT_ANNOTATION] = JSON.stringify(s.phase === 'Progressing' ? persisted : s);
    });
  }
}

export function readRollout(resource: Pick<Resource, 'metadata'>): RolloutStatus | undefined {
  const raw = resource.metadata.annotations?.[ROLLOUT_ANNOTATION];
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as RolloutStatus;
  } catch {
    return undefined;
  }
}

function label(v: VersionRef | undefined): string {
  if (!v) return '?';
  return v.name && v.version ? `${v.name}@${v.version}` : `sha256:${v.sha256.slice(0, 12)}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** " (cpu_budget: 3, memory: 1)", or "" without causes. */
function causes(byCause: Record<string, number>): string {
  const entries = Object.entries(byCause).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? '' : ` (${entries.map(([c, n]) => `${c}: ${n}`).join(', ')})`;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function messageOf(err: unknown): string {
  if (err instanceof HttpError) return err.errors.map((e) => e.message).join('; ');
  return err instanceof Error ? err.message : String(err);
}
