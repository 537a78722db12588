// What one more VM in a plugin's pool (spec.vms) costs in memory, for each built filter: the plugin is
// loaded with 1 VM, then POOLS plugins of POOL VMs each (empty plugin config) are started beside it,
// and the process's memory is compared after a full GC. Prints a table; writes nothing. Not a load benchmark: a few seconds, one process.
//
//   node --expose-gc --import tsx wasm/bench/pool-memory.ts [repository root with built filters]
//
// Columns: linear memory of one VM (the guest's own heap, by the runtime's accounting), and per VM of
// the pool the growth of RSS, of V8's JS heap and of memory outside it (external: wasm memories).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetricsRegistry, Plugin, compileModule } from '../src/index.ts';

/** Pools of MAX_PLUGIN_VMS held at once per measurement: enough VMs that the growth stands out of the noise. */
const POOLS = 8;
const POOL = 16;
const ROUNDS = 3;
const FILTERS = [
  'filters/telemetry/build/telemetry.wasm',
  'filters/policy/build/policy.wasm',
  'filters/authn/build/authn.wasm',
  'filters/fault/build/fault.wasm',
  'filters/examples/add-header/build/add-header.wasm',
];

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

function usage(): { rss: number; heap: number; external: number } {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external };
}

const kib = (n: number) => `${Math.round(n / 1024)} KiB`;

async function main(): Promise<void> {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '../..'));
  const rows: string[] = ['| module | linear memory of one VM | RSS per VM | JS heap per VM | external per VM |', '|---|---|---|---|---|'];
  for (const filter of FILTERS) {
    const file = path.join(root, filter);
    if (!existsSync(file)) {
      rows.push(`| ${filter} | not built | | | |`);
      continue;
    }
    const compiled = await compileModule(await readFile(file), { name: filter });
    const host = { metrics: new MetricsRegistry(), log: () => {} };
    const per = { rss: [] as number[], heap: [] as number[], external: [] as number[] };
    let linear = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const one = await Plugin.load(compiled, { name: 'one', configuration: {} }, host);
      linear = one.vm.mem.size;
      const before = usage();
      const pools: Plugin[] = [];
      for (let i = 0; i < POOLS; i++) pools.push(await Plugin.load(compiled, { name: `pool${i}`, configuration: {}, vms: POOL }, host));
      const after = usage();
      // `one` stays alive while the pool is measured, so the module's code is loaded already: the
      // growth is the pool's VMs alone.
      const vms = POOLS * POOL;
      per.rss.push((after.rss - before.rss) / vms);
      per.heap.push((after.heap - before.heap) / vms);
      per.external.push((after.external - before.external) / vms);
      for (const pool of pools) await pool.stop();
      await one.stop();
    }
    const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    rows.push(`| ${filter} | ${kib(linear)} | ${kib(median(per.rss))} | ${kib(median(per.heap))} | ${kib(median(per.external))} |`);
  }
  process.stdout.write(`Memory per VM, from ${POOLS} pools of ${POOL} VMs held at once (median of ${ROUNDS}), Node.js ${process.version}:\n\n${rows.join('\n')}\n`);
}

await main();
