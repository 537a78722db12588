// The one place host functions are registered: every import a module may link against.
import type { Vm } from '../vm.ts';
import { envExtraImports } from './env-extras.ts';
import { proxyBufferImports } from './proxy-buffers.ts';
import { proxyCalloutImports } from './proxy-callouts.ts';
import { proxyGeneralImports } from './proxy-general.ts';
import { proxyMapImports } from './proxy-maps.ts';
import { proxyMetricImports } from './proxy-metrics.ts';
import { proxySharedImports } from './proxy-shared.ts';
import { proxyStreamImports } from './proxy-stream.ts';
import { wasiImports } from './wasi.ts';

export const WASI_MODULES = ['wasi_snapshot_preview1', 'wasi_unstable'] as const;

export function buildImports(vm: Vm): WebAssembly.Imports {
  const env = {
    ...proxyGeneralImports(vm),
    ...proxyMapImports(vm),
    ...proxyBufferImports(vm),
    ...proxyStreamImports(vm),
    ...proxyCalloutImports(vm),
    ...proxySharedImports(vm),
    ...proxyMetricImports(vm),
    ...envExtraImports(vm),
  };
  const wasi = wasiImports(vm);
  return { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
}

let provided: Set<string> | undefined;

/** "module.name" of every function import the host provides; used to validate modules before linking. */
export function providedImports(): ReadonlySet<string> {
  if (!provided) {
    // The factories only capture the VM; nothing runs until a module calls them.
    const imports = buildImports({ compiled: { abiVersion: '0.2.1' } } as unknown as Vm);
    provided = new Set();
    for (const [mod, fns] of Object.entries(imports)) for (const name of Object.keys(fns)) provided.add(`${mod}.${name}`);
  }
  return provided;
}
