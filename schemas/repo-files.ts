// Where this installation's files are (the JSON Schemas, the .proto files, the built filters): found
// from the module that asks, whether it runs from the TypeScript sources or from the bundle in dist/
// (`npm run build`), by walking up to the folder whose package.json is wasmesh's. Contracts only: no
// other runtime logic lives in schemas/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The installation's root folder (the one holding wasmesh's package.json). */
export function installRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && isWasmesh(pkg)) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find wasmesh's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

function isWasmesh(pkg: string): boolean {
  try {
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'wasmesh';
  } catch {
    return false;
  }
}

/** A path inside the installation, e.g. installPath('schemas', 'json'). */
export function installPath(...segments: string[]): string {
  return join(installRoot(), ...segments);
}
