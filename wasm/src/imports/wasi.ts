// WASI preview1, as much as a filter needs: stdout/stderr to the log, clocks, random, an empty
// argv, the plugin's environment, and every other function answering that it is not available.
// Registered under both wasi_snapshot_preview1 and wasi_unstable.
import { randomFillSync } from 'node:crypto';
import { LogLevel, WasiErrno } from '../abi/constants.ts';
import { ProcExit } from '../errors.ts';
import { MAX_RANDOM_BYTES } from '../limits.ts';
import type { Vm } from '../vm.ts';
import { realtimeNs } from './proxy-general.ts';

const FD_WRITE_RIGHT = 64n;

function errnoFor(name: string): number {
  if (name.startsWith('path_')) return name === 'path_open' ? WasiErrno.Noent : WasiErrno.Notsup;
  if (name.startsWith('sock_')) return WasiErrno.Notsup;
  if (name === 'fd_prestat_get' || name === 'fd_filestat_get') return WasiErrno.Badf;
  return WasiErrno.Nosys;
}

/** The rest of preview1: present so modules link, answering as cpp-host does. */
const UNAVAILABLE = [
  'fd_advise', 'fd_allocate', 'fd_datasync', 'fd_fdstat_set_flags', 'fd_fdstat_set_rights', 'fd_filestat_get',
  'fd_filestat_set_size', 'fd_filestat_set_times', 'fd_pread', 'fd_prestat_get', 'fd_prestat_dir_name', 'fd_read',
  'fd_readdir', 'fd_renumber', 'fd_sync', 'fd_tell', 'path_create_directory', 'path_filestat_get',
  'path_filestat_set_times', 'path_link', 'path_open', 'path_readlink', 'path_remove_directory', 'path_rename',
  'path_symlink', 'path_unlink_file', 'proc_raise', 'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown',
] as const;

export function wasiImports(vm: Vm): Record<string, (...args: never[]) => unknown> {
  const writeToLog = (fd: number, iovs: number, iovsLen: number, pWritten: number): number => {
    vm.hostWork();
    if (fd !== 1 && fd !== 2) return WasiErrno.Badf;
    if (!vm.mem) return WasiErrno.Fault;
    let total = 0;
    const parts: Uint8Array[] = [];
    for (let i = 0; i < iovsLen; i++) {
      const ptr = vm.mem.readU32(iovs + i * 8);
      const len = vm.mem.readU32(iovs + i * 8 + 4);
      if (ptr === undefined || len === undefined) return WasiErrno.Fault;
      const bytes = vm.mem.readCopy(ptr, len);
      if (bytes === undefined) return WasiErrno.Fault;
      parts.push(bytes);
      total += len;
    }
    if (!vm.mem.writeU32(pWritten, total)) return WasiErrno.Fault;
    const level = fd === 1 ? LogLevel.Info : LogLevel.Error;
    if (vm.logLevelEnabled(level)) {
      // Decoded once, joined: a UTF-8 character may be split across two iovecs.
      const text = Buffer.concat(parts).toString('utf8');
      vm.emitLog(level, text.endsWith('\n') ? text.slice(0, -1) : text);
    }
    return WasiErrno.Success;
  };

  const fns: Record<string, (...args: never[]) => unknown> = {
    fd_write: writeToLog,
    fd_pwrite: (fd: number, iovs: number, iovsLen: number, _offset: bigint, pWritten: number) => writeToLog(fd, iovs, iovsLen, pWritten),
    fd_close: () => WasiErrno.Success,
    fd_seek: () => WasiErrno.Success,
    fd_fdstat_get(fd: number, pStat: number): number {
      if (fd !== 1 && fd !== 2) return WasiErrno.Badf;
      if (!vm.mem.inBounds(pStat, 24)) return WasiErrno.Fault;
      vm.mem.bytes.fill(0, pStat >>> 0, (pStat >>> 0) + 24);
      vm.mem.view.setBigUint64((pStat >>> 0) + 8, FD_WRITE_RIGHT, true);
      return WasiErrno.Success;
    },
    args_sizes_get(pArgc: number, pSize: number): number {
      return vm.mem.writeU32(pArgc, 0) && vm.mem.writeU32(pSize, 0) ? WasiErrno.Success : WasiErrno.Fault;
    },
    args_get: () => WasiErrno.Success,
    environ_sizes_get(pCount: number, pSize: number): number {
      const env = vm.settings.env;
      let size = 0;
      for (const entry of env) size += Buffer.byteLength(entry) + 1;
      return vm.mem.writeU32(pCount, env.length) && vm.mem.writeU32(pSize, size) ? WasiErrno.Success : WasiErrno.Fault;
    },
    environ_get(pArray: number, pBuf: number): number {
      let at = pBuf >>> 0;
      let slot = pArray >>> 0;
      for (const entry of vm.settings.env) {
        const bytes = Buffer.from(entry + '\0');
        if (!vm.mem.writeU32(slot, at) || !vm.mem.write(at, bytes)) return WasiErrno.Fault;
        slot += 4;
        at += bytes.length;
      }
      return WasiErrno.Success;
    },
    clock_res_get(id: number, pRes: number): number {
      if (id !== 0 && id !== 1) return WasiErrno.Notsup;
      return vm.mem.writeU64(pRes, 1n) ? WasiErrno.Success : WasiErrno.Fault;
    },
    clock_time_get(id: number, _precision: bigint, pTime: number): number {
      let now: bigint;
      if (id === 0) now = realtimeNs();
      else if (id === 1) now = process.hrtime.bigint();
      else return WasiErrno.Notsup;
      return vm.mem.writeU64(pTime, now) ? WasiErrno.Success : WasiErrno.Fault;
    },
    random_get(ptr: number, len: number): number {
      vm.hostWork();
      if (len >>> 0 > MAX_RANDOM_BYTES) return WasiErrno.Inval;
      if (!vm.mem.inBounds(ptr, len)) return WasiErrno.Fault;
      randomFillSync(vm.mem.bytes, ptr >>> 0, len >>> 0);
      return WasiErrno.Success;
    },
    proc_exit(code: number): never {
      throw new ProcExit(code);
    },
    sched_yield: () => WasiErrno.Success,
    // The Go runtime aborts when this fails: report no events, successfully.
    poll_oneoff(_in: number, _out: number, _n: number, pEvents: number): number {
      return vm.mem.writeU32(pEvents, 0) ? WasiErrno.Success : WasiErrno.Fault;
    },
  };
  for (const name of UNAVAILABLE) {
    const errno = errnoFor(name);
    fns[name] = () => errno;
  }
  return fns;
}
