// Standalone mode: the proxy's config comes from Istio-style YAML files, validated and translated
// here with the same code the orchestrator runs, and watched so a valid edit applies without a restart.
import { readDocumentFiles } from '../../../mesh/src/documents.ts';
import { formatErrors, validateDocuments } from '../../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';

// The watch lives in its own module; the CLI imports it from here.
export { watchConfigFile } from './config-watcher.ts';

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
