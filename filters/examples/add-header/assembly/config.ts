// Configuration of the add-header filter.
//
//   { "request": { "<header>": "<value>", ... }, "response": { "<header>": "<value>", ... } }
//
// Both sections are optional (and may be null); an empty configuration adds nothing.
// AssemblyScript has no JSON in its standard library, so this is a small parser for exactly that
// shape: an object whose members are objects of string values. Anything else is rejected with a
// message that says what is wrong and where.

export class Header {
  name: string;
  value: string;
  constructor(name: string, value: string) {
    this.name = name;
    this.value = value;
  }
}

export class AddHeaderConfig {
  request: Header[] = [];
  response: Header[] = [];
}

export class ParseResult {
  /** The parsed configuration, or null if the text is invalid (see error). */
  config: AddHeaderConfig | null = null;
  error: string = "";
}

const QUOTE: i32 = 0x22; // "
const BACKSLASH: i32 = 0x5c;
const COLON: i32 = 0x3a;
const COMMA: i32 = 0x2c;
const LBRACE: i32 = 0x7b;
const RBRACE: i32 = 0x7d;

/** Parses the plugin configuration text. Never aborts: errors come back in ParseResult.error. */
export function parseConfig(text: string): ParseResult {
  const parser = new Parser(text);
  const config = parser.parseDocument();
  const result = new ParseResult();
  if (parser.failed) {
    result.error = parser.error;
  } else {
    result.config = config;
  }
  return result;
}

class Parser {
  text: string;
  pos: i32 = 0;
  failed: bool = false;
  error: string = "";

  constructor(text: string) {
    this.text = text;
  }

  parseDocument(): AddHeaderConfig {
    const config = new AddHeaderConfig();
    this.skipWhitespace();
    if (this.atEnd()) return config; // empty configuration: nothing to add
    if (!this.expect(LBRACE, "'{' at the start of the configuration")) return config;
    let seenRequest = false;
    let seenResponse = false;
    this.skipWhitespace();
    if (this.peek() == RBRACE) {
      this.pos++;
    } else {
      while (true) {
        this.skipWhitespace();
        const keyPos = this.pos;
        const key = this.parseString("a key (\"request\" or \"response\")");
        if (this.failed) return config;
        this.skipWhitespace();
        if (!this.expect(COLON, "':' after \"" + key + "\"")) return config;
        if (key == "request") {
          if (seenRequest) return this.failAt(keyPos, "duplicate key \"request\"", config);
          seenRequest = true;
          config.request = this.parseSection("request");
        } else if (key == "response") {
          if (seenResponse) return this.failAt(keyPos, "duplicate key \"response\"", config);
          seenResponse = true;
          config.response = this.parseSection("response");
        } else {
          return this.failAt(keyPos, "unknown key \"" + key + "\" (expected \"request\" or \"response\")", config);
        }
        if (this.failed) return config;
        this.skipWhitespace();
        const c = this.peek();
        if (c == COMMA) {
          this.pos++;
          continue;
        }
        if (c == RBRACE) {
          this.pos++;
          break;
        }
        this.fail("expected ',' or '}' after the \"" + key + "\" section");
        return config;
      }
    }
    this.skipWhitespace();
    if (!this.atEnd()) this.fail("unexpected text after the configuration object");
    return config;
  }

  /** `{ "name": "value", ... }` or `null`. */
  parseSection(section: string): Header[] {
    const headers: Header[] = [];
    this.skipWhitespace();
    if (this.matchLiteral("null")) return headers;
    if (!this.expect(LBRACE, "an object of header names to values for \"" + section + "\"")) return headers;
    this.skipWhitespace();
    if (this.peek() == RBRACE) {
      this.pos++;
      return headers;
    }
    while (true) {
      this.skipWhitespace();
      const namePos = this.pos;
      const rawName = this.parseString("a header name in \"" + section + "\"");
      if (this.failed) return headers;
      const name = rawName.toLowerCase(); // proxies compare header names case-insensitively
      const problem = checkHeaderName(name);
      if (problem.length > 0) {
        this.failAt(namePos, "\"" + section + "\": invalid header name \"" + rawName + "\": " + problem, headers);
        return headers;
      }
      for (let i = 0; i < headers.length; i++) {
        if (unchecked(headers[i]).name == name) {
          this.failAt(namePos, "\"" + section + "\": header \"" + name + "\" is listed twice", headers);
          return headers;
        }
      }
      this.skipWhitespace();
      if (!this.expect(COLON, "':' after \"" + rawName + "\"")) return headers;
      this.skipWhitespace();
      const valuePos = this.pos;
      if (this.peek() != QUOTE) {
        this.fail("\"" + section + "\".\"" + rawName + "\": the value must be a string");
        return headers;
      }
      const value = this.parseString("a header value");
      if (this.failed) return headers;
      if (!checkHeaderValue(value)) {
        this.failAt(valuePos, "\"" + section + "\".\"" + rawName + "\": the value must not contain CR, LF or NUL", headers);
        return headers;
      }
      headers.push(new Header(name, value));
      this.skipWhitespace();
      const c = this.peek();
      if (c == COMMA) {
        this.pos++;
        continue;
      }
      if (c == RBRACE) {
        this.pos++;
        return headers;
      }
      this.fail("expected ',' or '}' in \"" + section + "\"");
      return headers;
    }
  }

  /** A JSON string at the current position; `what` names it in the error message. */
  parseString(what: string): string {
    if (this.peek() != QUOTE) {
      this.fail("expected " + what);
      return "";
    }
    const text = this.text;
    const end = text.length;
    this.pos++;
    let out = "";
    let runStart = this.pos;
    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c == QUOTE) {
        out += text.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in a string (escape it)");
        return "";
      }
      if (c == BACKSLASH) {
        out += text.substring(runStart, this.pos);
        const escapePos = this.pos;
        this.pos++;
        if (this.pos >= end) break;
        const e = text.charCodeAt(this.pos);
        this.pos++;
        if (e == QUOTE || e == BACKSLASH || e == 0x2f) out += String.fromCharCode(e);
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x6e) out += "\n";
        else if (e == 0x72) out += "\r";
        else if (e == 0x74) out += "\t";
        else if (e == 0x75) { // \uXXXX (surrogate pairs arrive as two escapes and stay UTF-16)
          let code = 0;
          for (let i = 0; i < 4; i++) {
            const digit = this.pos < end ? hexValue(text.charCodeAt(this.pos)) : -1;
            if (digit < 0) {
              this.failAt(escapePos, "invalid \\u escape", 0);
              return "";
            }
            code = (code << 4) | digit;
            this.pos++;
          }
          out += String.fromCharCode(code);
        } else {
          this.failAt(escapePos, "invalid escape sequence", 0);
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

  matchLiteral(word: string): bool {
    const n = word.length;
    if (this.pos + n > this.text.length) return false;
    if (this.text.substring(this.pos, this.pos + n) != word) return false;
    this.pos += n;
    return true;
  }

  expect(c: i32, what: string): bool {
    if (this.peek() == c) {
      this.pos++;
      return true;
    }
    this.fail("expected " + what);
    return false;
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
    this.failAt(this.pos, message, 0);
  }

  /** Records the first error (with its line and column) and returns `value` for convenience. */
  failAt<T>(at: i32, message: string, value: T): T {
    if (!this.failed) {
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
      this.error = message + " (" + where + ")";
    }
    return value;
  }
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** An RFC 9110 token (an optional leading ':' allows pseudo-headers); returns what is wrong, or "". */
function checkHeaderName(name: string): string {
  const n = name.length;
  if (n == 0) return "it is empty";
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (i == 0 && c == COLON && n > 1) continue;
    if (!isTokenChar(c)) return "character '" + String.fromCharCode(c) + "' is not allowed";
  }
  return "";
}

function isTokenChar(c: i32): bool {
  if (c >= 0x61 && c <= 0x7a) return true; // a-z (names are lowercased before the check)
  if (c >= 0x30 && c <= 0x39) return true; // 0-9
  // ! # $ % & ' * + - . ^ _ ` | ~
  return c == 0x21 || c == 0x23 || c == 0x24 || c == 0x25 || c == 0x26 || c == 0x27 || c == 0x2a ||
    c == 0x2b || c == 0x2d || c == 0x2e || c == 0x5e || c == 0x5f || c == 0x60 || c == 0x7c || c == 0x7e;
}

function checkHeaderValue(value: string): bool {
  for (let i = 0, n = value.length; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c == 0x0a || c == 0x0d || c == 0) return false;
  }
  return true;
}
