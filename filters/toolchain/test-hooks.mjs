// Preloaded (node --import) by `wasmesh filter test`: TypeScript through tsx, and the bare imports a
// filter's tests make (wasmesh/wasm, uvu, uvu/assert, ...) resolved from this wasmesh installation
// when the filter's folder does not provide them itself. That is what lets a filter folder created
// anywhere (outside this repository, moved, copied) run its tests without an npm install of its own.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

// The folder's tsconfig.json is for editors (its paths name type declarations): tsx must not apply it.
registerTsx({ tsconfig: false });
// Registered after tsx, so it runs first and hands tsx the retried resolution too.
register('./test-resolve.mjs', import.meta.url, { data: { parentURL: new URL('../../package.json', import.meta.url).href } });
