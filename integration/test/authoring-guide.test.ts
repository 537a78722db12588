// docs/authoring.md, run as a newcomer would: every ```sh block in order, in one bash shell, from a
// folder beside a `wasmesh` link to this repository, with each `# =>` checked (guide-runner.ts). It
// creates a filter outside the repository, builds and tests it, starts an orchestrator and a workload
// under a managed sidecar, deploys the filter, sees 401 / 200 and the metric, rolls a new version out
// and back, and runs the dev loop. Only the port numbers differ from the guide (free ones).
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AUTHORING_GUIDE, GUIDE_PORTS, GuideFailure, GuideShell, QUICK_START_END, parseGuide, runGuideBlocks } from './support/guide-runner.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const GUIDE = path.join(repoRoot, AUTHORING_GUIDE);
/** The only commands of blocks that are shown but not run: the setup the test environment has done. */
const SETUP_ONLY = [/^git clone .+ wasmesh$/, /^cd wasmesh && npm install$/];

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.WASMESH_TOKEN;
  delete env.WASMESH_SERVER;
  return env;
}

test('the guide parses into blocks of commands; the quick start comes first', async () => {
  const guide = parseGuide(await readFile(GUIDE, 'utf8'), QUICK_START_END);
  const quick = guide.blocks.filter((b) => b.beforeMarker);
  assert.ok(quick.length >= 5, `quick start blocks: ${quick.length}`);
  assert.ok(quick.some((b) => b.commands.some((c) => c.command.startsWith('wasmesh filter new'))));
  assert.ok(quick.some((b) => b.commands.some((c) => c.command.startsWith('wasmesh filter deploy'))));
  assert.ok(guide.blocks.some((b) => !b.beforeMarker && b.commands.some((c) => c.command.startsWith('wasmesh filter dev'))));
  for (const shown of guide.shownOnly.filter((b) => b.info === 'shell')) {
    for (const line of shown.text.split('\n').filter((l) => l.trim() !== '')) {
      assert.ok(SETUP_ONLY.some((re) => re.test(line)), `line ${shown.line}: "${line}" is shown but never run; put it in a sh block`);
    }
  }
});

test('the runner fails a guide whose command prints something else, naming the line', async () => {
  const guide = parseGuide('# t\n\n```sh\n# one\necho hello \\\n  world     # => hello world\necho nope   # => yes\n```\n');
  assert.equal(guide.blocks[0].commands.map((c) => [c.command, c.expect, c.line]), [['echo hello world', 'hello world', 5], ['echo nope', 'yes', 7]]);
  assert.is(guide.blocks[0].label, 'one');
  const shell = GuideShell.start(os.tmpdir(), cleanEnv());
  try {
    assert.is((await shell.run(guide.blocks[0].commands[0])).attempts, 1);
    let failure: unknown;
    await shell.run(guide.blocks[0].commands[1], { expectTimeoutMs: 600 }).catch((e: unknown) => (failure = e));
    assert.instance(failure, GuideFailure);
    assert.match((failure as Error).message, /line 7: `echo nope` never printed "yes"/);
    await shell.run({ command: 'false', line: 9 }).then(
      () => assert.unreachable('false passed'),
      (e: Error) => assert.match(e.message, /line 9: `false` exited with 1/),
    );
  } finally {
    await shell.close();
  }
});

test('docs/authoring.md: every sh block runs as written and prints what it says', async () => {
  const guide = parseGuide(await readFile(GUIDE, 'utf8'));
  await runGuideBlocks(guide.blocks, { ports: GUIDE_PORTS, repoRoot, onCommand: (b, c, r) => process.env.WASMESH_TEST_VERBOSE && process.stderr.write(`${(r.ms / 1000).toFixed(1)}s ${c.command}\n`) });
});

test('the README sends a newcomer to the guide before anything else about filters', async () => {
  const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');
  const link = readme.indexOf('docs/authoring.md');
  assert.ok(link > 0 && link < readme.indexOf('## Five-minute tour'), 'linked in the README’s opening');
});

test.run();
