#!/usr/bin/env node
// wasmesh CLI entry point: runs the TypeScript sources through tsx (scripts/cli/main.ts).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
