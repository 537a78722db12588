// A filter that answers every request itself (proxy_send_local_response), for the tests of what a
// client receives: the proxy's and the harness's answers must follow Envoy's local replies alike.
import { Strings, c, envImports, pl } from './recorder.ts';
import { guestModule } from './wat.ts';

export interface LocalReplySpec {
  status: number;
  body: string;
  /** The gRPC status the filter passes (-1: none), as the AssemblyScript SDK's send_local_response invites. */
  grpcStatus: number;
  /** Extra reply headers the filter sets. */
  headers?: Array<[string, string]>;
}

/** wat of a filter whose on_request_headers sends `spec` as a local reply. */
export function localReplyWat(spec: LocalReplySpec): string {
  const s = new Strings();
  const details = s.add('answered_by_filter');
  const body = s.add(spec.body);
  const headers = s.pairs(spec.headers ?? []);
  return guestModule({
    imports: envImports('proxy_send_local_response'),
    body: `
  ${s.wat()}
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_send_local_response ${c(spec.status)} ${pl(details)} ${pl(body)} ${pl(headers)} ${c(spec.grpcStatus)}))
    ${c(1)})`,
  });
}
