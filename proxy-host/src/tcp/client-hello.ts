// Reads a TLS ClientHello without terminating anything (Envoy's tls_inspector): the server name
// (SNI) and the ALPN protocols a client offers, from the bytes it sent first. The bytes stay where
// they are; the caller forwards them unchanged.
//
// Bounded: a ClientHello larger than MAX_CLIENT_HELLO_BYTES is "not TLS" for routing purposes, so a
// client cannot make the proxy buffer without limit. Handles a ClientHello split over several TLS
// records and over several reads.

/** Largest ClientHello read (Envoy's tls_inspector reads at most 64 KiB; real ones are under 2 KiB). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

export type ClientHelloResult =
  /** More bytes are needed to decide. */
  | { kind: 'incomplete' }
  /** The bytes are not a TLS ClientHello (or one too large or malformed): route as plain TCP. */
  | { kind: 'not-tls' }
  | { kind: 'tls'; serverName: string | undefined; alpn: readonly string[] };

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;

/** Decides from the bytes received so far. */
export function parseClientHello(data: Buffer): ClientHelloResult {
  if (data.length === 0) return { kind: 'incomplete' };
  if (data[0] !== HANDSHAKE) return { kind: 'not-tls' };
  // Reassemble the handshake bytes from consecutive handshake records.
  const chunks: Buffer[] = [];
  let handshakeBytes = 0;
  let offset = 0;
  let needed = -1;
  while (offset + 5 <= data.length) {
    if (data[offset] !== HANDSHAKE) return { kind: 'not-tls' };
    const major = data[offset + 1]!;
    if (major !== 3) return { kind: 'not-tls' };
    const length = data.readUInt16BE(offset + 3);
    if (length === 0 || length > 16384 + 2048) return { kind: 'not-tls' };
    const end = offset + 5 + length;
    const body = data.subarray(offset + 5, Math.min(end, data.length));
    chunks.push(body);
    handshakeBytes += body.length;
    if (needed < 0 && handshakeBytes >= 4) {
      const head = Buffer.concat(chunks);
      if (head[0] !== CLIENT_HELLO) return { kind: 'not-tls' };
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > MAX_CLIENT_HELLO_BYTES) return { kind: 'not-tls' };
    }
    if (needed >= 0 && handshakeBytes >= needed) return readHello(Buffer.concat(chunks).subarray(0, needed));
    if (end > data.length) break;
    offset = end;
  }
  if (data.length > MAX_CLIENT_HELLO_BYTES + 64) return { kind: 'not-tls' };
  return { kind: 'incomplete' };
}

/** The fields of a complete ClientHello handshake message (type, 3-byte length, body). */
function readHello(msg: Buffer): ClientHelloResult {
  try {
    let p = 4 + 2 + 32; // type + length, client_version, random
    const sessionId = msg[p]!;
    p += 1 + sessionId;
    const suites = msg.readUInt16BE(p);
    p += 2 + suites;
    const compression = msg[p]!;
    p += 1 + compression;
    let serverName: string | undefined;
    let alpn: string[] = [];
    if (p + 2 > msg.length) return { kind: 'tls', serverName, alpn }; // no extensions (TLS 1.0 style)
    const extEnd = p + 2 + msg.readUInt16BE(p);
    if (extEnd > msg.length) return { kind: 'not-tls' };
    p += 2;
    while (p + 4 <= extEnd) {
      const type = msg.readUInt16BE(p);
      const len = msg.readUInt16BE(p + 2);
      const body = msg.subarray(p + 4, p + 4 + len);
      if (body.length !== len) return { kind: 'not-tls' };
      if (type === EXT_SERVER_NAME) serverName = readServerName(body);
      else if (type === EXT_ALPN) alpn = readAlpn(body);
      p += 4 + len;
    }
    return { kind: 'tls', serverName, alpn };
  } catch {
    return { kind: 'not-tls' }; // a read past the end: malformed
  }
}

/** server_name extension: a list of (type, name); the host_name (type 0), lowercased. */
function readServerName(body: Buffer): string | undefined {
  let p = 2;
  const end = Math.min(body.length, 2 + body.readUInt16BE(0));
  while (p + 3 <= end) {
    const type = body[p]!;
    const len = body.readUInt16BE(p + 1);
    if (type === 0) {
      const name = body.subarray(p + 3, p + 3 + len).toString('latin1');
      // Only what a host name may hold; anything else is no SNI.
      return /^[A-Za-z0-9._-]{1,253}$/.test(name) ? name.toLowerCase() : undefined;
    }
    p += 3 + len;
  }
  return undefined;
}

function readAlpn(body: Buffer): string[] {
  const out: string[] = [];
  let p = 2;
  const end = Math.min(body.length, 2 + body.readUInt16BE(0));
  while (p < end) {
    const len = body[p]!;
    out.push(body.subarray(p + 1, p + 1 + len).toString('latin1'));
    p += 1 + len;
  }
  return out;
}
