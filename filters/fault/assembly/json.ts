// A small JSON reader: text in, a tree of JsonValue out. AssemblyScript's standard library has no
// JSON, and the fault configuration nests objects in arrays, so this reads any JSON document (RFC 8259)
// into a generic tree; config.ts then checks the shape field by field. It never aborts: a syntax error
// comes back as a message with its line and column.

export const JSON_NULL: i32 = 0;
export const JSON_BOOL: i32 = 1;
export const JSON_NUMBER: i32 = 2;
export const JSON_STRING: i32 = 3;
export const JSON_ARRAY: i32 = 4;
export const JSON_OBJECT: i32 = 5;

/** Nesting deeper than this is refused (the recursion must not exhaust the stack). */
const MAX_DEPTH: i32 = 32;

export class JsonValue {
  kind: i32;
  boolValue: bool = false;
  num: f64 = 0;
  str: string = "";
  items: JsonValue[] = [];
  keys: string[] = [];
  values: JsonValue[] = [];

  constructor(kind: i32) {
    this.kind = kind;
  }

  /** The member `key` of an object, or null. */
  get(key: string): JsonValue | null {
    const keys = this.keys;
    for (let i = 0, n = keys.length; i < n; i++) {
      if (unchecked(keys[i]) == key) return unchecked(this.values[i]);
    }
    return null;
  }
}

/** The JSON type name of a value, for error messages. */
export function kindName(kind: i32): string {
  if (kind == JSON_NULL) return "null";
  if (kind == JSON_BOOL) return "a boolean";
  if (kind == JSON_NUMBER) return "a number";
  if (kind == JSON_STRING) return "a string";
  if (kind == JSON_ARRAY) return "an array";
  return "an object";
}

export class JsonResult {
  /** The document; null when the text is empty (only whitespace) or invalid (see error). */
  value: JsonValue | null = null;
  error: string = "";
}

export function parseJson(text: string): JsonResult {
  const reader = new Reader(text);
  const result = new JsonResult();
  reader.skipWhitespace();
  if (reader.atEnd()) return result;
  const value = reader.readValue(0);
  if (!reader.failed) {
    reader.skipWhitespace();
    if (!reader.atEnd()) reader.fail("unexpected text after the JSON document");
  }
  if (reader.failed) result.error = reader.error;
  else result.value = value;
  return result;
}

class Reader {
  text: string;
  pos: i32 = 0;
  failed: bool = false;
  error: string = "";

  constructor(text: string) {
    this.text = text;
  }

  readValue(depth: i32): JsonValue {
    const dummy = new JsonValue(JSON_NULL);
    if (depth > MAX_DEPTH) {
      this.fail("nested deeper than " + MAX_DEPTH.toString() + " levels");
      return dummy;
    }
    this.skipWhitespace();
    const c = this.peek();
    if (c == 0x7b) return this.readObject(depth); // {
    if (c == 0x5b) return this.readArray(depth); // [
    if (c == 0x22) { // "
      const v = new JsonValue(JSON_STRING);
      v.str = this.readString();
      return v;
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.readNumber();
    if (this.matchWord("true")) {
      const v = new JsonValue(JSON_BOOL);
      v.boolValue = true;
      return v;
    }
    if (this.matchWord("false")) return new JsonValue(JSON_BOOL);
    if (this.matchWord("null")) return dummy;
    this.fail(c < 0 ? "unexpected end of the configuration" : "expected a JSON value");
    return dummy;
  }

  readObject(depth: i32): JsonValue {
    const v = new JsonValue(JSON_OBJECT);
    this.pos++; // {
    this.skipWhitespace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      this.skipWhitespace();
      const keyPos = this.pos;
      if (this.peek() != 0x22) {
        this.fail("expected a member name in double quotes");
        return v;
      }
      const key = this.readString();
      if (this.failed) return v;
      for (let i = 0, n = v.keys.length; i < n; i++) {
        if (unchecked(v.keys[i]) == key) {
          this.failAt(keyPos, "duplicate member \"" + key + "\"");
          return v;
        }
      }
      this.skipWhitespace();
      if (this.peek() != 0x3a) {
        this.fail("expected ':' after \"" + key + "\"");
        return v;
      }
      this.pos++;
      const member = this.readValue(depth + 1);
      if (this.failed) return v;
      v.keys.push(key);
      v.values.push(member);
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
      this.fail("expected ',' or '}' in an object");
    }
    return v;
  }

  readArray(depth: i32): JsonValue {
    const v = new JsonValue(JSON_ARRAY);
    this.pos++; // [
    this.skipWhitespace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      const item = this.readValue(depth + 1);
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
      this.fail("expected ',' or ']' in an array");
    }
    return v;
  }

  readNumber(): JsonValue {
    const v = new JsonValue(JSON_NUMBER);
    const text = this.text;
    const start = this.pos;
    if (this.peek() == 0x2d) this.pos++;
    if (this.peek() == 0x30) {
      this.pos++;
    } else if (!this.digits()) {
      this.failAt(start, "invalid number");
      return v;
    }
    if (this.peek() == 0x2e) {
      this.pos++;
      if (!this.digits()) {
        this.failAt(start, "invalid number");
        return v;
      }
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.pos++;
      if (!this.digits()) {
        this.failAt(start, "invalid number");
        return v;
      }
    }
    v.num = parseFloat(text.substring(start, this.pos));
    return v;
  }

  /** One or more decimal digits; false when there is none. */
  digits(): bool {
    const start = this.pos;
    while (true) {
      const c = this.peek();
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
    }
    return this.pos > start;
  }

  readString(): string {
    const text = this.text;
    const end = text.length;
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c == 0x22) {
        out += text.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in a string (escape it)");
        return "";
      }
      if (c == 0x5c) {
        out += text.substring(runStart, this.pos);
        const escapePos = this.pos;
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
        else if (e == 0x75) {
          let code = 0;
          for (let i = 0; i < 4; i++) {
            const digit = this.pos < end ? hexValue(text.charCodeAt(this.pos)) : -1;
            if (digit < 0) {
              this.failAt(escapePos, "invalid \\u escape");
              return "";
            }
            code = (code << 4) | digit;
            this.pos++;
          }
          out += String.fromCharCode(code);
        } else {
          this.failAt(escapePos, "invalid escape sequence");
          return "";
        }
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.fail("unterminated string");
    return "";
  }

  matchWord(word: string): bool {
    const n = word.length;
    if (this.pos + n > this.text.length) return false;
    if (this.text.substring(this.pos, this.pos + n) != word) return false;
    this.pos += n;
    return true;
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
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  fail(message: string): void {
    this.failAt(this.pos, message);
  }

  /** Records the first error with its line and column. */
  failAt(at: i32, message: string): void {
    if (this.failed) return;
    this.failed = true;
    let line = 1;
    let column = 1;
    const text = this.text;
    for (let i = 0; i < at && i < text.length; i++) {
      if (text.charCodeAt(i) == 0x0a) {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    const where = at >= text.length ? "at the end of the configuration" : "at line " + line.toString() + ", column " + column.toString();
    this.error = "invalid JSON: " + message + " (" + where + ")";
  }
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
