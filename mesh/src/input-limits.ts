// Limits on config text from outside: files given to `wasmesh validate`, `apply` and `proxy
// --config`, and the orchestrator's request bodies. Text past a limit is refused with an error
// naming the document and the limit; nothing in it is applied. Every limit is far above what a real
// mesh config needs (an Istio resource is a few KiB and nests about ten levels), and each one bounds
// a way to make a small input cost a lot of memory or time:
//   - aliases: YAML anchors copied by `*alias` grow exponentially when nested ("billion laughs");
//   - depth: recursive code (the YAML composer, validation, JSON.stringify) runs out of stack;
//   - sizes and counts: the YAML parser costs about a second per MiB on a busy two-core machine.

export const INPUT_LIMITS = Object.freeze({
  /** The largest text parsed as documents: a file, or a request body (the REST API's body limit). */
  maxTextBytes: 8 * 1024 * 1024,
  /** The largest document, with its YAML aliases expanded (Kubernetes stores at most 1.5 MiB per object). */
  maxDocumentBytes: 1024 * 1024,
  /** Documents in one text, after JSON arrays and `kind: List` are flattened. */
  maxDocuments: 10_000,
  /** How deep mappings and sequences (objects and arrays) may nest in one document. */
  maxDepth: 64,
  /** Alias nodes (`*name`) in one YAML document. */
  maxAliases: 100,
});

/** "8 MiB", "1.05 MiB", "1.5 KiB", "300 bytes". */
export function formatSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${round(bytes / (1024 * 1024))} MiB`;
  if (bytes >= 1024) return `${round(bytes / 1024)} KiB`;
  return `${bytes} bytes`;
}

/** Two decimals at most, so that a size just past a limit does not print as the limit. */
function round(n: number): string {
  return String(Math.floor(n * 100) / 100);
}

/**
 * The offset in JSON text where brackets first nest deeper than `limit`, or undefined. A linear
 * scan that runs before JSON.parse: V8 parses deep nesting slowly (seconds for a few MiB), and what
 * comes after it (validation, JSON.stringify) recurses. Malformed text is scanned all the same;
 * JSON.parse rejects it afterwards.
 */
export function jsonNestingPast(text: string, limit: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > limit) return i;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return undefined;
}

export interface ValueLimitProblem {
  /** JSON pointer to where the limit was passed ("" for the whole value). */
  path: string;
  message: string;
}

/**
 * Checks an already-parsed document (a JSON body, a JSON file) against the depth and size limits,
 * without recursion and stopping at the first problem. Size is the length of the value as JSON,
 * estimated. Cycles cannot loop: they nest without end and pass the depth limit.
 */
export function valueLimitProblem(value: unknown, limits = INPUT_LIMITS): ValueLimitProblem | undefined {
  const tooLarge = { path: '', message: `the document is larger than ${formatSize(limits.maxDocumentBytes)} (the limit)` };
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value, depth: 0, path: '' }];
  let size = 0;
  while (stack.length > 0) {
    const item = stack.pop()!;
    const v = item.value;
    if (typeof v === 'string') size += v.length + 2;
    else if (typeof v !== 'object' || v === null) size += 5;
    else {
      const depth = item.depth + 1;
      if (depth > limits.maxDepth) return { path: clip(item.path), message: `nests deeper than ${limits.maxDepth} levels (the limit)` };
      // Brackets and commas; the entries are counted as they are pushed, so a huge object or array
      // stops the walk before it is all on the stack.
      size += 2;
      if (Array.isArray(v)) {
        size += v.length;
        if (size > limits.maxDocumentBytes) return tooLarge;
        for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], depth, path: `${item.path}/${i}` });
      } else {
        for (const key in v) {
          if (!Object.hasOwn(v, key)) continue;
          size += key.length + 4;
          if (size > limits.maxDocumentBytes) return tooLarge;
          stack.push({ value: (v as Record<string, unknown>)[key], depth, path: `${item.path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}` });
        }
      }
    }
    if (size > limits.maxDocumentBytes) return tooLarge;
  }
  return undefined;
}

/** Deep paths are cut short so that the error stays readable. */
function clip(pointer: string): string {
  return pointer.length <= 200 ? pointer : `${pointer.slice(0, 200)}...`;
}
