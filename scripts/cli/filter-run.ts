// wasmesh filter run: one request (and its response) through a filter, no proxy needed. Prints JSON.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { FilterHarness, WasmeshWasmError, type CalloutAnswer, type FailStrategy, type HarnessOptions } from '../../wasm/src/index.ts';
import type { MessageInput } from '../../wasm/src/harness.ts';
import { helpFor } from '../../orchestrator/src/cli-client/help-text.ts';

export const usage = `usage: wasmesh filter run <module.wasm> --request <request.json> [options]

Runs one request, and its response if given, through the filter and prints as JSON what the upstream
and the client would see, the module's logs and metrics, and the HTTP callouts it made.

  --config <json|@file>          pluginConfig passed to on_configure (default: none)
  --request <file>               {"headers": {...}, "body": "...", "trailers": {...}}
  --response <file>              the upstream's answer, same shape
  --callout-responses <file>     {"<cluster>": {"status": 200, "headers": {...}, "body": "..."} | {"fail": true}}
  --root-id <id>                 root id the module registers (default "")
  --vm-config <json|@file>       VM configuration passed to on_vm_start
  --fail-strategy <s>            FAIL_CLOSE (default), FAIL_OPEN or FAIL_RELOAD
  --log-level <level>            trace, debug, info (default), warn, error, critical
  --timeout <ms>                 how long to wait for a paused stream (default 5000)
`;

class UsageError extends Error {}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A --config value: inline JSON, @file, or (if it is not JSON) the raw string. */
async function readConfigArg(value: string | undefined, what: string): Promise<string | undefined> {
  if (value === undefined) return undefined;
  if (value.startsWith('@')) {
    const path = value.slice(1);
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return value;
}

function checkMessage(value: unknown, what: string, path: string): MessageInput {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`${what} file ${path}: must be a JSON object with "headers"`);
  const m = value as Record<string, unknown>;
  for (const key of Object.keys(m)) {
    if (!['headers', 'body', 'trailers'].includes(key)) throw new UsageError(`${what} file ${path}: unknown field "${key}" (expected headers, body, trailers)`);
  }
  const checkHeaders = (h: unknown, field: string) => {
    if (typeof h !== 'object' || h === null || Array.isArray(h)) throw new UsageError(`${what} file ${path}: "${field}" must be an object of header name to string (or array of strings)`);
    for (const [k, v] of Object.entries(h)) {
      const ok = typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
      if (!ok) throw new UsageError(`${what} file ${path}: "${field}.${k}" must be a string or an array of strings`);
    }
  };
  checkHeaders(m.headers, 'headers');
  if (m.trailers !== undefined) checkHeaders(m.trailers, 'trailers');
  if (m.body !== undefined && typeof m.body !== 'string') throw new UsageError(`${what} file ${path}: "body" must be a string`);
  return m as unknown as MessageInput;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        request: { type: 'string' },
        response: { type: 'string' },
        'callout-responses': { type: 'string' },
        'root-id': { type: 'string' },
        'vm-config': { type: 'string' },
        'fail-strategy': { type: 'string' },
        'log-level': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`wasmesh filter run: ${(err as Error).message}\n\n${helpFor(usage, process.stderr)}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(helpFor(usage));
    return 0;
  }
  try {
    if (positionals.length !== 1) throw new UsageError('expected exactly one module path');
    if (!values.request) throw new UsageError('--request <file> is required');
    const modulePath = positionals[0];
    const request = checkMessage(await readJsonFile(values.request, '--request'), '--request', values.request);
    const response = values.response ? checkMessage(await readJsonFile(values.response, '--response'), '--response', values.response) : undefined;
    const calloutResponses = values['callout-responses'] ? ((await readJsonFile(values['callout-responses'], '--callout-responses')) as Record<string, CalloutAnswer>) : undefined;
    const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout);
    if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new UsageError(`--timeout must be a positive number of milliseconds, got ${values.timeout}`);
    let bytes: Buffer;
    try {
      bytes = await readFile(modulePath);
    } catch (err) {
      throw new UsageError(`cannot read module ${modulePath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const options: HarnessOptions = {
      name: modulePath.replace(/^.*\//, '').replace(/\.wasm$/, ''),
      configuration: await readConfigArg(values.config, '--config'),
      vmConfiguration: await readConfigArg(values['vm-config'], '--vm-config'),
      rootId: values['root-id'],
      failStrategy: values['fail-strategy'] as FailStrategy | undefined,
      logLevel: values['log-level'] as HarnessOptions['logLevel'],
      calloutResponses,
      timeoutMs,
    };
    const harness = await FilterHarness.load(bytes, options);
    try {
      const startupLogs = harness.logs.slice();
      const result = await harness.run({ request, response });
      const out = {
        module: { path: modulePath, sha256: harness.plugin.compiled.sha256, abi: harness.plugin.compiled.abiVersion },
        ...result,
        logs: [...startupLogs, ...result.logs],
        metrics: harness.metricsSnapshot(),
      };
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } finally {
      await harness.close();
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`wasmesh filter run: ${err.message}\n`);
      return 2;
    }
    if (err instanceof WasmeshWasmError) {
      process.stderr.write(`wasmesh filter run: ${err.message} [${err.code}]\n`);
      return 1;
    }
    throw err;
  }
}
