// bench/RESULTS.md holds one section per benchmark (`## <title>`): each benchmark replaces its own
// section and keeps every other one, so running one benchmark never erases another's figures.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_FILE = fileURLToPath(new URL('../bench/RESULTS.md', import.meta.url));
const PREAMBLE = `# Benchmarks

Each section was written by the command in its title, with the machine and the date it ran on.
The machine is shared and noisy: read ratios against the references measured in the same run.
`;

/**
 * Replaces the section whose heading is the first line of `section` (e.g. "## Proxy (npm run
 * bench:proxy)"), or appends it.
 */
export async function writeResultsSection(section: string, file = RESULTS_FILE): Promise<void> {
  const heading = section.trimStart().split('\n', 1)[0]!;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    text = PREAMBLE;
  }
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading.trim());
  let out: string;
  if (start < 0) {
    out = `${text.trimEnd()}\n\n${section.trim()}\n`;
  } else {
    let end = lines.findIndex((l, i) => i > start && /^##?\s/.test(l));
    if (end < 0) end = lines.length;
    const before = lines.slice(0, start).join('\n').trimEnd();
    const after = lines.slice(end).join('\n').trim();
    out = `${before}\n\n${section.trim()}\n${after ? `\n${after}\n` : ''}`;
  }
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, out);
}
