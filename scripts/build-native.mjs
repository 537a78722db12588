// The proxy's native addon: proxy-host/native/original-dst.cc (getsockopt SO_ORIGINAL_DST for
// connections an iptables REDIRECT captured), compiled with the machine's C++ compiler against the
// Node-API header of the local Node installation. Nothing is downloaded (node-gyp would fetch
// headers): the headers come with Node (Debian's nodejs package: /usr/include/node; an official
// tarball: <prefix>/include/node).
//
// Output, gitignored: proxy-host/native/build/original-dst.node, and original-dst.json saying how
// the last build went ({ ok, error?, compiler, headers }). A failed build fails nothing else: the
// proxy then reports captured TCP as unavailable with that error (proxy-host/src/tcp/original-dst.ts).
// Rebuilt only when the source (or this script) is newer than the addon.
//
//   node scripts/build-native.mjs [--quiet] [--force]
// Env: CXX (default g++), WASMESH_NODE_HEADERS (a directory holding node_api.h).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NATIVE_DIR = path.join(ROOT, 'proxy-host', 'native');
export const BUILD_DIR = path.join(NATIVE_DIR, 'build');
const SOURCE = path.join(NATIVE_DIR, 'original-dst.cc');
const OUTPUT = path.join(BUILD_DIR, 'original-dst.node');
const STATUS = path.join(BUILD_DIR, 'original-dst.json');

/** The first directory holding node_api.h: WASMESH_NODE_HEADERS, beside this Node, then the system's. */
function nodeHeaders() {
  const candidates = [
    process.env.WASMESH_NODE_HEADERS,
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return { found: candidates.find((d) => existsSync(path.join(d, 'node_api.h'))), candidates };
}

function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Builds the addon unless current; returns { ok, error?, built }. Never throws for a failed compile. */
export function buildNative({ quiet = false, force = false } = {}) {
  if (process.platform !== 'linux') return record({ ok: false, error: `SO_ORIGINAL_DST is Linux only (this is ${process.platform})` }, quiet);
  const newestInput = Math.max(mtime(SOURCE), mtime(fileURLToPath(import.meta.url)));
  if (!force && existsSync(OUTPUT) && mtime(OUTPUT) >= newestInput) return { ok: true, built: false };
  const compiler = process.env.CXX || 'g++';
  const headers = nodeHeaders();
  if (!headers.found) return record({ ok: false, compiler, error: `no Node-API header (node_api.h) in ${headers.candidates.join(', ')}: install Node's headers (Debian: the nodejs package's /usr/include/node) or set WASMESH_NODE_HEADERS` }, quiet);
  mkdirSync(BUILD_DIR, { recursive: true });
  rmSync(OUTPUT, { force: true });
  const tmp = `${OUTPUT}.${process.pid}.tmp`;
  const args = ['-shared', '-fPIC', '-O2', '-std=c++17', '-Wall', '-DNODE_GYP_MODULE_NAME=original_dst', `-I${headers.found}`, SOURCE, '-o', tmp];
  const run = spawnSync(compiler, args, { encoding: 'utf8', timeout: 120_000 });
  if (run.error || run.status !== 0) {
    rmSync(tmp, { force: true });
    const why = run.error ? `${compiler}: ${run.error.code === 'ENOENT' ? 'not found (install g++ or set CXX)' : run.error.message}` : `${compiler} exited ${run.status}: ${(run.stderr || '').trim().split('\n').slice(0, 8).join('\n')}`;
    return record({ ok: false, compiler, headers: headers.found, error: why }, quiet);
  }
  // Renamed into place: a proxy never loads a half-written file.
  renameSync(tmp, OUTPUT);
  return record({ ok: true, compiler, headers: headers.found, built: true }, quiet);
}

function record(status, quiet) {
  mkdirSync(BUILD_DIR, { recursive: true });
  writeFileSync(STATUS, JSON.stringify({ ...status, at: new Date().toISOString() }, null, 1) + '\n');
  if (!status.ok) process.stderr.write(`wasmesh build: native addon original-dst not built (captured TCP under iptables will be unavailable): ${status.error}\n`);
  else if (!quiet && status.built) process.stdout.write(`built ${path.relative(ROOT, OUTPUT)} with ${status.compiler} (headers ${status.headers})\n`);
  return status;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildNative({ quiet: process.argv.includes('--quiet'), force: process.argv.includes('--force') });
}
