// The external tools benchmarks drive (nginx, wrk, hey, openssl, taskset), found on PATH or in the
// usual sbin folders, and installed from Debian by scripts/bench-tools.sh when missing (as root). A
// benchmark that cannot get a tool says exactly what to run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BENCH_TOOLS_SCRIPT = 'scripts/bench-tools.sh';

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/local/sbin']) if (existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  return undefined;
}

export type BenchTool = 'nginx' | 'wrk' | 'hey' | 'openssl' | 'taskset';

export interface ToolSet {
  paths: Partial<Record<BenchTool, string>>;
  /** Why tools are missing and what to run, when some are. */
  missing?: string;
}

let installTried = false;

/**
 * Finds `tools`; when one is missing and this is root, runs `bash scripts/bench-tools.sh install` once
 * (apt-get; its output goes to stderr) and looks again.
 */
export function ensureTools(tools: readonly BenchTool[]): ToolSet {
  const find = () => Object.fromEntries(tools.map((t) => [t, which(t)]).filter(([, p]) => p !== undefined)) as ToolSet['paths'];
  let paths = find();
  let lacking = tools.filter((t) => !paths[t]);
  if (lacking.length === 0) return { paths };
  const isRoot = process.getuid?.() === 0;
  if (isRoot && !installTried) {
    installTried = true;
    process.stderr.write(`${lacking.join(', ')} missing: bash ${BENCH_TOOLS_SCRIPT} install\n`);
    const r = spawnSync('bash', [path.join(ROOT, BENCH_TOOLS_SCRIPT), 'install'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
    if (r.status !== 0) process.stderr.write(`${BENCH_TOOLS_SCRIPT} install failed (${r.error?.message ?? `exit ${r.status}`})\n`);
    paths = find();
    lacking = tools.filter((t) => !paths[t]);
    if (lacking.length === 0) return { paths };
  }
  return {
    paths,
    missing: `${lacking.join(', ')} not installed${isRoot ? ` (${BENCH_TOOLS_SCRIPT} install did not provide them)` : ''}: run \`sudo bash ${BENCH_TOOLS_SCRIPT} install\``,
  };
}

/** `nginx -v` -> "1.22.1". */
export function nginxVersion(bin: string): string | undefined {
  return /nginx\/([\w.]+)/.exec(spawnSync(bin, ['-v'], { encoding: 'utf8' }).stderr ?? '')?.[1];
}

/** `wrk -v` -> "4.1.0". */
export function wrkVersion(bin: string): string {
  const v = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return /wrk\s+([\w.\-/+]+)/.exec(`${v.stdout}${v.stderr}`)?.[1] ?? '?';
}

/** The Debian package version of a tool that prints none itself (hey), if dpkg knows it. */
export function debianVersion(pkg: string): string | undefined {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}
