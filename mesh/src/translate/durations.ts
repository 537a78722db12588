// Durations as Istio users write them ("1.5s", "100ms", "2m", "1h"), converted to milliseconds.

/** Same as the Duration pattern in schemas/json/*.schema.json. */
export const DURATION_PATTERN = /^([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)$/;

/**
 * Largest duration we accept: 2^31-1 ms (about 24.8 days). Node's timers treat anything longer as
 * 1 ms, so a longer timeout would fire immediately instead of never.
 */
export const MAX_DURATION_MS = 2_147_483_647;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

export class DurationError extends Error {
  readonly code = 'WASMESH_ORCH_BAD_DURATION';
}

/** Milliseconds in `text`; throws DurationError with a message fit for users. */
export function parseDuration(text: string): number {
  const m = DURATION_PATTERN.exec(text);
  if (!m) {
    throw new DurationError(`invalid duration "${text}": use a number and a unit (h, m, s or ms), like 1.5s or 100ms`);
  }
  const [, amount, unit] = m as unknown as [string, string, keyof typeof UNIT_MS];
  // Exact decimal arithmetic in BigInt: "0.1s" is 100 ms, and "1.0000001s" is refused, not rounded.
  const [whole, fraction = ''] = amount.split('.') as [string, string?];
  const scale = BigInt(UNIT_MS[unit]);
  const numerator = BigInt(fraction === '' ? '0' : fraction) * scale;
  const denominator = 10n ** BigInt(fraction.length);
  if (numerator % denominator !== 0n) {
    throw new DurationError(`duration "${text}" is finer than a millisecond: durations have millisecond precision`);
  }
  const total = BigInt(whole) * scale + numerator / denominator;
  if (total > BigInt(MAX_DURATION_MS)) {
    throw new DurationError(`duration "${text}" is too long: the maximum is ${MAX_DURATION_MS}ms (about 24.8 days)`);
  }
  return Number(total);
}

/** parseDuration for an optional field. */
export function durationMs(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text);
}
