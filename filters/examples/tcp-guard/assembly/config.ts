// Configuration of the tcp-guard filter.
//
//   { "denyPrefixes": ["<prefix>", ...] }
//
// A connection whose first bytes from the client start with one of the prefixes (compared byte for
// byte with the prefix's UTF-8 encoding) is closed before anything reaches the upstream. The list may
// be absent or empty (nothing is denied; the filter only counts). Anything else is rejected with a
// message that says what is wrong and where.
import { Checker, JKind, parseJson } from "../../../common/assembly/json";

/** A prefix longer than this is refused: the filter holds up to this many client bytes to decide. */
export const MAX_PREFIX_BYTES: i32 = 1024;
/** At most this many prefixes. */
export const MAX_PREFIXES: i32 = 64;

export class GuardConfig {
  /** The deny prefixes, as bytes. */
  prefixes: Uint8Array[] = [];
  /** Their text, for logs. */
  names: string[] = [];
  /** The longest prefix: the most client bytes held before deciding. */
  longest: i32 = 0;
}

export class ParseResult {
  config: GuardConfig | null = null;
  error: string = "";
}

/** Parses the plugin configuration text. Never aborts: errors come back in ParseResult.error. */
export function parseConfig(text: string): ParseResult {
  const result = new ParseResult();
  const parsed = parseJson(text);
  const root = parsed.value;
  if (root === null) {
    result.error = parsed.error;
    return result;
  }
  const c = new Checker(text, true);
  const config = new GuardConfig();
  if (c.object(root, "", ["denyPrefixes"])) {
    const items = c.array(root.get("denyPrefixes"), "denyPrefixes", "an array of strings");
    if (items.length > MAX_PREFIXES) c.fail("denyPrefixes", "at most " + MAX_PREFIXES.toString() + " prefixes, not " + items.length.toString(), root.get("denyPrefixes")!.at);
    for (let i = 0, n = items.length; i < n && !c.failed; i++) {
      const item = unchecked(items[i]);
      const path = "denyPrefixes[" + i.toString() + "]";
      if (!c.is(item, JKind.String, path, "a string")) break;
      const bytes = Uint8Array.wrap(String.UTF8.encode(item.text));
      if (bytes.length == 0) c.fail(path, "must not be empty (it would deny every connection)", item.at);
      else if (bytes.length > MAX_PREFIX_BYTES) c.fail(path, "must be at most " + MAX_PREFIX_BYTES.toString() + " bytes, not " + bytes.length.toString(), item.at);
      else {
        config.prefixes.push(bytes);
        config.names.push(item.text);
        if (bytes.length > config.longest) config.longest = bytes.length;
      }
    }
  }
  if (c.failed) result.error = c.error;
  else result.config = config;
  return result;
}
