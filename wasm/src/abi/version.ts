import { ABI_MARKERS, type AbiVersion } from './constants.ts';

/** The ABI a module speaks: the first marker export in export order wins (as cpp-host decides). */
export function detectAbiVersion(exports: readonly WebAssembly.ModuleExportDescriptor[]): AbiVersion | undefined {
  for (const e of exports) {
    const version = ABI_MARKERS[e.name];
    if (version && e.kind === 'function') return version;
  }
  return undefined;
}
