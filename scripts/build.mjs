// npm run build: the CLI compiled to JavaScript in dist/ (one bundle, split per command, so a proxy
// process loads the proxy's code and nothing of the orchestrator, the store or the filter compiler),
// with a record of the sources it was built from. scripts/wasmesh.mjs runs dist/ when it is there and
// newer than every one of those sources, and the TypeScript through tsx otherwise: production processes
// (`npm start`, `wasmesh run`, a sidecar in a pod) run compiled code, an author's edit is never shadowed
// by a stale build. Then the proxy's native addon (scripts/build-native.mjs: SO_ORIGINAL_DST for
// captured TCP), whose failure is reported and fails nothing else.
//
//   node scripts/build.mjs [--quiet]
import { build } from 'esbuild';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNative } from './build-native.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');
/** What scripts/wasmesh.mjs reads to decide whether dist/ is current. */
export const BUILD_RECORD = 'build.json';

const quiet = process.argv.includes('--quiet');
const started = performance.now();
rmSync(DIST, { recursive: true, force: true });
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: { cli: 'scripts/cli/main.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // npm packages stay in node_modules (native addons, patched SDK files, data files they read).
  packages: 'external',
  outdir: DIST,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
});
const inputs = Object.keys(result.metafile.inputs).filter((f) => !f.startsWith('node_modules/'));
// The newest source at build time: a later edit makes the build stale.
let newest = 0;
for (const f of inputs) newest = Math.max(newest, statSync(path.join(ROOT, f)).mtimeMs);
writeFileSync(path.join(DIST, BUILD_RECORD), JSON.stringify({ builtAt: Date.now(), newestSource: newest, inputs }, null, 1) + '\n');
if (!quiet) process.stdout.write(`built dist/ from ${inputs.length} sources in ${Math.round(performance.now() - started)} ms\n`);
buildNative({ quiet });
