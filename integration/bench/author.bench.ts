// npm run bench:author: a scripted newcomer. Follows the quick start of docs/authoring.md exactly as
// written (guide-runner.ts: one bash shell, the guide's commands, its `# =>` checks): a filter from the
// reject template in a folder outside the repository, its build and unit tests, an orchestrator and a
// workload under a managed sidecar, `wasmesh filter deploy`, then live requests (401 without the key,
// 200 with it) and the rejection in the sidecar's metrics. Each step (a block of the guide) is timed,
// each command too; a command that waits for something (a `# =>` retried until the sidecar or the
// config is there) is timed to the attempt that passed. Writes its section of bench/RESULTS.md.
//
// Knobs: BENCH_RUNS (default 3): runs, each from an empty folder (the median per step is reported).
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { AUTHORING_GUIDE, GUIDE_PORTS, QUICK_START_END, parseGuide, runGuideBlocks } from '../test/support/guide-runner.ts';

const SECTION = "## A filter author's first run (npm run bench:author)";
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
/** The reader's target for all of it, issue 17. */
const TARGET_S = 300;

interface Step {
  label: string;
  commands: Array<{ command: string; ms: number; attempts: number }>;
}

async function oneRun(): Promise<Step[]> {
  const guide = parseGuide(await readFile(path.join(repoRoot, AUTHORING_GUIDE), 'utf8'), QUICK_START_END);
  const blocks = guide.blocks.filter((b) => b.beforeMarker);
  const steps = new Map<string, Step>();
  await runGuideBlocks(blocks, {
    ports: GUIDE_PORTS,
    repoRoot,
    onCommand: (block, cmd, result) => {
      const step = steps.get(block.label) ?? { label: block.label, commands: [] };
      steps.set(block.label, step);
      step.commands.push({ command: cmd.command, ms: result.ms, attempts: result.attempts });
      process.stderr.write(`  ${(result.ms / 1000).toFixed(1).padStart(5)} s  ${cmd.command.length > 100 ? `${cmd.command.slice(0, 97)}...` : cmd.command}\n`);
    },
  });
  return [...steps.values()];
}

const total = (s: Step) => s.commands.reduce((sum, c) => sum + c.ms, 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const seconds = (ms: number) => (ms / 1000).toFixed(1);

function report(runs: Step[][], wallS: number, loadBefore: number[]): string {
  const cpus = os.cpus();
  const L: string[] = [SECTION, ''];
  L.push(`Written by \`npm run bench:author\` (integration/bench/author.bench.ts) on ${new Date().toISOString()}.`);
  L.push(
    `Machine: ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}; load average ${loadBefore.map((l) => l.toFixed(2)).join(', ')} before the first run. Shared and noisy. Whole bench ${wallS.toFixed(0)} s.`,
  );
  L.push('');
  L.push(
    `The quick start of ${AUTHORING_GUIDE} run as written by a script, ${runs.length} time(s), each from an empty folder beside a \`wasmesh\` link to the repository (the filter is created outside the repository): every command of its sh blocks in one bash shell, each \`# =>\` checked (retried until it holds, as a reader waits for a sidecar to start or a config to apply), ports mapped to free ones. The mesh: \`wasmesh orchestrator\` (embedded SQLite) and one workload under \`wasmesh run\` (a managed sidecar with its mTLS identity); the filter is deployed with \`wasmesh filter deploy\`. This is the machine's part of a newcomer's first run: reading and typing come on top. Per step, the median over the runs (every run's time in brackets):`,
  );
  L.push('');
  L.push('| step | median | runs |');
  L.push('|---|---|---|');
  const labels = runs[0].map((s) => s.label);
  for (const label of labels) {
    const times = runs.map((r) => total(r.find((s) => s.label === label)!));
    L.push(`| ${label} | **${seconds(median(times))} s** | ${times.map(seconds).join(', ')} s |`);
  }
  const totals = runs.map((r) => r.reduce((sum, s) => sum + total(s), 0));
  L.push(`| all of it | **${seconds(median(totals))} s** | ${totals.map(seconds).join(', ')} s |`);
  L.push('');
  L.push('The commands of the median run (by total), each to the attempt that passed:');
  L.push('');
  const medianRun = runs[totals.indexOf(median(totals))];
  L.push('| command | time | attempts |');
  L.push('|---|---|---|');
  for (const step of medianRun) {
    for (const c of step.commands) L.push(`| \`${c.command.replace(/\|/g, '\\|')}\` | ${seconds(c.ms)} s | ${c.attempts} |`);
  }
  L.push('');
  const slowest = [...medianRun].sort((a, b) => total(b) - total(a))[0];
  L.push(
    `- The machine's part: median **${seconds(median(totals))} s** of the ${TARGET_S} s a newcomer has (issue 17: under five minutes from a fresh clone to the filter answering in a mesh, README and guide only). The slowest step: "${slowest.label}" (${seconds(total(slowest))} s in the median run).`,
  );
  L.push(`- Every run ended with 401 without the key, 200 with it, \`api_key_rejected_total 1\` on the sidecar's /stats/prometheus and the rejection in its log.`);
  return L.join('\n');
}

async function main(): Promise<void> {
  const runCount = Number(process.env.BENCH_RUNS ?? 3);
  if (!Number.isInteger(runCount) || runCount < 1 || runCount > 20) throw new Error(`BENCH_RUNS must be a whole number from 1 to 20, got ${JSON.stringify(process.env.BENCH_RUNS)}`);
  const loadBefore = os.loadavg();
  const started = performance.now();
  const runs: Step[][] = [];
  for (let i = 0; i < runCount; i++) {
    process.stderr.write(`run ${i + 1} of ${runCount}:\n`);
    runs.push(await oneRun());
  }
  const text = report(runs, (performance.now() - started) / 1000, loadBefore);
  await writeResultsSection(text);
  process.stdout.write(`${text}\n`);
}

await main();
