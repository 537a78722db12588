// `wasmesh proxy --tcp-outbound PORT[=LOCAL]` and `--tcp-inbound LISTEN=APP`: what they become, and
// the errors a typo gets.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseTcpPorts } from '../cli/proxy.ts';

test('service ports, with and without a local port; inbound listener=app pairs', () => {
  assert.equal(parseTcpPorts(['5432', '6379=16379', '27017=0'], ['15432=5432']), {
    tcpOutbound: [{ port: 5432 }, { port: 6379, listenPort: 16379 }, { port: 27017, listenPort: 0 }],
    tcpInbound: [{ port: 15432, appPort: 5432 }],
  });
  assert.equal(parseTcpPorts(undefined, undefined), {});
});

test('bad values are refused with the flag and the value', () => {
  assert.throws(() => parseTcpPorts(['0'], undefined), /--tcp-outbound 0: "0" is not a port number/);
  assert.throws(() => parseTcpPorts(['5432=x'], undefined), /--tcp-outbound 5432=x: "x"/);
  assert.throws(() => parseTcpPorts(['1=2=3'], undefined), /use PORT or PORT=LOCAL/);
  assert.throws(() => parseTcpPorts(['5432', '5432=1'], undefined), /service port 5432 is given twice/);
  assert.throws(() => parseTcpPorts(undefined, ['15432']), /use LISTEN=APP/);
  assert.throws(() => parseTcpPorts(undefined, ['1=70000']), /"70000" is not a port number/);
});

test.run();
