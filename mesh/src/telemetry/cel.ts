// The CEL subset Istio users write in Telemetry accessLogging filter.expression, compiled once into a
// closure over RequestLogFacts. Grammar (CEL precedence):
//
//   expr   := and ('||' and)*          and := unary ('&&' unary)*
//   unary  := '!' unary | cmp          cmp := member (('=='|'!='|'<'|'<='|'>'|'>='|'in') member)?
//   member := primary ('.' IDENT ('(' args ')')? | '[' expr ']')*
//   primary:= INT | STRING | true | false | null | '(' expr ')' | '[' list ']' | IDENT
//
// Attributes: see ATTRIBUTES below. As in CEL, a missing attribute (a header the request does not
// have) is an error value that `||` and `&&` absorb when the other side decides; an expression that
// ends as an error or a non-boolean does not log, as Envoy's CEL filter. Pure; never throws at run time.
import type { RequestLogFacts } from './facts.ts';

const ERROR = Symbol('cel-error');
type V = string | number | boolean | null | V[] | typeof ERROR | Map<string, never>;
type Eval = (f: RequestLogFacts) => V;

const pathOf = (f: RequestLogFacts): string | undefined => f.requestHeader(':path');
const str = (v: string | undefined): V => (v === undefined ? ERROR : v);

/** Attribute name -> value (Istio/Envoy attribute names). */
const ATTRIBUTES: Readonly<Record<string, Eval>> = {
  'response.code': (f) => f.responseCode,
  'response.flags': (f) => f.responseFlags,
  'response.code_details': (f) => f.responseCodeDetails,
  'response.size': (f) => f.bytesSent,
  'response.total_size': (f) => f.bytesSent,
  'request.method': (f) => str(f.requestHeader(':method')),
  'request.path': (f) => str(pathOf(f)),
  'request.url_path': (f) => {
    const p = pathOf(f);
    if (p === undefined) return ERROR;
    const q = p.indexOf('?');
    return q < 0 ? p : p.slice(0, q);
  },
  'request.host': (f) => str(f.requestHeader(':authority')),
  'request.scheme': (f) => str(f.requestHeader(':scheme')),
  'request.protocol': (f) => f.protocol,
  'request.id': (f) => str(f.requestHeader('x-request-id')),
  'request.useragent': (f) => str(f.requestHeader('user-agent')),
  'request.referer': (f) => str(f.requestHeader('referer')),
  'request.size': (f) => f.bytesReceived,
  'request.total_size': (f) => f.bytesReceived,
  'request.duration': (f) => f.durationMs,
  'connection.mtls': (f) => f.mtls,
  'source.address': (f) => f.downstreamRemoteAddress,
  'destination.address': (f) => f.downstreamLocalAddress,
  'upstream.address': (f) => f.upstreamHost,
  'xds.cluster_name': (f) => f.upstreamCluster,
  'xds.route_name': (f) => f.routeName,
};
/** Maps indexed by a key: `request.headers['x-user']`. */
const MAPS: Readonly<Record<string, (f: RequestLogFacts, key: string) => V>> = {
  'request.headers': (f, k) => str(f.requestHeader(k.toLowerCase())),
  'response.headers': (f, k) => str(f.responseHeader(k.toLowerCase())),
};

export interface CelProblem {
  readonly at: number;
  readonly message: string;
}

export interface CompiledFilter {
  /** True when the request is to be logged. */
  matches(f: RequestLogFacts): boolean;
}

interface Tok {
  kind: 'num' | 'str' | 'id' | 'op' | 'end';
  text: string;
  value?: string | number;
  at: number;
}

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '(', ')', '[', ']', '.', ',', '-', '?', ':'];

function tokenize(src: string): Tok[] | CelProblem {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c >= '0' && c <= '9') {
      let j = i;
      while (j < src.length && src[j] >= '0' && src[j] <= '9') j++;
      if (src[j] === 'u') j++;
      out.push({ kind: 'num', text: src.slice(i, j), value: Number(src.slice(i, j).replace('u', '')), at: i });
      i = j;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) {
          const e = src[j + 1];
          s += e === 'n' ? '\n' : e === 't' ? '\t' : e;
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) return { at: i, message: `unterminated string starting at offset ${i}` };
      out.push({ kind: 'str', text: src.slice(i, j + 1), value: s, at: i });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j])) j++;
      out.push({ kind: 'id', text: src.slice(i, j), at: i });
      i = j;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) return { at: i, message: `unexpected character ${JSON.stringify(c)} at offset ${i}` };
    out.push({ kind: 'op', text: op, at: i });
    i += op.length;
  }
  out.push({ kind: 'end', text: '<end>', at: src.length });
  return out;
}

class Fail {
  constructor(readonly problem: CelProblem) {}
}

/** Compiles a filter expression; a problem (with its offset) when it is outside the subset. */
export function compileFilter(expression: string): CompiledFilter | CelProblem {
  const e = parse(expression);
  if (typeof e !== 'function') return e;
  return { matches: (f) => e(f) === true };
}

export interface CompiledValue {
  /** The expression's value as a label: strings as they are, numbers and booleans printed; undefined when it ends in an error or null. */
  value(f: RequestLogFacts): string | undefined;
}

/**
 * Compiles a value expression (Telemetry metrics tagOverrides `value`): the same subset, plus
 * `string(x)`, `has(x)` and `c ? a : b`. A string literal is written quoted, as in CEL ('"GET"').
 */
export function compileValue(expression: string): CompiledValue | CelProblem {
  const e = parse(expression);
  if (typeof e !== 'function') return e;
  return {
    value(f) {
      const v = e(f);
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      return undefined;
    },
  };
}

const GLOBAL_FUNCTIONS: Readonly<Record<string, (v: V) => V>> = {
  string: (v) => (typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : ERROR),
  has: (v) => v !== ERROR,
};

function parse(expression: string): Eval | CelProblem {
  const toks = tokenize(expression);
  if (!Array.isArray(toks)) return toks;
  let p = 0;
  const peek = (): Tok => toks[p];
  const fail = (t: Tok, message: string): never => {
    throw new Fail({ at: t.at, message: `${message} at offset ${t.at}` });
  };
  const expect = (text: string): void => {
    if (peek().text !== text || peek().kind === 'str') fail(peek(), `expected "${text}" but found ${JSON.stringify(peek().text)}`);
    p++;
  };

  // A member chain is first collected as a dotted name, resolved when it ends.
  type Node = { eval: Eval } | { name: string; tok: Tok };
  const resolve = (n: Node): Eval => {
    if ('eval' in n) return n.eval;
    const a = ATTRIBUTES[n.name];
    if (a) return a;
    return fail(n.tok, `unknown attribute ${n.name} (known: ${[...Object.keys(ATTRIBUTES), ...Object.keys(MAPS).map((m) => `${m}[...]`)].join(', ')})`);
  };

  const primary = (): Node => {
    const t = peek();
    p++;
    if (t.kind === 'num') return { eval: () => t.value as number };
    if (t.kind === 'str') return { eval: () => t.value as string };
    if (t.kind === 'op' && t.text === '-' && peek().kind === 'num') {
      const n = -(peek().value as number);
      p++;
      return { eval: () => n };
    }
    if (t.kind === 'op' && t.text === '(') {
      const e = conditional();
      expect(')');
      return { eval: e };
    }
    if (t.kind === 'op' && t.text === '[') {
      const items: Eval[] = [];
      if (peek().text !== ']') {
        items.push(orExpr());
        while (peek().text === ',') {
          p++;
          items.push(orExpr());
        }
      }
      expect(']');
      return { eval: (f) => items.map((e) => e(f)) };
    }
    if (t.kind === 'id' && peek().kind === 'op' && peek().text === '(' && GLOBAL_FUNCTIONS[t.text] !== undefined) {
      const fn = GLOBAL_FUNCTIONS[t.text]!;
      p++;
      const arg = conditional();
      expect(')');
      return { eval: (f) => fn(arg(f)) };
    }
    if (t.kind === 'id') {
      if (t.text === 'true') return { eval: () => true };
      if (t.text === 'false') return { eval: () => false };
      if (t.text === 'null') return { eval: () => null };
      return { name: t.text, tok: t };
    }
    return fail(t, `unexpected ${JSON.stringify(t.text)}`);
  };

  const member = (): Node => {
    let n = primary();
    for (;;) {
      const t = peek();
      if (t.kind === 'op' && t.text === '.') {
        p++;
        const id = peek();
        if (id.kind !== 'id') fail(id, 'expected a name after "."');
        p++;
        if (peek().text === '(' && peek().kind === 'op') {
          p++;
          const arg = orExpr();
          expect(')');
          const target = resolve(n);
          const fn = STRING_FUNCTIONS[id.text];
          if (!fn) fail(id, `unknown function ${id.text}() (known: ${Object.keys(STRING_FUNCTIONS).join(', ')})`);
          n = { eval: (f) => fn(target(f), arg(f)) };
        } else if ('name' in n) {
          n = { name: `${n.name}.${id.text}`, tok: n.tok };
        } else fail(id, `cannot select .${id.text} of a value`);
      } else if (t.kind === 'op' && t.text === '[') {
        p++;
        const key = orExpr();
        expect(']');
        if (!('name' in n) || MAPS[n.name] === undefined) fail(t, `only ${Object.keys(MAPS).join(' and ')} can be indexed`);
        const map = MAPS[(n as { name: string }).name];
        n = { eval: (f) => { const k = key(f); return typeof k === 'string' ? map(f, k) : ERROR; } };
      } else return n;
    }
  };

  const comparison = (): Eval => {
    const left = resolve(member());
    const t = peek();
    const op = t.kind === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.text) ? t.text : t.kind === 'id' && t.text === 'in' ? 'in' : undefined;
    if (op === undefined) return left;
    p++;
    const right = resolve(member());
    return (f) => compare(op, left(f), right(f));
  };

  const unary = (): Eval => {
    if (peek().kind === 'op' && peek().text === '!') {
      p++;
      const e = unary();
      return (f) => {
        const v = e(f);
        return typeof v === 'boolean' ? !v : ERROR;
      };
    }
    return comparison();
  };

  const andExpr = (): Eval => {
    let e = unary();
    while (peek().kind === 'op' && peek().text === '&&') {
      p++;
      const l = e;
      const r = unary();
      e = (f) => {
        const a = l(f);
        if (a === false) return false;
        const b = r(f);
        if (b === false) return false;
        return a === true && b === true ? true : ERROR;
      };
    }
    return e;
  };

  const orExpr = (): Eval => {
    let e = andExpr();
    while (peek().kind === 'op' && peek().text === '||') {
      p++;
      const l = e;
      const r = andExpr();
      e = (f) => {
        const a = l(f);
        if (a === true) return true;
        const b = r(f);
        if (b === true) return true;
        return a === false && b === false ? false : ERROR;
      };
    }
    return e;
  };

  const conditional = (): Eval => {
    const c = orExpr();
    if (!(peek().kind === 'op' && peek().text === '?')) return c;
    p++;
    const a = conditional();
    expect(':');
    const b = conditional();
    return (f) => {
      const v = c(f);
      return v === true ? a(f) : v === false ? b(f) : ERROR;
    };
  };

  try {
    const e = conditional();
    if (peek().kind !== 'end') fail(peek(), `unexpected ${JSON.stringify(peek().text)} after the expression`);
    return e;
  } catch (err) {
    if (err instanceof Fail) return err.problem;
    throw err;
  }
}

const STRING_FUNCTIONS: Readonly<Record<string, (s: V, a: V) => V>> = {
  startsWith: (s, a) => (typeof s === 'string' && typeof a === 'string' ? s.startsWith(a) : ERROR),
  endsWith: (s, a) => (typeof s === 'string' && typeof a === 'string' ? s.endsWith(a) : ERROR),
  contains: (s, a) => (typeof s === 'string' && typeof a === 'string' ? s.includes(a) : ERROR),
};

function compare(op: string, a: V, b: V): V {
  if (a === ERROR || b === ERROR) return ERROR;
  if (op === 'in') return Array.isArray(b) ? b.some((x) => x === a) : ERROR;
  if (op === '==') return a === b;
  if (op === '!=') return a !== b;
  // Ordering is defined for two numbers or two strings (CEL has no mixed ordering).
  if (!((typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string'))) return ERROR;
  if (op === '<') return a < b;
  if (op === '<=') return a <= b;
  if (op === '>') return a > b;
  return a >= b;
}
