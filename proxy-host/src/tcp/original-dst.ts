// The original destination of a connection an iptables REDIRECT captured (the address and port the
// app connected to before the kernel rewrote it to the outbound listener's), read with
// getsockopt(SO_ORIGINAL_DST) by a small Node-API addon (proxy-host/native/original-dst.cc, built
// from source by scripts/build-native.mjs with the local Node headers). Loaded lazily, once, by the
// first listener that needs it; a missing or unloadable addon is reported with the reason, never
// thrown at a connection.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface OriginalDestination {
  address: string;
  port: number;
  family: 4 | 6;
}

/** What reading a socket's original destination gave: the destination, or why there is none. */
export type OriginalDestinationResult = { ok: true; destination: OriginalDestination } | { ok: false; code: string; message: string };

interface Addon {
  originalDst(fd: number): OriginalDestination;
}

/** The addon, or why it is unavailable (asked once per process). */
export type AddonState = { ok: true; addon: Addon; path: string } | { ok: false; reason: string };

let state: AddonState | undefined;

/** The repository root above this module (the sources' proxy-host/src/tcp, or the bundle's dist/chunks). */
function repositoryRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'proxy-host', 'native'))) return dir;
    dir = path.dirname(dir);
  }
  return undefined;
}

/** Where the addon is: WASMESH_ORIGINAL_DST_ADDON, else proxy-host/native/build/original-dst.node. */
export function addonPath(): string | undefined {
  const override = process.env.WASMESH_ORIGINAL_DST_ADDON;
  if (override) return override;
  const root = repositoryRoot();
  return root ? path.join(root, 'proxy-host', 'native', 'build', 'original-dst.node') : undefined;
}

/** Loads the addon once; later calls return the same state. */
export function loadOriginalDstAddon(): AddonState {
  if (state) return state;
  state = load();
  return state;
}

function load(): AddonState {
  if (process.platform !== 'linux') return { ok: false, reason: `reading the original destination (SO_ORIGINAL_DST) is Linux only; this is ${process.platform}` };
  const file = addonPath();
  if (!file) return { ok: false, reason: 'cannot find proxy-host/native above this module' };
  if (!existsSync(file)) {
    let why = '';
    try {
      const status = JSON.parse(readFileSync(path.join(path.dirname(file), 'original-dst.json'), 'utf8')) as { ok?: boolean; error?: string };
      if (status.ok === false && status.error) why = `; the last build failed: ${status.error}`;
    } catch {
      // No build record: never built.
    }
    return { ok: false, reason: `the native addon ${file} is not built (npm run build compiles it with g++ and the Node headers)${why}` };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as Partial<Addon>;
    if (typeof addon.originalDst !== 'function') return { ok: false, reason: `${file} does not export originalDst` };
    return { ok: true, addon: addon as Addon, path: file };
  } catch (err) {
    return { ok: false, reason: `cannot load ${file}: ${(err as Error).message}` };
  }
}

/** The socket's file descriptor (Unix), if it still has one. */
function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The destination `socket` had before any NAT. Without NAT the kernel answers with the socket's own
 * local address when it tracks the connection, or ENOENT when it does not (no conntrack in the
 * network namespace).
 */
export function originalDestination(socket: net.Socket): OriginalDestinationResult {
  const loaded = loadOriginalDstAddon();
  if (!loaded.ok) return { ok: false, code: 'EADDON', message: loaded.reason };
  const fd = socketFd(socket);
  if (fd === undefined) return { ok: false, code: 'EBADF', message: 'the socket has no file descriptor (closed, or not a TCP socket)' };
  try {
    return { ok: true, destination: loaded.addon.originalDst(fd) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { ok: false, code: e.code ?? 'ERR', message: e.message };
  }
}
