// Envoy's access-log format strings (%COMMAND%, %COMMAND(ARG)%, %COMMAND(ARG):N%), compiled once into
// a list of parts, for text lines and for JSON objects (Istio's envoyFileAccessLog logFormat.text and
// logFormat.labels). Compiling never throws: an unknown command or a malformed one is a problem with
// its offset, which validation reports under the field's path. Pure; no I/O.
import type { RequestLogFacts } from './facts.ts';

type Value = string | number | undefined;
type Getter = (f: RequestLogFacts) => Value;

/** Istio's default text format (MeshConfig accessLogFormat when none is set). */
export const ISTIO_DEFAULT_TEXT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% ' +
  '%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% ' +
  '%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" ' +
  '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% ' +
  '%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n';

const orUndefined = (s: string | undefined): string | undefined => (s ? s : undefined);
const withoutPort = (a: string): string | undefined => {
  if (a.length === 0) return undefined;
  if (a.startsWith('[')) return a.slice(1, Math.max(1, a.indexOf(']')));
  const i = a.lastIndexOf(':');
  return i > 0 && a.indexOf(':') === i ? a.slice(0, i) : a;
};

/** The commands without argument: name -> value. */
const SIMPLE: Readonly<Record<string, Getter>> = {
  RESPONSE_CODE: (f) => f.responseCode,
  RESPONSE_FLAGS: (f) => f.responseFlags || '-',
  RESPONSE_CODE_DETAILS: (f) => orUndefined(f.responseCodeDetails),
  CONNECTION_TERMINATION_DETAILS: () => undefined,
  UPSTREAM_TRANSPORT_FAILURE_REASON: () => undefined,
  DURATION: (f) => f.durationMs,
  BYTES_RECEIVED: (f) => f.bytesReceived,
  BYTES_SENT: (f) => f.bytesSent,
  PROTOCOL: (f) => orUndefined(f.protocol),
  UPSTREAM_HOST: (f) => orUndefined(f.upstreamHost),
  UPSTREAM_CLUSTER: (f) => orUndefined(f.upstreamCluster),
  UPSTREAM_LOCAL_ADDRESS: (f) => orUndefined(f.upstreamLocalAddress),
  DOWNSTREAM_REMOTE_ADDRESS: (f) => orUndefined(f.downstreamRemoteAddress),
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: (f) => withoutPort(f.downstreamRemoteAddress),
  DOWNSTREAM_PEER_ADDRESS: (f) => orUndefined(f.downstreamRemoteAddress),
  DOWNSTREAM_LOCAL_ADDRESS: (f) => orUndefined(f.downstreamLocalAddress),
  DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: (f) => withoutPort(f.downstreamLocalAddress),
  REQUESTED_SERVER_NAME: (f) => orUndefined(f.requestedServerName),
  ROUTE_NAME: (f) => orUndefined(f.routeName),
  UPSTREAM_REQUEST_ATTEMPT_COUNT: (f) => f.attemptCount,
  TRACE_ID: (f) => orUndefined(f.traceId),
  METHOD: (f) => f.requestHeader(':method'),
  HOSTNAME: () => HOSTNAME,
};
let HOSTNAME = 'unknown';
/** The value %HOSTNAME% prints (the proxy sets it once at start). */
export function setFormatHostname(name: string): void {
  HOSTNAME = name;
}

const NUMERIC = new Set(['RESPONSE_CODE', 'DURATION', 'BYTES_RECEIVED', 'BYTES_SENT', 'UPSTREAM_REQUEST_ATTEMPT_COUNT']);
const OPERATOR = /%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::([0-9]+))?%/y;

export interface FormatProblem {
  /** Offset in the format string. */
  readonly at: number;
  readonly message: string;
}

/** One compiled format string: literal text and commands, in order. */
export interface CompiledFormat {
  /** Text for a line: absent values print "-". */
  text(f: RequestLogFacts): string;
  /** The value for a JSON field: one command keeps its type; absent -> null. */
  json(f: RequestLogFacts): string | number | null;
}

/** Compiles an Envoy format string; a problem when it uses a command wasmesh does not know. */
export function compileFormat(format: string): CompiledFormat | FormatProblem {
  const parts: (string | Getter)[] = [];
  let literal = '';
  let i = 0;
  let single: { getter: Getter; numeric: boolean } | undefined;
  while (i < format.length) {
    const c = format[i];
    if (c !== '%') {
      literal += c;
      i++;
      continue;
    }
    OPERATOR.lastIndex = i;
    const m = OPERATOR.exec(format);
    if (!m) return { at: i, message: `"%" at offset ${i} does not start a command (%NAME%, %NAME(ARG)% or %NAME(ARG):N%)` };
    const [whole, name, arg, max] = m;
    const getter = commandGetter(name, arg);
    if (typeof getter === 'string') return { at: i, message: getter };
    const limit = max === undefined ? 0 : Number(max);
    const g: Getter = limit > 0 ? (f) => truncate(getter(f), limit) : getter;
    if (literal) parts.push(literal);
    literal = '';
    parts.push(g);
    if (i === 0 && whole.length === format.length) single = { getter: g, numeric: NUMERIC.has(name) };
    i += whole.length;
  }
  if (literal) parts.push(literal);
  const text = (f: RequestLogFacts): string => {
    let out = '';
    for (const p of parts) {
      if (typeof p === 'string') out += p;
      else {
        const v = p(f);
        out += v === undefined || v === '' ? '-' : String(v);
      }
    }
    return out;
  };
  const json = single
    ? (f: RequestLogFacts): string | number | null => {
        const v = single.getter(f);
        return v === undefined || v === '' ? null : single.numeric ? v : String(v);
      }
    : text;
  return { text, json };
}

function truncate(v: Value, n: number): Value {
  return typeof v === 'string' && v.length > n ? v.slice(0, n) : v;
}

/** The getter for one command, or why not. */
function commandGetter(name: string, arg: string | undefined): Getter | string {
  if (name === 'REQ' || name === 'RESP') {
    if (arg === undefined || arg.length === 0) return `%${name}(...)% needs a header name, as %${name}(USER-AGENT)% or %${name}(X?Y)%`;
    const [main, alt] = arg.toLowerCase().split('?', 2) as [string, string | undefined];
    if (!main || alt === '') return `%${name}(${arg})%: the header names around "?" must not be empty`;
    const read = name === 'REQ' ? (f: RequestLogFacts, h: string) => f.requestHeader(h) : (f: RequestLogFacts, h: string) => f.responseHeader(h);
    return alt === undefined ? (f) => read(f, main) : (f) => read(f, main) ?? read(f, alt);
  }
  if (name === 'START_TIME') return arg === undefined || arg === '' ? (f) => new Date(f.startMs).toISOString() : (f) => strftime(arg, f.startMs);
  const simple = SIMPLE[name];
  if (simple === undefined) return `unknown command %${name}%: wasmesh knows %START_TIME%, %REQ(X)%, %RESP(X)%, ${Object.keys(SIMPLE).map((k) => `%${k}%`).join(', ')}`;
  if (arg !== undefined) return `%${name}% takes no argument`;
  return simple;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** The strftime subset Envoy's START_TIME users write: %Y %m %d %H %M %S %E3S %Es %s %F %T %z %Z. */
function strftime(format: string, ms: number): string {
  const d = new Date(ms);
  return format.replace(/%(E3S|Es|[YmdHMSsFTzZ%])/g, (_, c: string) => {
    switch (c) {
      case 'Y': return String(d.getUTCFullYear());
      case 'm': return pad(d.getUTCMonth() + 1);
      case 'd': return pad(d.getUTCDate());
      case 'H': return pad(d.getUTCHours());
      case 'M': return pad(d.getUTCMinutes());
      case 'S': return pad(d.getUTCSeconds());
      case 'E3S': return `${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
      case 'Es': return String(ms);
      case 's': return String(Math.floor(ms / 1000));
      case 'F': return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
      case 'T': return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
      case 'z': return '+0000';
      case 'Z': return 'UTC';
      default: return '%';
    }
  });
}

/** A text line or JSON object formatter for one envoyFileAccessLog logFormat. */
export interface LineFormatter {
  line(f: RequestLogFacts): string;
}

/**
 * Compiles a logFormat (`text`, or `labels` for JSON; neither: Istio's default text). Problems come
 * back with the JSON pointer below logFormat ("/text", "/labels/<key>").
 */
export function compileLogFormat(logFormat: { text?: string; labels?: Readonly<Record<string, string>> } | undefined): LineFormatter | { path: string; message: string } {
  if (logFormat?.labels !== undefined) {
    const fields: [string, CompiledFormat][] = [];
    for (const [key, value] of Object.entries(logFormat.labels)) {
      const c = compileFormat(value);
      if ('message' in c) return { path: `/labels/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, message: c.message };
      fields.push([key, c]);
    }
    return {
      line(f) {
        const o: Record<string, string | number | null> = {};
        for (const [k, c] of fields) o[k] = c.json(f);
        return JSON.stringify(o) + '\n';
      },
    };
  }
  const text = logFormat?.text ?? ISTIO_DEFAULT_TEXT_FORMAT;
  const c = compileFormat(text);
  if ('message' in c) return { path: '/text', message: c.message };
  const newline = text.endsWith('\n');
  return { line: newline ? (f) => c.text(f) : (f) => c.text(f) + '\n' };
}

/** An envoyOtelAls record: the body line and the attributes. */
export interface OtelRecordFormatter {
  /** logFormat.text (or Istio's default line), without a trailing newline. */
  body(f: RequestLogFacts): string;
  /** logFormat.labels, values typed as in JSON (a missing value is "-", as Envoy prints it). */
  attributes(f: RequestLogFacts): [string, string | number][];
}

/** Compiles an envoyOtelAls logFormat: `text` is the body (default: Istio's line), `labels` the attributes. */
export function compileOtelLogFormat(logFormat: { text?: string; labels?: Readonly<Record<string, string>> } | undefined): OtelRecordFormatter | { path: string; message: string } {
  const text = logFormat?.text ?? ISTIO_DEFAULT_TEXT_FORMAT;
  const body = compileFormat(text.endsWith('\n') ? text.slice(0, -1) : text);
  if ('message' in body) return { path: '/text', message: body.message };
  const fields: [string, CompiledFormat][] = [];
  for (const [key, value] of Object.entries(logFormat?.labels ?? {})) {
    const c = compileFormat(value);
    if ('message' in c) return { path: `/labels/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, message: c.message };
    fields.push([key, c]);
  }
  return {
    body: (f) => body.text(f),
    attributes: (f) => fields.map(([k, c]) => [k, c.json(f) ?? '-']),
  };
}
