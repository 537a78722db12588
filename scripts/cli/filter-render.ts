// What the filter version commands (status, history, rollout, rollback) print: shared rendering of
// GET /filters/{ns}/{name} and of a rollout's progress.
import type { FilterStatusBody } from '../../orchestrator/src/http/filters.ts';
import type { ModuleMetadata } from '../../wasm/src/producers.ts';
import type { RolloutStats, RolloutStatus } from '../../orchestrator/src/rollout/controller.ts';
import { age, table } from '../../orchestrator/src/cli-client/common.ts';
import { UsageError } from '../../orchestrator/src/cli-client/client.ts';

export function filterPath(namespace: string, name: string, suffix = ''): string {
  return `/filters/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${suffix}`;
}

/** "30s", "500ms", "2m", "1h"; a bare number is seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new UsageError(`${flag} must be a duration like 30s, 500ms or 2m, not "${value}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

export function versionLabel(v: { name?: string; version?: string; sha256?: string } | undefined): string {
  if (!v) return '-';
  if (v.version) return v.name ? `${v.name}@${v.version}` : v.version;
  return v.sha256 ? `sha256:${v.sha256.slice(0, 12)}` : '-';
}

/** `[██████░░░░░░░░░░░░░░] 25%` */
export function progressBar(percent: number, width = 24): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(Math.round(percent)).padStart(3)}%`;
}

function statsRow(name: string, s: RolloutStats | undefined): string[] {
  if (!s) return [name, '-', '-', '-', '-', '-'];
  const state = s.badOn.length > 0 ? `bad on ${s.badOn.length}` : (s.stalledOn?.length ?? 0) > 0 ? `stalled on ${s.stalledOn.length}` : 'ok';
  return [name, String(s.streams), `${s.failedStreams} (${(s.errorRate * 100).toFixed(1)}%)`, String(s.traps), String(s.proxies), state];
}

/**
 * The rollout's progress. `since` is set when the plugin no longer serves what the rollout left it
 * serving (a rollback or deploy after it ended): its bar and message then describe the past, so only
 * the phase and what changed since are printed.
 */
export function renderRollout(r: RolloutStatus, now = Date.now(), since?: string): string {
  const lines: string[] = [];
  const stepNo = `${Math.min(r.step + 1, r.steps.length)}/${r.steps.length}`;
  lines.push(`${r.phase === 'Progressing' ? 'rollout' : 'last rollout'} ${versionLabel(r.from)} -> ${versionLabel(r.to)}: ${r.phase}`);
  if (since !== undefined) {
    lines.push(`  ended ${age(r.finishedAt, now)} ago; since then: ${since}`);
  } else if (r.phase === 'Progressing') {
    const left = Math.max(0, r.intervalMs - (now - Date.parse(r.stepStartedAt)));
    lines.push(`  ${progressBar(r.weight)} of streams on the new version, step ${stepNo} (steps ${r.steps.join(',')}%), next step in ${Math.ceil(left / 1000)}s`);
  } else {
    lines.push(`  ${progressBar(r.weight)} of streams on the new version; ended ${age(r.finishedAt, now)} ago`);
  }
  if (since === undefined) lines.push(`  ${r.message}`);
  const silent = r.reporting?.silent ?? [];
  if (silent.length > 0) lines.push(`  silent: ${silent.map((p) => `${p.node} (${(p.silentMs / 1000).toFixed(1)} s${p.connected ? '' : ', disconnected'})`).join(', ')}`);
  if (r.stable || r.canary) {
    const t = table(['VERSION', 'STREAMS', 'FAILED', 'TRAPS', 'PROXIES', 'STATE'], [statsRow(`old ${versionLabel(r.from)}`, r.stable), statsRow(`new ${versionLabel(r.to)}`, r.canary)]);
    lines.push(...t.trimEnd().split('\n').map((l) => `  ${l}`));
  }
  return lines.join('\n') + '\n';
}

export function renderStatus(s: FilterStatusBody, now = Date.now()): string {
  const out: string[] = [];
  out.push(`WasmPlugin ${s.namespace}/${s.plugin} (module ${s.module})`);
  out.push(`  serving: ${versionLabel({ name: s.module, ...s.current })}${s.canary ? `, canary ${versionLabel({ name: s.module, ...s.canary })} at ${s.canary.weight}%` : ''}`);
  const serving = s.versions.find((v) => v.current)?.metadata;
  if (serving) out.push(`  made with: ${madeWith(serving, true)}`);
  if (s.rollout) out.push(...renderRollout(s.rollout, now, changedSince(s, now)).trimEnd().split('\n').map((l) => `  ${l}`));
  return out.join('\n') + '\n';
}

/**
 * What changed the plugin's module after its last rollout ended, when it no longer serves what the
 * rollout left it serving (the new version if it succeeded, else the old one); undefined otherwise.
 */
function changedSince(s: FilterStatusBody, now: number): string | undefined {
  const r = s.rollout;
  if (!r || r.phase === 'Progressing') return undefined;
  const left = r.phase === 'Succeeded' ? r.to : r.from;
  if (s.current.sha256 === undefined || s.current.sha256 === left.sha256) return undefined;
  const serving = versionLabel({ name: s.module, ...s.current });
  const after = r.finishedAt === undefined ? [] : s.history.filter((e) => Date.parse(e.at) >= Date.parse(r.finishedAt!));
  const last = after.at(-1);
  const what = last ? `${last.cause ?? 'a deploy'} (${age(last.at, now)} ago, by ${last.by})` : 'the plugin was pointed at another version';
  return `${what}; ${serving} serves every stream`;
}

export function renderHistory(s: FilterStatusBody, now = Date.now()): string {
  const out: string[] = [`WasmPlugin ${s.namespace}/${s.plugin}: module ${s.module}`, ''];
  out.push('Deploy history (oldest first):');
  if (s.history.length === 0) out.push('  (none recorded)');
  else {
    const rows = s.history.map((e, i) => [String(i + 1), versionLabel({ name: s.module, version: e.version, sha256: e.sha256 }), age(e.at, now), e.by, e.cause ?? '']);
    out.push(...table(['#', 'VERSION', 'AGE', 'BY', 'CAUSE'], rows).trimEnd().split('\n').map((l) => `  ${l}`));
  }
  out.push('', `Uploaded versions of ${s.module}:`);
  if (s.versions.length === 0) out.push('  (none)');
  else {
    const rows = s.versions.map((v) => [v.version, `sha256:${v.sha256.slice(0, 12)}`, String(v.size), madeWith(v.metadata), v.uploadedBy, age(v.uploadedAt, now), v.current ? 'serving' : v.canary ? 'canary' : '']);
    out.push(...table(['VERSION', 'DIGEST', 'BYTES', 'MADE WITH', 'UPLOADED BY', 'AGE', ''], rows).trimEnd().split('\n').map((l) => `  ${l}`));
  }
  return out.join('\n') + '\n';
}

/**
 * What a module says about how it was made, in one line: "AssemblyScript 0.28.9 (sdk
 * @solo-io/proxy-runtime 0.1.8)"; `full` adds the tools and, for components, the world's exports.
 */
export function madeWith(m: ModuleMetadata | undefined, full = false): string {
  if (!m) return '-';
  const parts: string[] = [];
  if (m.kind === 'component') parts.push('component');
  parts.push(m.language ?? 'language not recorded');
  const extra: string[] = [];
  if (m.sdk) extra.push(`sdk ${m.sdk}`);
  if (full && m.processedBy) extra.push(`by ${m.processedBy}`);
  if (full && m.world) extra.push(`exports ${m.world.exports.join(', ') || 'nothing'}`);
  return `${parts.join(' ')}${extra.length > 0 ? ` (${extra.join('; ')})` : ''}`;
}
