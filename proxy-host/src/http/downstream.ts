// Writing a response to the client: HTTP/1.1 takes Node's flat raw-header array; HTTP/2 an object.
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { HeaderList } from '../../../wasm/src/index.ts';
import type { DownstreamResponse } from '../listener/listener.ts';

export function writeDownstreamHeaders(res: DownstreamResponse, isH2: boolean, headers: HeaderList, endOfStream: boolean, isGrpc: boolean): void {
  let status = 200;
  if (isH2) {
    const out: Record<string, string | string[]> = {};
    let trailersOnly: Record<string, string> | undefined;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      const value = headers[i + 1];
      if (name === ':status') {
        status = Number(value);
        continue;
      }
      if (name.charCodeAt(0) === 58) continue;
      // A gRPC "trailers-only" answer (status in the headers, no body) is sent as headers + trailers:
      // the compatibility API cannot end a stream on the HEADERS frame.
      if (isGrpc && endOfStream && (name === 'grpc-status' || name === 'grpc-message' || name === 'grpc-status-details-bin')) {
        (trailersOnly ??= {})[name] = value;
        continue;
      }
      const prev = out[name];
      if (prev === undefined) out[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else out[name] = [prev, value];
    }
    const r = res as Http2ServerResponse;
    r.writeHead(status, out);
    if (trailersOnly) r.addTrailers(trailersOnly);
    if (endOfStream) r.end();
    return;
  }
  const flat: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (name.charCodeAt(0) === 58) {
      if (name === ':status') status = Number(headers[i + 1]);
      continue;
    }
    flat.push(name, headers[i + 1]);
  }
  const r = res as ServerResponse;
  r.writeHead(status, flat);
  if (endOfStream) r.end();
}

export function writeDownstreamTrailers(res: DownstreamResponse, trailers: HeaderList): void {
  const out: Record<string, string> = {};
  for (let i = 0; i < trailers.length; i += 2) out[trailers[i]] = trailers[i + 1];
  // HTTP/1.1 trailers need chunked framing; Node sends them only then (content-length responses drop them).
  (res as ServerResponse).addTrailers(out);
  res.end();
}
