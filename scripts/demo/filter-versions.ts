// Two versions of a real filter for the demo's rollout: the add-header example, built from a copy of
// its source in which onResponseHeaders also stamps `x-demo-filter: add-header@<version>`, so every
// answer says which version served it. Built in the author's-loop mode (one compiler kept loaded).
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFilter, closeKeptCompiler } from '../../filters/toolchain/build.ts';

const FILTERS = fileURLToPath(new URL('../../filters/', import.meta.url));
/** The line of add-header's onResponseHeaders the stamp goes in front of. */
const ANCHOR = '    const list = this.root.config.response;';

export const DEMO_FILTER_HEADER = 'x-demo-filter';

/** Builds one module per version under `dir`; returns version -> .wasm path. */
export async function buildDemoFilterVersions(dir: string, versions: readonly string[]): Promise<Map<string, string>> {
  const src = join(dir, 'filters', 'examples', 'add-header');
  const skipBuild = (p: string) => !p.endsWith('/build');
  await cp(join(FILTERS, 'examples', 'add-header'), src, { recursive: true, filter: skipBuild });
  await cp(join(FILTERS, 'common'), join(dir, 'filters', 'common'), { recursive: true, filter: skipBuild });
  const entry = join(src, 'assembly', 'index.ts');
  const original = await readFile(entry, 'utf8');
  if (!original.includes(ANCHOR)) throw new Error(`filters/examples/add-header/assembly/index.ts changed: "${ANCHOR.trim()}" not found`);
  await mkdir(join(dir, 'modules'), { recursive: true });
  const out = new Map<string, string>();
  try {
    for (const version of versions) {
      const stamp = `    stream_context.headers.response.replace("${DEMO_FILTER_HEADER}", "add-header@${version}");\n`;
      await writeFile(entry, original.replace(ANCHOR, stamp + ANCHOR));
      const built = await buildFilter(src, { quiet: true, force: true, dev: true });
      const file = join(dir, 'modules', `add-header-${version}.wasm`);
      await writeFile(file, await readFile(built.wasmPath));
      out.set(version, file);
    }
  } finally {
    await closeKeptCompiler();
  }
  return out;
}
