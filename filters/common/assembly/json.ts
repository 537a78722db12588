// The JSON reader every filter uses for its plugin configuration (AssemblyScript's standard library
// has no JSON). Two layers:
//
// * parseJson(text): any JSON document (RFC 8259) into a tree of JValue nodes. It never aborts: a
//   syntax error comes back in JsonResult with its message, line, column and the path of the member
//   being read; nesting deeper than MAX_DEPTH is refused so a hostile configuration cannot exhaust
//   the stack. An empty (or all-whitespace) text reads as `{}`.
// * Checker: typed accessors over that tree. Each failure names the field, as in
//   `rules[0].abort.httpStatus: must be an integer from 200 to 599, not 99`; the first one wins.
//
// Filters import it with a relative path: `import { parseJson, Checker } from "../../common/assembly/json";`
// (see ../README.md).

export const enum JKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

/** Nesting deeper than this many levels is a syntax error. */
export const MAX_DEPTH: i32 = 64;

export class JValue {
  kind: JKind;
  /** Offset of the value in the source text (for error positions). */
  at: i32;
  boolean: bool = false;
  number: f64 = 0;
  /** A string's value, or a number as written. */
  text: string = "";
  /** Array items, or object member values in the order written. */
  items: JValue[] = [];
  /** Object member names, parallel to items. Duplicates are kept: Checker.object refuses them. */
  keys: string[] = [];
  /** Offsets of the member names, parallel to keys. */
  keyAt: i32[] = [];

  constructor(kind: JKind, at: i32) {
    this.kind = kind;
    this.at = at;
  }

  /** Index of the first member named `key`, or -1. */
  indexOf(key: string): i32 {
    const keys = this.keys;
    for (let i = 0, n = keys.length; i < n; i++) {
      if (unchecked(keys[i]) == key) return i;
    }
    return -1;
  }

  /** The (first) member named `key` of an object, or null when there is none. */
  get(key: string): JValue | null {
    const i = this.indexOf(key);
    return i < 0 ? null : unchecked(this.items[i]);
  }
}

/** The JSON type of a value, for messages: "null", "a boolean", "a number", "a string", ... */
export function kindName(kind: JKind): string {
  switch (kind) {
    case JKind.Null: return "null";
    case JKind.Bool: return "a boolean";
    case JKind.Number: return "a number";
    case JKind.String: return "a string";
    case JKind.Array: return "an array";
    default: return "an object";
  }
}

/** A value as a message shows it: a number as written, a string in quotes, else its type. */
export function describe(v: JValue): string {
  if (v.kind == JKind.Number) return v.text;
  if (v.kind == JKind.String) return "\"" + v.text + "\"";
  return kindName(v.kind);
}

/** `path.key`, or `path["key"]` when the key is not a plain identifier (header names with dashes). */
export function memberPath(path: string, key: string): string {
  let plain = key.length > 0;
  for (let i = 0, n = key.length; i < n && plain; i++) {
    const c = key.charCodeAt(i);
    plain = isLetter(c) || c == 0x5f || (i > 0 && isDigit(c));
  }
  if (!plain) return path + "[\"" + key + "\"]";
  return path.length > 0 ? path + "." + key : key;
}

/** `path[index]`. */
export function itemPath(path: string, index: i32): string {
  return path + "[" + index.toString() + "]";
}

/** "at line L, column C" (both from 1) for an offset of text, or "at the end of the configuration". */
export function position(text: string, at: i32): string {
  if (at >= text.length) return "at the end of the configuration";
  return "at line " + lineOf(text, at).toString() + ", column " + columnOf(text, at).toString();
}

function lineOf(text: string, at: i32): i32 {
  let line = 1;
  for (let i = 0, n = min(at, text.length); i < n; i++) {
    if (text.charCodeAt(i) == 0x0a) line++;
  }
  return line;
}

function columnOf(text: string, at: i32): i32 {
  let column = 1;
  for (let i = 0, n = min(at, text.length); i < n; i++) {
    column = text.charCodeAt(i) == 0x0a ? 1 : column + 1;
  }
  return column;
}

export class JsonResult {
  /** The document, or null when the text is not valid JSON (see the error fields). */
  value: JValue | null = null;
  /** `invalid JSON: <message> (at line L, column C)`; "" when the text is valid. */
  error: string = "";
  /** What is wrong, e.g. `expected ',' or '}' after the value`. */
  message: string = "";
  /** The member being read when it went wrong (`rules[0].abort`); "" at the top level. */
  path: string = "";
  /** Offset of the error in the text (may equal its length: the end), line and column from 1. */
  at: i32 = 0;
  line: i32 = 0;
  column: i32 = 0;
}

/** Reads a JSON document. Never aborts; an empty or all-whitespace text reads as an empty object. */
export function parseJson(text: string): JsonResult {
  const reader = new Reader(text);
  const result = new JsonResult();
  reader.skipWhitespace();
  if (reader.atEnd()) {
    result.value = new JValue(JKind.Object, 0);
    return result;
  }
  const value = reader.readValue(0, "");
  if (!reader.failed) {
    reader.skipWhitespace();
    if (!reader.atEnd()) {
      reader.fail("", "unexpected text after the configuration" + (value.kind == JKind.Object ? " object" : ""));
    }
  }
  if (!reader.failed) {
    result.value = value;
    return result;
  }
  result.message = reader.message;
  result.path = reader.errorPath;
  result.at = reader.errorAt;
  result.line = lineOf(text, reader.errorAt);
  result.column = columnOf(text, reader.errorAt);
  result.error = "invalid JSON: " + reader.message + " (" + position(text, reader.errorAt) + ")";
  return result;
}

class Reader {
  text: string;
  pos: i32 = 0;
  failed: bool = false;
  message: string = "";
  errorPath: string = "";
  errorAt: i32 = 0;

  constructor(text: string) {
    this.text = text;
  }

  /** A value at the current position (after whitespace), inside `depth` arrays and objects. */
  readValue(depth: i32, path: string): JValue {
    this.skipWhitespace();
    const start = this.pos;
    const nothing = new JValue(JKind.Null, start);
    const c = this.peek();
    if ((c == 0x7b || c == 0x5b) && depth >= MAX_DEPTH) {
      this.fail(path, "nesting deeper than " + MAX_DEPTH.toString() + " levels");
      return nothing;
    }
    if (c == 0x7b) return this.readObject(depth, path); // {
    if (c == 0x5b) return this.readArray(depth, path); // [
    if (c == 0x22) { // "
      const v = new JValue(JKind.String, start);
      v.text = this.readString(path);
      return v;
    }
    if (c == 0x2d || isDigit(c)) return this.readNumber(path);
    if (isLetter(c)) {
      // A bare word can only be one of the three literals; "trueish" is not true.
      let end = start;
      while (end < this.text.length && isWordChar(this.text.charCodeAt(end))) end++;
      const word = this.text.substring(start, end);
      if (word == "true" || word == "false") {
        const v = new JValue(JKind.Bool, start);
        v.boolean = word == "true";
        this.pos = end;
        return v;
      }
      if (word == "null") {
        this.pos = end;
        return nothing;
      }
      this.fail(path, "expected true, false or null");
      return nothing;
    }
    this.fail(path, c < 0 ? "unexpected end of the configuration" : "expected a JSON value");
    return nothing;
  }

  readObject(depth: i32, path: string): JValue {
    const v = new JValue(JKind.Object, this.pos);
    this.pos++; // {
    this.skipWhitespace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return v;
    }
    while (true) {
      this.skipWhitespace();
      if (this.peek() != 0x22) {
        this.fail(path, "expected a member name in double quotes");
        return v;
      }
      const keyAt = this.pos;
      const key = this.readString(path);
      if (this.failed) return v;
      const member = memberPath(path, key);
      this.skipWhitespace();
      if (this.peek() != 0x3a) {
        this.fail(member, "expected ':' after \"" + key + "\"");
        return v;
      }
      this.pos++;
      const item = this.readValue(depth + 1, member);
      if (this.failed) return v;
      v.keys.push(key);
      v.keyAt.push(keyAt);
      v.items.push(item);
      this.skipWhitespace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x7d) {
        this.pos++;
        return v;
      }
      this.fail(member, "expected ',' or '}' after the value");
      return v;
    }
  }

  readArray(depth: i32, path: string): JValue {
    const v = new JValue(JKind.Array, this.pos);
    this.pos++; // [
    this.skipWhitespace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return v;
    }
    while (true) {
      const item = this.readValue(depth + 1, itemPath(path, v.items.length));
      if (this.failed) return v;
      v.items.push(item);
      this.skipWhitespace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x5d) {
        this.pos++;
        return v;
      }
      this.fail(path, "expected ',' or ']' in an array");
      return v;
    }
  }

  readNumber(path: string): JValue {
    const start = this.pos;
    const v = new JValue(JKind.Number, start);
    if (this.peek() == 0x2d) this.pos++;
    // No leading zeros ("01"), a digit on both sides of '.', and one in the exponent.
    let ok = true;
    if (this.peek() == 0x30) this.pos++;
    else ok = this.digits();
    if (ok && this.peek() == 0x2e) {
      this.pos++;
      ok = this.digits();
    }
    const e = this.peek();
    if (ok && (e == 0x65 || e == 0x45)) {
      this.pos++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.pos++;
      ok = this.digits();
    }
    if (!ok) {
      this.failAt(start, path, "invalid number");
      return v;
    }
    v.text = this.text.substring(start, this.pos);
    v.number = parseFloat(v.text);
    return v;
  }

  /** One or more decimal digits; false when there is none. */
  digits(): bool {
    const start = this.pos;
    while (isDigit(this.peek())) this.pos++;
    return this.pos > start;
  }

  /** A string at the current (opening quote) position, escapes decoded. */
  readString(path: string): string {
    const text = this.text;
    const end = text.length;
    this.pos++; // "
    let out = "";
    let run = this.pos;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c == 0x22) {
        out += text.substring(run, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail(path, "control character in a string (escape it)");
        return "";
      }
      if (c != 0x5c) {
        this.pos++;
        continue;
      }
      out += text.substring(run, this.pos);
      const escapeAt = this.pos;
      this.pos++;
      if (this.pos >= end) break;
      const e = text.charCodeAt(this.pos);
      this.pos++;
      if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) { // \uXXXX: surrogate pairs arrive as two escapes and stay UTF-16
        let code = 0;
        for (let i = 0; i < 4; i++) {
          const digit = hexValue(this.peek());
          if (digit < 0) {
            this.failAt(escapeAt, path, "invalid \\u escape");
            return "";
          }
          code = (code << 4) | digit;
          this.pos++;
        }
        out += String.fromCharCode(code);
      } else {
        this.failAt(escapeAt, path, "invalid escape sequence");
        return "";
      }
      run = this.pos;
    }
    this.fail(path, "unterminated string");
    return "";
  }

  peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  atEnd(): bool {
    return this.pos >= this.text.length;
  }

  skipWhitespace(): void {
    const text = this.text;
    const end = text.length;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return;
      this.pos++;
    }
  }

  fail(path: string, message: string): void {
    this.failAt(this.pos, path, message);
  }

  /** Records the first error only. */
  failAt(at: i32, path: string, message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.message = message;
    this.errorPath = path;
    this.errorAt = at;
  }
}

/**
 * Typed accessors over a parsed tree. A filter's config checker holds one (or extends it); every
 * accessor takes the field path to name in errors, records the first failure, and returns a
 * harmless value so the caller can stop when `failed` is set. "Absent" means missing or null.
 */
export class Checker {
  /** The configuration text (for error positions). */
  text: string;
  /** Append ` (at line L, column C)` to errors. */
  positions: bool;
  failed: bool = false;
  /** `<path>: <message>`, or the message alone for an empty path. */
  error: string = "";

  constructor(text: string, positions: bool = false) {
    this.text = text;
    this.positions = positions;
  }

  /** Records the first failure; `at` is an offset in the text (-1: none). */
  fail(path: string, message: string, at: i32 = -1): void {
    if (this.failed) return;
    this.failed = true;
    let error = path.length > 0 ? path + ": " + message : message;
    if (this.positions && at >= 0) error += " (" + position(this.text, at) + ")";
    this.error = error;
  }

  /** v is of `kind`; else fails with `must be <what>, not <its type>` (`what` defaults to the kind). */
  is(v: JValue, kind: JKind, path: string, what: string = ""): bool {
    if (v.kind == kind) return true;
    this.fail(path, "must be " + (what.length > 0 ? what : kindName(kind)) + ", not " + kindName(v.kind), v.at);
    return false;
  }

  /**
   * v is an object whose members are all in `allowed`, none twice. Fails with
   * `<path>.<key>: unknown field (expected one of "a", "b")` or `<path>.<key>: listed twice`.
   */
  object(v: JValue, path: string, allowed: string[]): bool {
    if (!this.is(v, JKind.Object, path)) return false;
    for (let i = 0, n = v.keys.length; i < n; i++) {
      const key = unchecked(v.keys[i]);
      if (!allowed.includes(key)) {
        this.fail(memberPath(path, key), "unknown field (expected one of \"" + allowed.join("\", \"") + "\")", unchecked(v.keyAt[i]));
        return false;
      }
    }
    return this.noDuplicates(v, path);
  }

  /** No member of the object v is named twice (`<path>.<key>: listed twice`). */
  noDuplicates(v: JValue, path: string): bool {
    for (let i = 1, n = v.keys.length; i < n; i++) {
      const key = unchecked(v.keys[i]);
      if (v.indexOf(key) < i) {
        this.fail(memberPath(path, key), "listed twice", unchecked(v.keyAt[i]));
        return false;
      }
    }
    return true;
  }

  /** The items of an array; absent reads as empty. `what` names the expected type in errors. */
  array(v: JValue | null, path: string, what: string = "an array"): JValue[] {
    if (absent(v)) return [];
    const a = <JValue>v;
    return this.is(a, JKind.Array, path, what) ? a.items : [];
  }

  /** A string; absent reads as "" (and fails with `is required` when `required`). */
  str(v: JValue | null, path: string, required: bool = false): string {
    if (absent(v)) {
      if (required) this.fail(path, "is required");
      return "";
    }
    const s = <JValue>v;
    return this.is(s, JKind.String, path) ? s.text : "";
  }

  /** A boolean; absent reads as `fallback`. */
  bool(v: JValue | null, path: string, fallback: bool = false): bool {
    if (absent(v)) return fallback;
    const b = <JValue>v;
    return this.is(b, JKind.Bool, path) ? b.boolean : fallback;
  }

  /** A whole number from min to max; absent reads as `fallback` (NaN: the field is required). */
  int(v: JValue | null, path: string, min: f64, max: f64, fallback: f64 = NaN): f64 {
    return this.range(v, path, min, max, fallback, true);
  }

  /** A number from min to max; absent reads as `fallback` (NaN: the field is required). */
  number(v: JValue | null, path: string, min: f64, max: f64, fallback: f64 = NaN): f64 {
    return this.range(v, path, min, max, fallback, false);
  }

  private range(v: JValue | null, path: string, min: f64, max: f64, fallback: f64, whole: bool): f64 {
    if (absent(v)) {
      if (isNaN(fallback)) this.fail(path, "is required");
      return isNaN(fallback) ? min : fallback;
    }
    const n = <JValue>v;
    if (n.kind == JKind.Number && n.number >= min && n.number <= max && (!whole || Math.floor(n.number) == n.number)) {
      return n.number;
    }
    const what = whole ? "an integer" : "a number";
    this.fail(path, "must be " + what + " from " + bound(min) + " to " + bound(max) + ", not " + describe(n), n.at);
    return min;
  }
}

/** Missing (null) or JSON null. */
export function absent(v: JValue | null): bool {
  return v === null || v.kind == JKind.Null;
}

/** Index of the first member of v whose name is not in `allowed`, or -1. */
export function firstUnknown(v: JValue, allowed: string[]): i32 {
  for (let i = 0, n = v.keys.length; i < n; i++) {
    if (!allowed.includes(unchecked(v.keys[i]))) return i;
  }
  return -1;
}

function bound(x: f64): string {
  return Math.floor(x) == x && Math.abs(x) < 9e15 ? (<i64>x).toString() : x.toString();
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function isLetter(c: i32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
}

function isWordChar(c: i32): bool {
  return isLetter(c) || isDigit(c) || c == 0x5f;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
