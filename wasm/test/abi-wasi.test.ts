// Conformance of the WASI preview1 imports (under wasi_snapshot_preview1 and wasi_unstable) and of
// AssemblyScript's env.abort: stdout/stderr to the log, fdstat, args, environment, clocks, random,
// proc_exit, poll_oneoff and the functions that only answer with an error code.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LogLevel, WasiErrno } from '../src/abi/constants.ts';
import { ErrorCode, WasmeshWasmError } from '../src/errors.ts';
import { Plugin } from '../src/plugin.ts';
import { Data, MEM_END, OUT_FILL, RecordingSink, c, c64, guestMemory, loadProbe, out, probeModule, rec } from './support/guest.ts';
import { wat2wasm } from './support/wat.ts';

const W = 'wasi_snapshot_preview1';

/** Every preview1 function with its parameter types (all return i32 except proc_exit). */
const PREVIEW1: Record<string, string> = {
  args_get: 'i32 i32', args_sizes_get: 'i32 i32', environ_get: 'i32 i32', environ_sizes_get: 'i32 i32',
  clock_res_get: 'i32 i32', clock_time_get: 'i32 i64 i32',
  fd_advise: 'i32 i64 i64 i32', fd_allocate: 'i32 i64 i64', fd_close: 'i32', fd_datasync: 'i32', fd_fdstat_get: 'i32 i32',
  fd_fdstat_set_flags: 'i32 i32', fd_fdstat_set_rights: 'i32 i64 i64', fd_filestat_get: 'i32 i32', fd_filestat_set_size: 'i32 i64',
  fd_filestat_set_times: 'i32 i64 i64 i32', fd_pread: 'i32 i32 i32 i64 i32', fd_prestat_get: 'i32 i32', fd_prestat_dir_name: 'i32 i32 i32',
  fd_pwrite: 'i32 i32 i32 i64 i32', fd_read: 'i32 i32 i32 i32', fd_readdir: 'i32 i32 i32 i64 i32', fd_renumber: 'i32 i32',
  fd_seek: 'i32 i64 i32 i32', fd_sync: 'i32', fd_tell: 'i32 i32', fd_write: 'i32 i32 i32 i32',
  path_create_directory: 'i32 i32 i32', path_filestat_get: 'i32 i32 i32 i32 i32', path_filestat_set_times: 'i32 i32 i32 i32 i64 i64 i32',
  path_link: 'i32 i32 i32 i32 i32 i32 i32', path_open: 'i32 i32 i32 i32 i32 i64 i64 i32 i32', path_readlink: 'i32 i32 i32 i32 i32 i32',
  path_remove_directory: 'i32 i32 i32', path_rename: 'i32 i32 i32 i32 i32 i32', path_symlink: 'i32 i32 i32 i32 i32',
  path_unlink_file: 'i32 i32 i32', poll_oneoff: 'i32 i32 i32 i32', proc_exit: 'i32', proc_raise: 'i32', sched_yield: '', random_get: 'i32 i32',
  sock_accept: 'i32 i32 i32', sock_recv: 'i32 i32 i32 i32 i32 i32', sock_send: 'i32 i32 i32 i32 i32', sock_shutdown: 'i32 i32',
};

/** `(import "<module>" "<name>" (func $<prefix><name> ...))` */
function wasiImports(names: string[], module = W, prefix = ''): string {
  return names
    .map((n) => {
      const params = PREVIEW1[n]!;
      const result = n === 'proc_exit' ? '' : ' (result i32)';
      return `(import "${module}" "${n}" (func $${prefix}${n}${params ? ` (param ${params})` : ''}${result}))`;
    })
    .join('\n  ');
}

/** iovec array bytes: {u32 buf, u32 len} per entry. */
function iovecs(...entries: Array<{ ptr: number; len: number }>): Buffer {
  const b = Buffer.alloc(8 * entries.length);
  entries.forEach((e, i) => {
    b.writeUInt32LE(e.ptr >>> 0, 8 * i);
    b.writeUInt32LE(e.len >>> 0, 8 * i + 4);
  });
  return b;
}

function onConfigure(imports: string, d: Data, code: string, extra = ''): string {
  return probeModule({ imports, data: d, body: `(func (export "proxy_on_configure") (param i32 i32) (result i32)\n${code}\n(i32.const 1))\n${extra}` });
}

const fdWrite = (slot: number, fd: number, iovs: { ptr: number; len: number }, o: number) =>
  rec(slot, `(call $fd_write ${c(fd)} ${c(iovs.ptr)} ${c(iovs.len / 8)} ${c(out(o))})`);

// ---- fd_write -----------------------------------------------------------------------------------------

test('fd_write: fd 1 logs at info, fd 2 at error, iovecs joined, one trailing newline stripped, nwritten = bytes', async () => {
  const d = new Data();
  const hello = d.add('hello ');
  const world = d.add('world\n');
  const twoNewlines = d.add('line\n\n');
  const noNewline = d.add('no newline');
  const oops = d.add('oops\n');
  const code = [
    fdWrite(0, 1, d.add(iovecs(hello, world)), 0),
    fdWrite(1, 2, d.add(iovecs(oops)), 1),
    fdWrite(2, 1, d.add(iovecs(twoNewlines)), 2),
    fdWrite(3, 1, d.add(iovecs(noNewline, { ptr: 0, len: 0 })), 3),
    fdWrite(4, 1, { ptr: 0, len: 0 }, 4),
  ].join('\n');
  const { plugin, logs } = await loadProbe(onConfigure(wasiImports(['fd_write']), d, code), { name: 'stdio' });
  const m = guestMemory(plugin);
  assert.equal([0, 1, 2, 3, 4].map((i) => m.result(i)), [0, 0, 0, 0, 0]);
  assert.equal([0, 1, 2, 3, 4].map((o) => m.outU32(o)), [12, 5, 6, 10, 0]);
  assert.equal(logs.slice(0, 4), [
    { level: LogLevel.Info, message: 'hello world', plugin: 'stdio' },
    { level: LogLevel.Error, message: 'oops', plugin: 'stdio' },
    { level: LogLevel.Info, message: 'line\n', plugin: 'stdio' },
    { level: LogLevel.Info, message: 'no newline', plugin: 'stdio' },
  ]);
  await plugin.stop();
});

test('fd_write: a UTF-8 character split across two iovecs is logged whole', async () => {
  const d = new Data();
  const bytes = Buffer.from('café ✓\n', 'utf8'); // c a f C3 A9 20 E2 9C 93 0A
  const first = d.add(bytes.subarray(0, 4));
  const second = d.add(bytes.subarray(4, 8));
  const third = d.add(bytes.subarray(8));
  const { plugin, logs } = await loadProbe(onConfigure(wasiImports(['fd_write']), d, fdWrite(0, 1, d.add(iovecs(first, second, third)), 0)));
  const m = guestMemory(plugin);
  assert.is(m.result(0), 0);
  assert.is(m.outU32(0), bytes.length);
  assert.equal(logs.map((l) => l.message), ['café ✓']);
  await plugin.stop();
});

test('fd_write: other fds are BADF (8); bad iovec, buffer or nwritten pointers are FAULT (21); nothing is logged', async () => {
  const d = new Data();
  const msg = d.add('must not appear');
  const good = d.add(iovecs(msg));
  const code = [
    fdWrite(0, 0, good, 0),
    fdWrite(1, 3, good, 1),
    fdWrite(2, 1, { ptr: MEM_END - 4, len: 8 }, 2),
    fdWrite(3, 1, d.add(iovecs({ ptr: MEM_END - 2, len: 4 })), 3),
    fdWrite(4, 2, d.add(iovecs(msg, { ptr: -8, len: 16 })), 4),
    rec(5, `(call $fd_write ${c(1)} ${c(good.ptr)} ${c(1)} ${c(MEM_END - 2)})`),
  ].join('\n');
  const { plugin, logs } = await loadProbe(onConfigure(wasiImports(['fd_write']), d, code));
  const m = guestMemory(plugin);
  assert.equal([0, 1].map((i) => m.result(i)), [WasiErrno.Badf, WasiErrno.Badf]);
  assert.equal([2, 3, 4, 5].map((i) => m.result(i)), [WasiErrno.Fault, WasiErrno.Fault, WasiErrno.Fault, WasiErrno.Fault]);
  assert.equal(logs, []);
  await plugin.stop();
});

test('fd_write below the plugin log level still succeeds and reports the bytes written', async () => {
  const d = new Data();
  const out1 = d.add(iovecs(d.add('to stdout\n')));
  const out2 = d.add(iovecs(d.add('to stderr\n')));
  const { plugin, logs } = await loadProbe(onConfigure(wasiImports(['fd_write']), d, [fdWrite(0, 1, out1, 0), fdWrite(1, 2, out2, 1)].join('\n')), {
    logLevel: 'error',
  });
  const m = guestMemory(plugin);
  assert.equal([m.result(0), m.result(1)], [0, 0]);
  assert.equal([m.outU32(0), m.outU32(1)], [10, 10]);
  assert.equal(logs.map((l) => l.message), ['to stderr']);
  await plugin.stop();
});

// ---- fd_fdstat_get, args, environ ---------------------------------------------------------------------

test('fd_fdstat_get: fds 1 and 2 get a 24-byte fdstat with FD_WRITE rights; other fds are BADF', async () => {
  const code = [1, 2, 0, 3].map((fd, i) => rec(i, `(call $fd_fdstat_get ${c(fd)} ${c(out(4 * i))})`)).join('\n');
  const bad = rec(4, `(call $fd_fdstat_get ${c(1)} ${c(MEM_END - 16)})`);
  const { plugin } = await loadProbe(onConfigure(wasiImports(['fd_fdstat_get']), new Data(), `${code}\n${bad}`));
  const m = guestMemory(plugin);
  assert.equal([0, 1, 2, 3, 4].map((i) => m.result(i)), [0, 0, WasiErrno.Badf, WasiErrno.Badf, WasiErrno.Fault]);
  for (const i of [0, 1]) {
    const stat = m.bytes(out(4 * i), 24);
    assert.is(stat.readBigUInt64LE(8), 64n, 'rights_base = FD_WRITE');
    assert.equal([...stat.subarray(0, 8), ...stat.subarray(16)], new Array(16).fill(0), 'everything else is zero');
    assert.is(m.outU32(4 * i + 3), OUT_FILL, 'no more than 24 bytes');
  }
  assert.is(m.outU32(8), OUT_FILL);
  assert.is(m.outU32(12), OUT_FILL);
  await plugin.stop();
});

test('args_sizes_get reports no arguments; args_get succeeds', async () => {
  const code = [rec(0, `(call $args_sizes_get ${c(out(0))} ${c(out(1))})`), rec(1, `(call $args_get ${c(out(2))} ${c(out(3))})`)].join('\n');
  const { plugin } = await loadProbe(onConfigure(wasiImports(['args_sizes_get', 'args_get']), new Data(), code));
  const m = guestMemory(plugin);
  assert.equal([m.result(0), m.result(1)], [0, 0]);
  assert.equal([m.outU32(0), m.outU32(1)], [0, 0]);
  assert.equal([m.outU32(2), m.outU32(3)], [OUT_FILL, OUT_FILL], 'args_get writes nothing');
  await plugin.stop();
});

test('environ_sizes_get / environ_get expose exactly the plugin env as KEY=VALUE\\0 strings', async () => {
  const BUF = 20000;
  const code = [rec(0, `(call $environ_sizes_get ${c(out(0))} ${c(out(1))})`), rec(1, `(call $environ_get ${c(out(2))} ${c(BUF)})`)].join('\n');
  const wat = onConfigure(wasiImports(['environ_sizes_get', 'environ_get']), new Data(), code);
  const { plugin } = await loadProbe(wat, { env: { A: '1', GREETING: 'héllo' } });
  const m = guestMemory(plugin);
  const expected = Buffer.from('A=1\0GREETING=héllo\0', 'utf8');
  assert.equal([m.result(0), m.result(1)], [0, 0]);
  assert.equal([m.outU32(0), m.outU32(1)], [2, expected.length], 'count, and size in bytes');
  assert.equal([m.outU32(2), m.u32(out(2) + 4)], [BUF, BUF + 4], 'one pointer per entry');
  assert.equal([...m.bytes(BUF, expected.length + 1)], [...expected, 0]);
  await plugin.stop();

  const none = await loadProbe(wat);
  const n = guestMemory(none.plugin);
  assert.equal([n.result(0), n.result(1)], [0, 0]);
  assert.equal([n.outU32(0), n.outU32(1)], [0, 0], 'no env: nothing of the host process leaks in');
  assert.is(n.outU32(2), OUT_FILL);
  await none.plugin.stop();
});

// ---- clocks, random -----------------------------------------------------------------------------------

test('clock_time_get: realtime is wall-clock nanoseconds, monotonic does not go back; other clocks are NOTSUP (58)', async () => {
  const wat = probeModule({
    imports: wasiImports(['clock_time_get', 'clock_res_get']),
    body: `(func (export "proxy_on_foreign_function") (param i32 i32 i32)
      ${rec(0, `(call $clock_time_get ${c(0)} ${c64(1)} ${c(out(0))})`)}
      ${rec(1, `(call $clock_time_get ${c(1)} ${c64(1000)} ${c(out(1))})`)}
      ${rec(2, `(call $clock_time_get ${c(1)} ${c64(0)} ${c(out(2))})`)}
      ${rec(3, `(call $clock_time_get ${c(2)} ${c64(1)} ${c(out(3))})`)}
      ${rec(4, `(call $clock_time_get ${c(3)} ${c64(1)} ${c(out(4))})`)}
      ${rec(5, `(call $clock_time_get ${c(0)} ${c64(1)} ${c(MEM_END - 4)})`)}
      ${rec(6, `(call $clock_res_get ${c(0)} ${c(out(6))})`)}
      ${rec(7, `(call $clock_res_get ${c(1)} ${c(out(7))})`)}
      ${rec(8, `(call $clock_res_get ${c(2)} ${c(out(8))})`)})`,
  });
  const { plugin } = await loadProbe(wat);
  const before = BigInt(Date.now()) * 1_000_000n;
  assert.ok(plugin.callForeignFunction(0, new Uint8Array(0)));
  const after = BigInt(Date.now()) * 1_000_000n;
  const m = guestMemory(plugin);
  assert.equal([0, 1, 2].map((i) => m.result(i)), [0, 0, 0]);
  const real = m.u64(out(0));
  assert.ok(real >= before - 1_000_000n && real <= after + 1_000_000n, `realtime ${real} outside [${before}, ${after}]`);
  const mono1 = m.u64(out(1));
  const mono2 = m.u64(out(2));
  assert.ok(mono2 >= mono1 && mono2 - mono1 < 1_000_000_000n, 'monotonic');
  assert.equal([m.result(3), m.result(4)], [WasiErrno.Notsup, WasiErrno.Notsup], 'process and thread CPU clocks');
  assert.equal([m.outU32(3), m.outU32(4)], [OUT_FILL, OUT_FILL]);
  assert.is(m.result(5), WasiErrno.Fault);
  assert.equal([m.result(6), m.result(7), m.result(8)], [0, 0, WasiErrno.Notsup]);
  assert.equal([m.u64(out(6)), m.u64(out(7))], [1n, 1n], 'resolution 1 ns, as a u64');
  assert.is(m.outU32(8), OUT_FILL);
  await plugin.stop();
});

test('random_get fills the buffer; more than 64 KiB is INVAL (28); a bad range is FAULT (21)', async () => {
  const A = 20000;
  const B = 20100;
  const BIG = 40000;
  const code = [
    rec(0, `(call $random_get ${c(A)} ${c(64)})`),
    rec(1, `(call $random_get ${c(B)} ${c(64)})`),
    rec(2, `(call $random_get ${c(BIG)} ${c(65536)})`),
    rec(3, `(call $random_get ${c(BIG)} ${c(65537)})`),
    rec(4, `(call $random_get ${c(MEM_END - 10)} ${c(20)})`),
    rec(5, `(call $random_get ${c(A + 64)} ${c(0)})`),
  ].join('\n');
  const { plugin } = await loadProbe(onConfigure(wasiImports(['random_get']), new Data(), code));
  const m = guestMemory(plugin);
  assert.equal([0, 1, 2, 3, 4, 5].map((i) => m.result(i)), [0, 0, 0, WasiErrno.Inval, WasiErrno.Fault, 0]);
  const a = m.bytes(A, 64);
  const b = m.bytes(B, 64);
  assert.ok(a.some((x) => x !== 0), 'filled');
  assert.not.equal([...a], [...b], 'two calls differ');
  assert.is(m.bytes(A + 64, 36).every((x) => x === 0), true, 'nothing past the requested length');
  assert.is(m.bytes(BIG, 65536).filter((x) => x === 0).length < 2000, true, '64 KiB filled');
  await plugin.stop();
});

// ---- proc_exit, poll_oneoff -----------------------------------------------------------------------------

test('proc_exit(0) inside _initialize or _start is a normal start; another code fails the load', async () => {
  const wat = (code: number) =>
    probeModule({
      imports: wasiImports(['proc_exit']),
      body: `(func (export "_initialize") ${rec(0, c(1))} (call $proc_exit ${c(code)}) ${rec(1, c(1))})
      (func (export "proxy_on_configure") (param i32 i32) (result i32) ${rec(2, c(1))} (i32.const 1))`,
    });
  const { plugin } = await loadProbe(wat(0));
  const m = guestMemory(plugin);
  assert.is(m.result(0), 1, '_initialize ran');
  assert.is(m.result(1), 0xeeeeeeee, 'nothing after proc_exit ran');
  assert.is(m.result(2), 1, 'the plugin started');
  assert.is(plugin.state, 'running');
  await plugin.stop();

  // TinyGo ends _start with proc_exit(0).
  const tinygo = await loadProbe(
    probeModule({
      imports: wasiImports(['proc_exit']),
      body: `(func (export "_start") ${rec(3, c(1))} (call $proc_exit ${c(0)}))
      (func (export "proxy_on_configure") (param i32 i32) (result i32) ${rec(4, c(1))} (i32.const 1))`,
    }),
  );
  assert.equal([guestMemory(tinygo.plugin).result(3), guestMemory(tinygo.plugin).result(4)], [1, 1], '_start ran, then the plugin started');
  await tinygo.plugin.stop();

  try {
    await Plugin.load(await wat2wasm(wat(3)), { name: 'exits' });
    assert.unreachable('proc_exit(3) during _initialize was accepted');
  } catch (err) {
    assert.instance(err, WasmeshWasmError);
    assert.is((err as WasmeshWasmError).code, ErrorCode.InitFailed);
    assert.match((err as Error).message, 'proc_exit(3)');
  }
});

test('proc_exit(1) in a callback fails the VM', async () => {
  const wat = probeModule({
    imports: wasiImports(['proc_exit'], 'wasi_unstable'),
    body: `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $proc_exit ${c(1)})
      ${rec(0, c(1))}
      (i32.const 0))`,
  });
  const { plugin } = await loadProbe(wat, { failStrategy: 'FAIL_CLOSE' });
  const sink = new RecordingSink();
  const stream = plugin.createHttpStream(sink);
  stream.requestHeaders([':path', '/'], true);
  assert.is(guestMemory(plugin).result(0), 0xeeeeeeee, 'the callback did not go on');
  assert.is(plugin.state, 'failed');
  assert.match(plugin.lastFailure, 'proc_exit(1)');
  assert.is(sink.requestHeadersSeen, undefined, 'nothing forwarded');
  stream.finish();
  await plugin.stop();
});

test('poll_oneoff writes 0 events and returns 0', async () => {
  const code = rec(0, `(call $poll_oneoff ${c(out(0))} ${c(out(4))} ${c(1)} ${c(out(8))})`);
  const { plugin } = await loadProbe(onConfigure(wasiImports(['poll_oneoff']), new Data(), code));
  const m = guestMemory(plugin);
  assert.is(m.result(0), 0);
  assert.is(m.outU32(8), 0);
  await plugin.stop();
});

// ---- the rest of preview1 -------------------------------------------------------------------------------

test('every preview1 function links under both wasi_snapshot_preview1 and wasi_unstable', async () => {
  const names = Object.keys(PREVIEW1);
  assert.is(names.length, 46);
  const imports = `${wasiImports(names, W, 'p1_')}\n  ${wasiImports(names, 'wasi_unstable', 'u_')}`;
  const { plugin } = await loadProbe(onConfigure(imports, new Data(), ''));
  assert.is(plugin.state, 'running');
  await plugin.stop();
});

test('the unsupported preview1 functions answer with their error codes under both module names', async () => {
  const d = new Data();
  const msg = d.add('pwrite line\n');
  const iov = d.add(iovecs(msg));
  const calls: Array<[string, string, number]> = [
    ['fd_read', `${c(0)} ${c(iov.ptr)} ${c(1)} ${c(out(0))}`, WasiErrno.Nosys],
    ['fd_close', c(3), 0],
    ['fd_seek', `${c(1)} ${c64(0)} ${c(0)} ${c(out(1))}`, 0],
    ['fd_fdstat_set_flags', `${c(1)} ${c(0)}`, WasiErrno.Nosys],
    ['fd_prestat_get', `${c(3)} ${c(out(2))}`, WasiErrno.Badf],
    ['fd_prestat_dir_name', `${c(3)} ${c(out(3))} ${c(8)}`, WasiErrno.Nosys],
    ['fd_filestat_get', `${c(1)} ${c(out(4))}`, WasiErrno.Badf],
    ['path_open', `${c(3)} ${c(0)} ${c(msg.ptr)} ${c(4)} ${c(0)} ${c64(0)} ${c64(0)} ${c(0)} ${c(out(5))}`, WasiErrno.Noent],
    ['path_filestat_get', `${c(3)} ${c(0)} ${c(msg.ptr)} ${c(4)} ${c(out(6))}`, WasiErrno.Notsup],
    ['sock_send', `${c(3)} ${c(iov.ptr)} ${c(1)} ${c(0)} ${c(out(7))}`, WasiErrno.Notsup],
    ['sched_yield', '', 0],
    ['fd_pwrite', `${c(1)} ${c(iov.ptr)} ${c(1)} ${c64(0)} ${c(out(8))}`, 0],
  ];
  const names = calls.map(([n]) => n);
  const body = (prefix: string, base: number) => calls.map(([n, args], i) => rec(base + i, `(call $${prefix}${n} ${args})`)).join('\n');
  const imports = `${wasiImports(names, W, 'p1_')}\n  ${wasiImports(names, 'wasi_unstable', 'u_')}`;
  const { plugin, logs } = await loadProbe(onConfigure(imports, d, `${body('p1_', 0)}\n${body('u_', 20)}`));
  const m = guestMemory(plugin);
  calls.forEach(([n, , expected], i) => {
    assert.is(m.result(i), expected, `${W}.${n}`);
    assert.is(m.result(20 + i), expected, `wasi_unstable.${n}`);
  });
  assert.is(m.outU32(0), OUT_FILL, 'fd_read wrote no count');
  assert.equal(logs.map((l) => [l.level, l.message]), [[LogLevel.Info, 'pwrite line'], [LogLevel.Info, 'pwrite line']], 'fd_pwrite to fd 1 logs');
  await plugin.stop();
});

// ---- AssemblyScript env.abort ----------------------------------------------------------------------------

test('env.abort (AssemblyScript) fails the VM with its message, file, line and column in the log', async () => {
  // AssemblyScript strings are UTF-16LE with their byte length stored just before them.
  const asString = (s: string) => {
    const text = Buffer.from(s, 'utf16le');
    const b = Buffer.alloc(4 + text.length);
    b.writeUInt32LE(text.length, 0);
    text.copy(b, 4);
    return b;
  };
  const d = new Data();
  const msg = d.add(asString('index out of range'));
  const file = d.add(asString('assembly/index.ts'));
  const wat = probeModule({
    imports: '(import "env" "abort" (func $abort (param i32 i32 i32 i32)))',
    data: d,
    body: `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $abort ${c(msg.ptr + 4)} ${c(file.ptr + 4)} ${c(42)} ${c(7)})
      ${rec(0, c(1))}
      (i32.const 0))`,
  });
  const { plugin, logs } = await loadProbe(wat, { name: 'as-filter' });
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':path', '/'], true);
  assert.is(guestMemory(plugin).result(0), 0xeeeeeeee, 'abort does not return');
  assert.is(plugin.state, 'failed');
  const line = 'index out of range at assembly/index.ts:42:7';
  assert.ok(
    logs.some((l) => l.level >= LogLevel.Error && l.message.includes(line)),
    `no error log with "${line}": ${JSON.stringify(logs)}`,
  );
  assert.match(plugin.lastFailure, line);
  stream.finish();
  await plugin.stop();
});

test.run();
