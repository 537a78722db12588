// Standalone mode: the proxy's config comes from Istio-style YAML files, validated and translated
// here with the same code the orchestrator runs, and watched so a valid edit applies without a restart.
import { watch, watchFile, unwatchFile, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { readDocumentFiles } from '../../../mesh/src/documents.ts';
import { formatErrors, validateDocuments } from '../../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';

export type LoadResult = { ok: true; config: ProxyConfig; documents: number } | { ok: false; error: string };

/** Reads, validates and translates a config file (or directory); never throws for bad input. */
export async function loadConfigFile(path: string, workload: WorkloadIdentity, options: { telemetry?: boolean; trustDomain?: string } = {}): Promise<LoadResult> {
  const parsed = await readDocumentFiles([path]);
  if (parsed.errors.length > 0) return { ok: false, error: formatErrors(parsed.errors) };
  const validation = validateDocuments(parsed.documents, { mode: 'standalone' });
  if (!validation.ok) return { ok: false, error: formatErrors(validation.errors) };
  try {
    // Each document's source is its file path as given, relative to the working directory: relative
    // file:// module urls resolve against that file's folder.
    const config = translateProxyConfig(parsed.documents, workload, { baseDir: process.cwd(), hostEnv: process.env, telemetry: options.telemetry, ...(options.trustDomain ? { trustDomain: options.trustDomain } : {}) });
    return { ok: true, config, documents: parsed.documents.length };
  } catch (err) {
    return { ok: false, error: `${path}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/**
 * Calls `onChange` (debounced) when the file changes. Watches the directory, because editors save by
 * writing a new file and renaming it over the old one; polls as well, for filesystems without events.
 */
export function watchConfigFile(path: string, onChange: () => void, debounceMs = 100): () => void {
  const full = resolve(path);
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(full), (_event, name) => {
      if (name === null || name === basename(full)) fire();
    });
    watcher.on('error', () => {});
  } catch {
    watcher = undefined;
  }
  watchFile(full, { interval: 1000 }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) fire();
  });
  return () => {
    if (timer) clearTimeout(timer);
    watcher?.close();
    unwatchFile(full);
  };
}
