// Bounded, reproducible fuzzing: a seeded generator (mulberry32), a loop bounded in cases and in
// time, and failures that print the seed and the case to run again. Every case draws from its own
// generator (the seed mixed with the case number), so WASMESH_FUZZ_CASE=N replays one case alone;
// the whole run replays with WASMESH_FUZZ_SEED.

export interface Random {
  /** [0, 1) */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

export function random(seed: number): Random {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)]!,
    chance: (p) => next() < p,
  };
}

export interface FuzzOptions {
  /** Seed used unless WASMESH_FUZZ_SEED is set. */
  seed: number;
  cases: number;
  /** Stop starting new cases after this long (the machine may be slow); at least `minCases` run. */
  budgetMs: number;
  minCases: number;
}

export interface FuzzRun {
  seed: number;
  ran: number;
}

/** Runs `body` for each case; a failure is rethrown naming the seed, the case and what it tried. */
export async function fuzz(name: string, opts: FuzzOptions, body: (r: Random, index: number, note: (what: string) => void) => Promise<void> | void): Promise<FuzzRun> {
  const seed = process.env.WASMESH_FUZZ_SEED ? Number(process.env.WASMESH_FUZZ_SEED) : opts.seed;
  const only = process.env.WASMESH_FUZZ_CASE ? Number(process.env.WASMESH_FUZZ_CASE) : undefined;
  const started = Date.now();
  let ran = 0;
  for (let i = only ?? 0; i < (only === undefined ? opts.cases : only + 1); i++) {
    if (only === undefined && ran >= opts.minCases && Date.now() - started > opts.budgetMs) break;
    let what = '';
    try {
      await body(random(mix(seed, i)), i, (w) => (what = w));
    } catch (err) {
      // A failed assertion says what it checked; anything else is a throw worth its stack.
      const reason = err instanceof Error ? (err.name === 'Assertion' ? err.message : (err.stack ?? err.message)) : String(err);
      throw new Error(
        `fuzz ${name}: case ${i} failed (seed ${seed}): ${reason}\n  input: ${clip(what)}\n  replay the run: WASMESH_FUZZ_SEED=${seed}; this case alone: WASMESH_FUZZ_SEED=${seed} WASMESH_FUZZ_CASE=${i}`,
        { cause: err },
      );
    }
    ran++;
  }
  return { seed, ran };
}

function mix(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

export function clip(text: string, max = 400): string {
  text = String(text);
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}
