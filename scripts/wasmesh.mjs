#!/usr/bin/env node
// wasmesh CLI entry point. Runs the compiled CLI in dist/ (`npm run build`) when it is current, that
// is when no source it was built from changed since; otherwise the TypeScript sources through tsx,
// so an edit is never shadowed by an old build. WASMESH_FROM_SOURCE=1 forces the sources.
import { readFileSync, statSync } from 'node:fs';

const dist = new URL('../dist/', import.meta.url);

/** The build record if dist/ is complete and newer than every source it was built from. */
function currentBuild() {
  if (process.env.WASMESH_FROM_SOURCE === '1') return false;
  let record;
  try {
    record = JSON.parse(readFileSync(new URL('build.json', dist), 'utf8'));
  } catch {
    return false;
  }
  const root = new URL('../', import.meta.url);
  try {
    for (const input of record.inputs) if (statSync(new URL(input, root)).mtimeMs > record.newestSource) return false;
  } catch {
    return false; // a source was removed or renamed: rebuild
  }
  return true;
}

let main;
if (currentBuild()) {
  ({ main } = await import(new URL('cli.mjs', dist).href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('./cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
