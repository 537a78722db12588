// Summarizes V8 .cpuprofile files (node --cpu-prof): top functions by self time, with file:line,
// and self time by area and by file. Usage: node profile-summary.mjs <file.cpuprofile | dir> [topN] [path prefix...]
// With path prefixes (e.g. proxy-host/src wasm/src), also lists the top functions under them.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [target, topArg, ...prefixes] = process.argv.slice(2);
if (!target) {
  process.stderr.write('usage: node profile-summary.mjs <file.cpuprofile | dir> [topN]\n');
  process.exit(2);
}
const top = Number(topArg) || 15;
const files = statSync(target).isDirectory()
  ? readdirSync(target).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(target, f))
  : [target];

function where(frame) {
  let url = frame.url || '';
  if (url.startsWith('file://')) url = fileURLToPath(url);
  if (url.startsWith(ROOT + path.sep)) url = path.relative(ROOT, url);
  url = url.replace(/^.*node_modules\//, 'node_modules/');
  return url ? `${url}:${frame.lineNumber + 1}` : '';
}

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Samples under node:inspector are the in-process profiler stopping itself (wasmesh-proxy.ts): left out.
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const underInspector = (id) => {
    for (let q = id; q !== undefined; q = parent.get(q)) if (byId.get(q).callFrame.url === 'node:inspector') return true;
    return false;
  };
  const selfUs = new Map();
  let profilerUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    if (underInspector(id)) {
      profilerUs += profile.timeDeltas[i] ?? 0;
      continue;
    }
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const areas = new Map();
  const area = (f) => {
    const u = f.url || '';
    if (!u) return f.functionName.startsWith('(') ? f.functionName : 'native (no JS source: socket writes, builtins)';
    if (u.startsWith('wasm://')) return 'wasm code (undici llhttp parser; filter modules)';
    if (u.startsWith('node:')) return 'Node.js core (node:*)';
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
    if (m) return `node_modules/${m[1]}`;
    const rel = where({ ...f, lineNumber: -1 }).replace(/:0$/, '');
    const top = rel.split('/').slice(0, 2).join('/');
    return top || rel;
  };
  const fns = new Map();
  const byFile = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id).callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const key = `${f.functionName || '(anonymous)'}\t${where(f)}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const fileKey = f.url ? where({ ...f, lineNumber: -1 }).replace(/:0$/, '') : f.functionName;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const pct = (us) => ((us / total) * 100).toFixed(1).padStart(5);
  const ms = (us) => (us / 1000).toFixed(0).padStart(7);
  process.stdout.write(`\n${path.basename(file)}: ${(total / 1e6).toFixed(1)} s busy, ${(idle / 1e6).toFixed(1)} s idle${profilerUs ? `, ${(profilerUs / 1e6).toFixed(1)} s in the profiler's own stop (left out)` : ''}\n`);
  process.stdout.write(`top ${top} by self time (% of busy):\n`);
  [...fns].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([key, us], i) => {
    const [fn, loc] = key.split('\t');
    process.stdout.write(`${String(i + 1).padStart(3)}. ${pct(us)}% ${ms(us)} ms  ${fn}  ${loc}\n`);
  });
  if (prefixes.length) {
    process.stdout.write(`top ${top} under ${prefixes.join(', ')}:\n`);
    [...fns]
      .filter(([key]) => prefixes.some((p) => key.split('\t')[1].startsWith(p)))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .forEach(([key, us], i) => {
        const [fn, loc] = key.split('\t');
        process.stdout.write(`${String(i + 1).padStart(3)}. ${pct(us)}% ${ms(us)} ms  ${fn}  ${loc}\n`);
      });
  }
  process.stdout.write('self time by area:\n');
  [...areas].sort((a, b) => b[1] - a[1]).forEach(([a, us]) => process.stdout.write(`     ${pct(us)}% ${ms(us)} ms  ${a}\n`));
  process.stdout.write(`self time by file (top ${top}):\n`);
  [...byFile].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([f, us]) => process.stdout.write(`     ${pct(us)}% ${ms(us)} ms  ${f}\n`));
}
