// Peer metadata exchange for TCP between sidecars (Istio's TCP metadata exchange): inside the mTLS
// connection, when both sides agreed on the ALPN protocol PEER_EXCHANGE_ALPN, each side first writes
// one frame saying who it is, then reads the other's; the app's bytes follow. Who is at the other end
// then labels the TCP metrics on both sides, as the x-wasmesh-peer-metadata header does for HTTP.
//
// Frame: 4-byte magic, 4-byte length (big endian), then the same value the telemetry filter puts in
// its header: base64 of `name=<workload>;namespace=<ns>;app=<app>;version=<v>;sa=<account>`, plus
// `;service=<host>` from the client (the service it dialled, for the server's destination_service).
// Values are %-escaped for `%`, `;`, `=` and control characters; unknown keys are ignored.

/** The ALPN protocols a sidecar offers on mTLS for TCP (Istio's names): the first asks for the exchange. */
export const PEER_EXCHANGE_ALPN = 'istio-peer-exchange';
export const MESH_ALPNS: readonly string[] = Object.freeze([PEER_EXCHANGE_ALPN, 'istio']);

/** Istio's metadata exchange magic number. */
const MAGIC = 0x3d230467;
/** A longer frame is refused (a real one is about 150 bytes). */
export const MAX_EXCHANGE_BYTES = 2048;
const MAX_VALUE_LENGTH = 253;

export interface PeerMetadata {
  name?: string;
  namespace?: string;
  app?: string;
  version?: string;
  serviceAccount?: string;
  /** Client side only: the service host the client connected to. */
  service?: string;
}

function escape(value: string): string {
  return value.replace(/[%;=\x00-\x1f\x7f]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`);
}

/** The frame announcing `peer`. */
export function encodeExchange(peer: PeerMetadata): Buffer {
  const fields: [string, string | undefined][] = [
    ['name', peer.name],
    ['namespace', peer.namespace],
    ['app', peer.app],
    ['version', peer.version],
    ['sa', peer.serviceAccount],
    ['service', peer.service],
  ];
  const text = fields
    .filter((f): f is [string, string] => f[1] !== undefined && f[1] !== '')
    .map(([k, v]) => `${k}=${escape(v)}`)
    .join(';');
  const payload = Buffer.from(Buffer.from(text, 'utf8').toString('base64'), 'latin1');
  const frame = Buffer.alloc(8 + payload.length);
  frame.writeUInt32BE(MAGIC, 0);
  frame.writeUInt32BE(payload.length, 4);
  payload.copy(frame, 8);
  return frame;
}

export type ExchangeRead =
  | { kind: 'incomplete' }
  | { kind: 'error'; reason: string }
  /** `rest`: the bytes after the frame (the app's first bytes). */
  | { kind: 'done'; peer: PeerMetadata; rest: Buffer };

/** Reads the peer's frame from the bytes received so far. */
export function readExchange(data: Buffer): ExchangeRead {
  if (data.length < 8) return { kind: 'incomplete' };
  if (data.readUInt32BE(0) !== MAGIC) return { kind: 'error', reason: 'not a peer metadata frame' };
  const length = data.readUInt32BE(4);
  if (length > MAX_EXCHANGE_BYTES) return { kind: 'error', reason: `peer metadata frame of ${length} bytes (at most ${MAX_EXCHANGE_BYTES})` };
  if (data.length < 8 + length) return { kind: 'incomplete' };
  const text = Buffer.from(data.subarray(8, 8 + length).toString('latin1'), 'base64').toString('utf8');
  const peer: PeerMetadata = {};
  for (const field of text.split(';')) {
    const eq = field.indexOf('=');
    if (eq <= 0) continue;
    let value: string;
    try {
      value = decodeURIComponent(field.slice(eq + 1));
    } catch {
      continue;
    }
    if (value === '' || value.length > MAX_VALUE_LENGTH) continue;
    switch (field.slice(0, eq)) {
      case 'name':
        peer.name = value;
        break;
      case 'namespace':
        peer.namespace = value;
        break;
      case 'app':
        peer.app = value;
        break;
      case 'version':
        peer.version = value;
        break;
      case 'sa':
        peer.serviceAccount = value;
        break;
      case 'service':
        peer.service = value;
        break;
    }
  }
  return { kind: 'done', peer, rest: data.subarray(8 + length) };
}
