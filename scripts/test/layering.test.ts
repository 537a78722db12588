// The layering between the top-level folders (issue 16; README "Layout", RATIONALE "One config model
// below both planes"), checked on every import of every .ts/.mjs file in the repository
// (node_modules, dist/ and filter build output excluded): static imports (type-only ones too),
// re-exports and import() with a literal.
//
//   mesh/           the config model: its own files, schemas/ and npm packages only
//   proxy-host/     the data plane: its own files, wasm/, mesh/ and schemas/ (never orchestrator/, scripts/)
//   orchestrator/   the control plane: never proxy-host/ (the config types it shares are in mesh/)
//   wasm/           the runtime: its own files; wasm/src only Node built-ins besides
//   filters/        never scripts/ (the build is filters/toolchain/)
//   integration/    tests that run both planes; like scripts/, may import any part, and no part imports it
//   proxy-host/src/http/   no import cycle among its files
//
// One exception: a benchmark (a file under a bench/ folder) may import scripts/bench-results.ts,
// the writer of bench/RESULTS.md, which every benchmark shares.
import { readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SKIP_DIRS = new Set(['node_modules', 'dist', 'build']);
const HTTP_DIR = 'proxy-host/src/http/';
const BENCH_RESULTS = 'scripts/bench-results.ts';

interface Import {
  /** The specifier as written. */
  spec: string;
  /** 1-based line of the import. */
  line: number;
  /** Repository-relative path of what it names, for relative imports and the package's own exports; undefined for packages. */
  target?: string;
}

type ImportMap = Map<string, Import[]>;

/** `wasmesh/...` names this package (package.json exports), e.g. `wasmesh/wasm` -> wasm/src/index.ts. */
const packageJson = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { name: string; exports?: Record<string, string> };

function resolveTarget(file: string, spec: string): string | undefined {
  if (spec.startsWith('.')) return path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
  if (spec === packageJson.name || spec.startsWith(`${packageJson.name}/`)) {
    const entry = packageJson.exports?.[`.${spec.slice(packageJson.name.length)}`];
    return entry === undefined ? undefined : path.posix.normalize(entry);
  }
  return undefined;
}

function importsOf(file: string, text: string): Import[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, file.endsWith('.mjs') ? ts.ScriptKind.JS : ts.ScriptKind.TS);
  const found: Import[] = [];
  const visit = (node: ts.Node): void => {
    let literal: ts.Node | undefined;
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) literal = node.moduleSpecifier;
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) literal = node.arguments[0];
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal = node.argument.literal;
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) literal = node.moduleReference.expression;
    if (literal !== undefined && ts.isStringLiteralLike(literal)) {
      const spec = literal.text;
      const line = sf.getLineAndCharacterOfPosition(literal.getStart(sf)).line + 1;
      found.push({ spec, line, target: resolveTarget(file, spec) });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** Every .ts/.mjs file of the repository with its imports. */
function scanRepository(): ImportMap {
  const map: ImportMap = new Map();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(path.join(repoRoot, dir), { withFileTypes: true })) {
      if (entry.name.startsWith('.') || SKIP_DIRS.has(entry.name)) continue;
      const rel = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.isFile() && /\.(ts|mjs)$/.test(entry.name)) map.set(rel, importsOf(rel, readFileSync(path.join(repoRoot, rel), 'utf8')));
    }
  };
  walk('');
  return map;
}

const topOf = (p: string): string => p.split('/', 1)[0]!;
const isBuiltin = (spec: string): boolean => spec.startsWith('node:') || builtinModules.includes(spec.split('/', 1)[0]!);

/** Why importing `imp` from `file` breaks the layering, or undefined when it does not. */
function layeringProblem(file: string, imp: Import): string | undefined {
  const from = topOf(file);
  const to = imp.target === undefined ? undefined : topOf(imp.target);
  if (imp.target === BENCH_RESULTS && /(^|\/)bench\//.test(file)) return undefined;
  if (to === 'integration' && from !== 'integration') return 'nothing outside integration/ may import integration/';
  switch (from) {
    case 'mesh':
      if (to !== undefined && to !== 'mesh' && to !== 'schemas') return 'mesh/ may import only its own files, schemas/ and npm packages';
      return undefined;
    case 'proxy-host':
      if (to !== undefined && !['proxy-host', 'wasm', 'mesh', 'schemas'].includes(to)) return 'proxy-host/ may import only its own files, wasm/, mesh/ and schemas/';
      return undefined;
    case 'orchestrator':
      if (to === 'proxy-host') return 'orchestrator/ must not import proxy-host/ (shared config types are in mesh/, tests of both planes in integration/)';
      return undefined;
    case 'wasm':
      if (to !== undefined && to !== 'wasm') return 'wasm/ may import only its own files';
      if (to === undefined && file.startsWith('wasm/src/') && !isBuiltin(imp.spec)) return 'wasm/src may import only its own files and Node built-ins';
      return undefined;
    case 'filters':
      if (to === 'scripts') return 'filters/ must not import scripts/ (the build is filters/toolchain/build.ts)';
      return undefined;
    default:
      return undefined;
  }
}

function layeringViolations(map: ImportMap): string[] {
  const out: string[] = [];
  for (const [file, imports] of map) {
    for (const imp of imports) {
      const problem = layeringProblem(file, imp);
      if (problem !== undefined) out.push(`${file}:${imp.line}: import '${imp.spec}' (${imp.target ?? 'package'}): ${problem}`);
    }
  }
  return out.sort();
}

/** Import cycles among the files directly in `dir`, each as "a.ts:LINE -> b.ts:LINE -> a.ts". */
function cyclesIn(map: ImportMap, dir: string): string[] {
  const inDir = (p: string): boolean => p.startsWith(dir) && !p.slice(dir.length).includes('/');
  const edges = new Map<string, Array<{ to: string; line: number }>>();
  for (const [file, imports] of map) {
    if (!inDir(file)) continue;
    edges.set(file, imports.filter((i) => i.target !== undefined && inDir(i.target) && map.has(i.target)).map((i) => ({ to: i.target!, line: i.line })));
  }
  // Tarjan's strongly connected components; a component of more than one file (or a file importing
  // itself) holds a cycle, reported once by a walk that stays inside the component.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const connect = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of edges.get(v) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v)!, index.get(to)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) connect(v);
  const cycles: string[] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = component.sort()[0]!;
    if (component.length === 1 && !(edges.get(start) ?? []).some((e) => e.to === start)) continue;
    // Shortest way back to `start` inside the component (breadth first).
    const via = new Map<string, { from: string; line: number }>();
    const queue = [start];
    let closing: { from: string; line: number } | undefined;
    while (queue.length > 0 && closing === undefined) {
      const v = queue.shift()!;
      for (const e of edges.get(v) ?? []) {
        if (!members.has(e.to)) continue;
        if (e.to === start) {
          closing = { from: v, line: e.line };
          break;
        }
        if (!via.has(e.to)) {
          via.set(e.to, { from: v, line: e.line });
          queue.push(e.to);
        }
      }
    }
    const steps: string[] = [];
    let at = closing!.from;
    let line = closing!.line;
    for (;;) {
      steps.unshift(`${at}:${line}`);
      if (at === start) break;
      const prev = via.get(at)!;
      line = prev.line;
      at = prev.from;
    }
    // Each step is "file:line of its import of the next file".
    const described = steps.map((s, i) => (i === 0 ? s : s.slice(dir.length)));
    cycles.push(`${described.join(' -> ')} -> ${start.slice(dir.length)}`);
  }
  return cycles.sort();
}

const repository = scanRepository();

test('the scan sees the repository', () => {
  assert.ok(repository.size > 300, `only ${repository.size} files scanned`);
  const fileSource = repository.get('proxy-host/src/config/file-source.ts') ?? [];
  assert.ok(fileSource.some((i) => i.target === 'mesh/src/translate/proxy-config.ts'), 'proxy-host/src/config/file-source.ts imports mesh/src/translate/proxy-config.ts');
  assert.ok([...repository.keys()].some((f) => f.endsWith('.mjs')), '.mjs files are scanned');
  assert.not.ok([...repository.keys()].some((f) => f.startsWith('node_modules/') || f.includes('/build/')), 'node_modules and build output are not');
});

test('every import follows the layering of the top-level folders', () => {
  const violations = layeringViolations(repository);
  assert.ok(violations.length === 0, `imports that break the layering:\n${violations.join('\n')}`);
});

test('the files of proxy-host/src/http import each other without a cycle', () => {
  const cycles = cyclesIn(repository, HTTP_DIR);
  assert.ok(cycles.length === 0, `import cycles in ${HTTP_DIR}:\n${cycles.join('\n')}`);
});

test('the checks name the file and the import that break a rule', () => {
  const fake: ImportMap = new Map();
  const add = (file: string, ...specs: string[]): void => {
    fake.set(file, specs.map((spec, i) => ({ spec, line: i + 1, target: resolveTarget(file, spec) })));
  };
  add('mesh/src/x.ts', '../../orchestrator/src/app.ts', '../../schemas/proto/wasmesh/discovery/v1/discovery.ts', 'yaml');
  add('proxy-host/src/x.ts', '../../scripts/cli/main.ts', '../../mesh/src/documents.ts');
  add('proxy-host/bench/x.bench.ts', '../../scripts/bench-results.ts');
  add('wasm/src/x.ts', 'yaml', 'node:fs', 'wasmesh/wasm');
  add('orchestrator/test/x.test.ts', '../../proxy-host/src/proxy.ts', '../../scripts/cli/orchestrator.ts');
  add('filters/fault/test/x.test.ts', '../../../scripts/cli/main.ts', '../../toolchain/build.ts');
  add('scripts/cli/x.ts', '../../integration/test/e2e.test.ts');
  assert.equal(layeringViolations(fake), [
    "filters/fault/test/x.test.ts:1: import '../../../scripts/cli/main.ts' (scripts/cli/main.ts): filters/ must not import scripts/ (the build is filters/toolchain/build.ts)",
    "mesh/src/x.ts:1: import '../../orchestrator/src/app.ts' (orchestrator/src/app.ts): mesh/ may import only its own files, schemas/ and npm packages",
    "orchestrator/test/x.test.ts:1: import '../../proxy-host/src/proxy.ts' (proxy-host/src/proxy.ts): orchestrator/ must not import proxy-host/ (shared config types are in mesh/, tests of both planes in integration/)",
    "proxy-host/src/x.ts:1: import '../../scripts/cli/main.ts' (scripts/cli/main.ts): proxy-host/ may import only its own files, wasm/, mesh/ and schemas/",
    "scripts/cli/x.ts:1: import '../../integration/test/e2e.test.ts' (integration/test/e2e.test.ts): nothing outside integration/ may import integration/",
    "wasm/src/x.ts:1: import 'yaml' (package): wasm/src may import only its own files and Node built-ins",
  ]);
  const http: ImportMap = new Map();
  http.set(`${HTTP_DIR}a.ts`, [{ spec: './b.ts', line: 3, target: `${HTTP_DIR}b.ts` }]);
  http.set(`${HTTP_DIR}b.ts`, [{ spec: './c.ts', line: 4, target: `${HTTP_DIR}c.ts` }, { spec: '../log.ts', line: 5, target: 'proxy-host/src/log.ts' }]);
  http.set(`${HTTP_DIR}c.ts`, [{ spec: './a.ts', line: 6, target: `${HTTP_DIR}a.ts` }]);
  http.set(`${HTTP_DIR}d.ts`, [{ spec: './a.ts', line: 1, target: `${HTTP_DIR}a.ts` }]);
  assert.equal(cyclesIn(http, HTTP_DIR), [`${HTTP_DIR}a.ts:3 -> b.ts:4 -> c.ts:6 -> a.ts`]);
});

test.run();
