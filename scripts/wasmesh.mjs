#!/usr/bin/env node
// wasmesh CLI entry point: runs the TypeScript sources through tsx (scripts/cli/main.ts).
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

// This repository's tsconfig whatever the working directory: a filter folder's own tsconfig.json
// (written for editors by `wasmesh filter new`) must not change how the CLI loads.
register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
const { main } = await import('./cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
