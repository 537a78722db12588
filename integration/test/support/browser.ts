// The console's browser tests: Debian's chromium (scripts/chromium.sh finds it, or installs it like
// etcd), driven by puppeteer-core, and signing in to the console with a token.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SCRIPT = path.join(repoRoot, 'scripts/chromium.sh');

/** The chromium binary, installing it when it can; else why not. */
export function chromium(): { bin?: string; reason?: string } {
  const find = () => {
    const r = spawnSync('bash', [SCRIPT, 'path'], { encoding: 'utf8' });
    const bin = r.status === 0 ? r.stdout.trim() : '';
    return bin && existsSync(bin) ? bin : undefined;
  };
  let bin = find();
  if (bin) return { bin };
  const install = spawnSync('bash', [SCRIPT, 'install'], { encoding: 'utf8', timeout: 600_000 });
  bin = find();
  if (bin) return { bin };
  return { reason: (install.stderr || install.stdout || 'no output').trim().split('\n').slice(-3).join(' / ') };
}

/** Says loudly that a browser test did not run. */
export function skipLoudly(what: string, reason: string | undefined): void {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\nSKIPPED: ${what}: no chromium and it could not be installed: ${reason}\n${line}\n`);
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run'];

export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
  await page.type('#token', token);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])', { timeout: 10_000 });
}
