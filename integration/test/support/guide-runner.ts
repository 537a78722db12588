// Runs a Markdown guide's shell blocks as a reader would in a terminal: every ```sh block, in order,
// in one bash process (so `cd`, `export`, aliases and background jobs carry over), and checks what
// the commands print. Used by integration/test/authoring-guide.test.ts (the whole guide) and
// integration/bench/author.bench.ts (its quick start, timed).
//
// Conventions of the guide:
// - ```sh blocks run; other blocks (```shell, ```ts, ...) are shown only.
// - A line ending in `\` continues on the next one.
// - `# => text` at the end of a command: its output must contain `text` (whitespace collapsed, colors
//   stripped). The command is run again until it does, for up to `expectTimeoutMs`: a reader waits for
//   a sidecar to start or a config to apply the same way. Without `# =>`, a command must exit 0.
// - The first comment line of a block names it (the bench's step names).
//
// What the runner changes: port numbers (the guide's fixed ones, mapped to free ones everywhere in the
// text it runs), nothing else. It starts in `cwd`; whatever the guide starts in the background is
// killed with the shell's process group at close().
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../../scripts/cli/run.ts';

/** docs/authoring.md (relative to the repository), its fixed ports, and the comment that ends its quick start. */
export const AUTHORING_GUIDE = 'docs/authoring.md';
export const GUIDE_PORTS: readonly number[] = [8080, 15000, 15001, 15006, 15010, 15014];
export const QUICK_START_END = '<!-- end of quick start -->';

export interface GuideCommand {
  /** The command as bash runs it (continuations joined), ports mapped. */
  command: string;
  /** Expected output (a substring), ports mapped. */
  expect?: string;
  /** 1-based line of the guide where it starts. */
  line: number;
}

export interface GuideBlock {
  /** The block's first comment (without `#`), or the nearest heading above it. */
  label: string;
  /** 1-based line of the opening fence. */
  line: number;
  commands: GuideCommand[];
  /** Whether the block is above `stopMarker` (when given to parseGuide). */
  beforeMarker: boolean;
}

export interface ParsedGuide {
  blocks: GuideBlock[];
  /** Blocks that are shown but not run: [info string, their lines]. */
  shownOnly: Array<{ info: string; line: number; text: string }>;
}

/** Splits the guide into its sh blocks and commands. `marker`: an HTML comment line that ends a part (e.g. the quick start). */
export function parseGuide(markdown: string, marker?: string): ParsedGuide {
  const lines = markdown.split('\n');
  const blocks: GuideBlock[] = [];
  const shownOnly: ParsedGuide['shownOnly'] = [];
  let heading = '';
  let beforeMarker = true;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (marker !== undefined && line.trim() === marker) beforeMarker = false;
    if (/^#{1,6}\s/.test(line)) heading = line.replace(/^#+\s*/, '');
    const fence = /^```(\S*)\s*$/.exec(line);
    if (!fence) continue;
    const info = fence[1];
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    if (info !== 'sh') {
      shownOnly.push({ info, line: start + 1, text: body.join('\n') });
      continue;
    }
    const commands: GuideCommand[] = [];
    let label = '';
    for (let j = 0; j < body.length; j++) {
      let text = body[j];
      const at = start + 2 + j;
      if (/^\s*#/.test(text)) {
        if (label === '' && commands.length === 0) label = text.replace(/^\s*#\s*/, '');
        continue;
      }
      if (text.trim() === '') continue;
      while (/\\\s*$/.test(text) && j + 1 < body.length) text = `${text.replace(/\s*\\\s*$/, '')} ${body[++j].trim()}`;
      const m = /^(.*?)\s+#\s*=>\s*(.+)$/.exec(text);
      commands.push(m ? { command: m[1].trim(), expect: m[2].trim(), line: at } : { command: stripComment(text), line: at });
    }
    blocks.push({ label: label || heading, line: start + 1, commands, beforeMarker });
  }
  return { blocks, shownOnly };
}

/** A trailing `# comment` (outside quotes) is only for the reader. */
function stripComment(text: string): string {
  let quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === '#' && /\s/.test(text[i - 1] ?? ' ')) {
      return text.slice(0, i).trim();
    }
  }
  return text.trim();
}

/** Replaces whole-number ports in `text` by their mapped values. */
export function mapPorts(text: string, ports: ReadonlyMap<number, number>): string {
  return text.replace(/\b\d{4,5}\b/g, (n) => String(ports.get(Number(n)) ?? n));
}

/** What a reader compares: no colors, whitespace runs as one space. */
export function normalizeOutput(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();
}

export interface CommandResult {
  output: string;
  exitCode: number;
  /** Wall time from the first attempt to the one that passed. */
  ms: number;
  attempts: number;
}

export class GuideFailure extends Error {}

/** One bash process running a guide's commands. */
export class GuideShell {
  readonly #bash: ChildProcess;
  #buffer = '';
  #waiting: { token: string; resolve: (r: { output: string; exitCode: number }) => void } | undefined;
  #next = 0;
  #exited = false;
  readonly transcript: string[] = [];

  private constructor(bash: ChildProcess) {
    this.#bash = bash;
    const take = (d: Buffer) => {
      this.#buffer += d.toString();
      this.#check();
    };
    bash.stdout!.on('data', take);
    bash.stderr!.on('data', take);
    bash.once('exit', () => {
      this.#exited = true;
      this.#waiting?.resolve({ output: this.#buffer, exitCode: -1 });
    });
  }

  /** A shell in `cwd` with `env` (its own process group, so close() stops what the guide left running). */
  static start(cwd: string, env: NodeJS.ProcessEnv): GuideShell {
    const bash = spawn('bash', ['--noprofile', '--norc'], { cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const shell = new GuideShell(bash);
    // Aliases work as in an interactive shell (the guide defines one).
    bash.stdin!.write('shopt -s expand_aliases\n');
    return shell;
  }

  #check(): void {
    const w = this.#waiting;
    if (!w) return;
    const at = this.#buffer.indexOf(w.token);
    if (at < 0) return;
    const rest = this.#buffer.slice(at + w.token.length);
    const m = /^(\d+)__\n/.exec(rest);
    if (!m) return;
    const output = this.#buffer.slice(0, at);
    this.#buffer = rest.slice(m[0].length);
    this.#waiting = undefined;
    w.resolve({ output, exitCode: Number(m[1]) });
  }

  /** Runs one command once; resolves with its output and exit status (-1: the shell died or the time ran out). */
  #once(command: string, timeoutMs: number): Promise<{ output: string; exitCode: number }> {
    if (this.#exited) return Promise.resolve({ output: 'the shell has exited', exitCode: -1 });
    const token = `__GUIDE_DONE_${this.#next++}_`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting = undefined;
        resolve({ output: `${this.#buffer}\n(no end after ${timeoutMs} ms)`, exitCode: -1 });
      }, timeoutMs);
      this.#waiting = {
        token,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      // A group, so a failing command cannot stop the shell, and its stderr lands with its stdout.
      this.#bash.stdin!.write(`{ ${command}\n} 2>&1; echo "${token}$?__"\n`);
    });
  }

  /** Runs a command as the guide says (retrying an expectation); throws GuideFailure naming the line. */
  async run(cmd: GuideCommand, opts: { commandTimeoutMs?: number; expectTimeoutMs?: number } = {}): Promise<CommandResult> {
    const commandTimeoutMs = opts.commandTimeoutMs ?? 120_000;
    const deadline = Date.now() + (opts.expectTimeoutMs ?? 60_000);
    const started = performance.now();
    for (let attempts = 1; ; attempts++) {
      const r = await this.#once(cmd.command, commandTimeoutMs);
      this.transcript.push(`$ ${cmd.command}\n${r.output}`);
      const ms = performance.now() - started;
      if (r.exitCode === -1) throw new GuideFailure(`line ${cmd.line}: \`${cmd.command}\` did not finish:\n${r.output}`);
      if (cmd.expect === undefined) {
        if (r.exitCode !== 0) throw new GuideFailure(`line ${cmd.line}: \`${cmd.command}\` exited with ${r.exitCode}:\n${r.output}`);
        return { ...r, ms, attempts };
      }
      if (normalizeOutput(r.output).includes(normalizeOutput(cmd.expect))) return { ...r, ms, attempts };
      if (Date.now() > deadline) {
        throw new GuideFailure(`line ${cmd.line}: \`${cmd.command}\` never printed "${cmd.expect}" (${attempts} tries); last output:\n${r.output}`);
      }
      await new Promise((res) => setTimeout(res, 500));
    }
  }

  /** Stops the shell and everything it started (SIGTERM to the group, SIGKILL after `graceMs`). */
  async close(graceMs = 10_000): Promise<void> {
    const pid = this.#bash.pid;
    if (pid === undefined) return;
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        // the group is gone
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + graceMs;
    const groupAlive = () => {
      try {
        process.kill(-pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    while (groupAlive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (groupAlive()) signal('SIGKILL');
  }
}

export interface GuideRunOptions {
  /** The guide's fixed ports, each mapped to a free one. */
  ports: readonly number[];
  /** Made the working folder's `wasmesh` link (the reader's clone). */
  repoRoot: string;
  /** Called after each command with how long it took. */
  onCommand?: (block: GuideBlock, cmd: GuideCommand, result: CommandResult) => void;
}

/**
 * Runs `blocks` from a fresh folder holding only `wasmesh` (a link to the repository), with free ports
 * and without the caller's WASMESH_TOKEN / WASMESH_SERVER; stops everything and removes the folder after.
 */
export async function runGuideBlocks(blocks: GuideBlock[], opts: GuideRunOptions): Promise<void> {
  const ports = new Map<number, number>();
  for (const p of opts.ports) ports.set(p, await freePort());
  const work = await mkdtemp(path.join(os.tmpdir(), 'wasmesh-guide-'));
  await symlink(opts.repoRoot, path.join(work, 'wasmesh'));
  const env = { ...process.env };
  delete env.WASMESH_TOKEN;
  delete env.WASMESH_SERVER;
  const shell = GuideShell.start(work, env);
  try {
    for (const block of blocks) {
      for (const cmd of block.commands) {
        const mapped = { ...cmd, command: mapPorts(cmd.command, ports), expect: cmd.expect && mapPorts(cmd.expect, ports) };
        opts.onCommand?.(block, cmd, await shell.run(mapped));
      }
    }
  } catch (err) {
    if (err instanceof GuideFailure) err.message += `\n\nthe shell so far:\n${shell.transcript.slice(-8).join('\n')}`;
    throw err;
  } finally {
    await shell.close();
    await rm(work, { recursive: true, force: true });
  }
}
