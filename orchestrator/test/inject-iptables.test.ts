import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { buildIptablesRules, parseCidrList, parsePortList, renderIptablesScript, shellQuote, type TrafficRedirect } from '../src/inject/iptables.ts';
import { injectResource } from '../src/inject/mutate.ts';

const BASE: TrafficRedirect = {
  outboundPort: 15001,
  inboundPort: 15006,
  proxyUid: 1337,
  proxyGid: 1337,
  includeInboundPorts: [9080],
  excludeInboundPorts: [15000, 15010],
  includeOutboundIPRanges: '*',
  excludeOutboundIPRanges: [],
  includeOutboundPorts: [],
  excludeOutboundPorts: [15000, 15010],
};

const lines = (cfg: Partial<TrafficRedirect>) => buildIptablesRules({ ...BASE, ...cfg }).map((r) => r.join(' '));

test('the default capture: app port in to 15006, everything out to 15001 but the proxy\'s own (UID/GID 1337) and loopback', () => {
  assert.equal(lines({}), [
    '-t nat -N WASMESH_INBOUND',
    '-t nat -N WASMESH_IN_REDIRECT',
    '-t nat -N WASMESH_OUTPUT',
    '-t nat -N WASMESH_REDIRECT',
    '-t nat -A WASMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
    '-t nat -A WASMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
    '-t nat -A PREROUTING -p tcp -j WASMESH_INBOUND',
    '-t nat -A WASMESH_INBOUND -p tcp --dport 15001 -j WASMESH_IN_REDIRECT',
    '-t nat -A WASMESH_INBOUND -p tcp --dport 9080 -j WASMESH_IN_REDIRECT',
    '-t nat -A OUTPUT -p tcp -j WASMESH_OUTPUT',
    '-t nat -A WASMESH_OUTPUT -p tcp --dport 15000 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -p tcp --dport 15010 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j WASMESH_IN_REDIRECT',
    '-t nat -A WASMESH_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j WASMESH_IN_REDIRECT',
    '-t nat -A WASMESH_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -m owner --gid-owner 1337 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -d 127.0.0.1/32 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -j WASMESH_REDIRECT',
  ]);
});

test('"*" inbound: excluded ports return first, then everything is redirected', () => {
  const inbound = lines({ includeInboundPorts: '*', excludeInboundPorts: [22, 15000, 15010] }).filter((l) => l.includes('-A WASMESH_INBOUND'));
  assert.equal(inbound, [
    '-t nat -A WASMESH_INBOUND -p tcp --dport 15001 -j WASMESH_IN_REDIRECT',
    '-t nat -A WASMESH_INBOUND -p tcp --dport 22 -j RETURN',
    '-t nat -A WASMESH_INBOUND -p tcp --dport 15000 -j RETURN',
    '-t nat -A WASMESH_INBOUND -p tcp --dport 15010 -j RETURN',
    '-t nat -A WASMESH_INBOUND -p tcp -j WASMESH_IN_REDIRECT',
  ]);
});

test('an included inbound port that is also excluded is not captured; no inbound capture drops the loopback-to-inbound rule', () => {
  assert.not.ok(lines({ includeInboundPorts: [15000] }).some((l) => l.includes('--dport 15000 -j WASMESH_IN_REDIRECT')));
  const none = lines({ includeInboundPorts: [] });
  assert.not.ok(none.some((l) => l.includes('--uid-owner 1337 -j WASMESH_IN_REDIRECT')));
  assert.ok(none.includes('-t nat -A WASMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN'));
});

test('outbound: included ports before excluded ranges; a range list redirects only those ranges', () => {
  const out = lines({ includeOutboundIPRanges: ['10.96.0.0/12', '10.244.0.0/16'], excludeOutboundIPRanges: ['10.96.0.1/32'], includeOutboundPorts: [3306] });
  const tail = out.slice(out.indexOf('-t nat -A WASMESH_OUTPUT -d 127.0.0.1/32 -j RETURN') + 1);
  assert.equal(tail, [
    '-t nat -A WASMESH_OUTPUT -p tcp --dport 3306 -j WASMESH_REDIRECT',
    '-t nat -A WASMESH_OUTPUT -d 10.96.0.1/32 -j RETURN',
    '-t nat -A WASMESH_OUTPUT -d 10.96.0.0/12 -j WASMESH_REDIRECT',
    '-t nat -A WASMESH_OUTPUT -d 10.244.0.0/16 -j WASMESH_REDIRECT',
  ]);
});

test('every rule is well-formed iptables: nat table, a known operation, jumps only to chains created before', () => {
  const known = new Set(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']);
  const targets = new Set(['RETURN', 'REDIRECT', 'ACCEPT']);
  for (const rule of buildIptablesRules({ ...BASE, includeInboundPorts: '*', excludeOutboundIPRanges: ['1.2.3.0/24'], includeOutboundPorts: [1] })) {
    assert.equal(rule.slice(0, 2), ['-t', 'nat']);
    const [op, chain] = [rule[2], rule[3]!];
    if (op === '-N') {
      assert.match(chain, /^WASMESH_[A-Z_]+$/);
      known.add(chain);
      continue;
    }
    assert.is(op, '-A');
    assert.ok(known.has(chain), `chain ${chain} exists`);
    const j = rule.indexOf('-j');
    assert.ok(j > 0 && j === rule.lastIndexOf('-j'), rule.join(' '));
    const target = rule[j + 1]!;
    assert.ok(known.has(target) || targets.has(target), `target ${target}`);
    if (target === 'REDIRECT') assert.equal(rule.slice(j + 2), ['--to-ports', rule.includes('WASMESH_REDIRECT') ? '15001' : '15006']);
    if (rule.includes('--dport')) assert.ok(rule.includes('-p'), '--dport needs -p tcp');
    if (rule.includes('--uid-owner') || rule.includes('--gid-owner')) assert.ok(rule.includes('-m') && rule[rule.indexOf('-m') + 1] === 'owner');
  }
});

test('the script: set -eu, re-runnable (chains flushed, built-in jumps checked with -C), quoted for sh', () => {
  const script = renderIptablesScript(buildIptablesRules(BASE));
  const ls = script.trimEnd().split('\n');
  assert.is(ls[0], 'set -eu');
  assert.is(ls[1], 'iptables -t nat -N WASMESH_INBOUND 2>/dev/null || iptables -t nat -F WASMESH_INBOUND');
  assert.ok(ls.includes('iptables -t nat -C PREROUTING -p tcp -j WASMESH_INBOUND 2>/dev/null || iptables -t nat -A PREROUTING -p tcp -j WASMESH_INBOUND'));
  assert.ok(ls.includes("iptables -t nat -A WASMESH_OUTPUT -o lo -m owner '!' --uid-owner 1337 -j RETURN"));
  assert.is(ls[ls.length - 1], 'iptables-save -t nat 2>/dev/null || iptables -t nat -S');
  assert.is(shellQuote("it's"), `'it'\\''s'`);
});

test('annotation lists: ports and IPv4 ranges, with errors that name the bad value', () => {
  assert.equal(parsePortList(' 80, 8080 ,', false), [80, 8080]);
  assert.is(parsePortList('*', true), '*');
  assert.throws(() => parsePortList('*', false), /not allowed/);
  assert.throws(() => parsePortList('70000', false), /"70000" is not a port number/);
  assert.equal(parseCidrList('10.0.0.0/8, 1.2.3.4', false), ['10.0.0.0/8', '1.2.3.4/32']);
  assert.throws(() => parseCidrList('fd00::/8', false), /IPv6 ranges are not supported/);
  assert.throws(() => parseCidrList('10.0.0/8', false), /not an IPv4 address/);
});

// ---------------------------------------------------------------------------------------------
// The real thing: the injected init container's script run by iptables in a throwaway network
// namespace, and connections from the app (UID 1000), the proxy (UID 1337) and another pod
// (a second namespace over a veth pair) landing where they should. Needs root, unshare, nsenter,
// setpriv and iptables; skipped without them.

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

// The tools, and a kernel that lets this process make a network namespace with a NAT table in it.
const canRunKernelTest =
  process.getuid?.() === 0 && ['unshare', 'nsenter', 'setpriv', 'iptables', 'ip'].every(have) && spawnSync('unshare', ['--net', '--', 'iptables', '-t', 'nat', '-S'], { timeout: 10_000 }).status === 0;

const SERVERS = `
const net = require('node:net');
const fs = require('node:fs');
const ports = { 15001: 'outbound', 15006: 'inbound', 15000: 'admin', 9080: 'app', 8081: 'other' };
let n = 0;
for (const [port, name] of Object.entries(ports)) {
  net.createServer((s) => s.end(name)).listen(Number(port), '0.0.0.0', () => { if (++n === 5) fs.writeFileSync(process.env.READY, 'ok'); });
}`;

const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let got = '';
s.setTimeout(700, () => { process.stdout.write('timeout'); process.exit(0); });
s.on('data', (d) => (got += d));
s.on('end', () => { process.stdout.write(got || 'empty'); process.exit(0); });
s.on('error', (e) => { process.stdout.write(e.code); process.exit(0); });`;

(canRunKernelTest ? test : test.skip)('in a network namespace, the rules send each connection where it belongs', () => {
  const doc = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } },
    spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 9080 }] }] },
  };
  const pod = injectResource(doc, { orchestrator: 'o:15010', image: 'i', tokenSecret: 's' }).object as { spec: { initContainers: Array<{ command: string[] }> } };
  const script = pod.spec.initContainers[0]!.command[2]!;
  const ready = `/tmp/wasmesh-iptables-test-${process.pid}`;
  // The client namespace is a child of the pod's, joined by a veth pair: 10.77.0.1 (client) -> 10.77.0.5 (pod).
  const body = `
set -eu
CLIENT_NS= SERVERS_PID=
# Whatever happens, nothing started here outlives the test.
trap 'kill $SERVERS_PID $CLIENT_NS 2>/dev/null; rm -f "$READY"' EXIT
ip link set lo up
unshare -n sleep 30 >/dev/null 2>&1 & CLIENT_NS=$!
sleep 0.2
ip link add v0 type veth peer name v1 netns $CLIENT_NS
ip addr add 10.77.0.5/24 dev v0 && ip link set v0 up
nsenter -t $CLIENT_NS -n sh -c 'ip link set lo up && ip addr add 10.77.0.1/24 dev v1 && ip link set v1 up'
sh -c "$SCRIPT" >/dev/null
rm -f "$READY"
node -e "$SERVERS" >/dev/null 2>&1 & SERVERS_PID=$!
for i in $(seq 100); do [ -f "$READY" ] && break; sleep 0.05; done
as() { uid=$1; shift; setpriv --reuid=$uid --regid=$uid --clear-groups node -e "$CLIENT" "$@"; echo; }
echo "app->remote:80 $(as 1000 10.77.0.99 80)"
echo "proxy->remote:80 $(as 1337 10.77.0.99 80)"
echo "app->localhost:9080 $(as 1000 127.0.0.1 9080)"
echo "app->remote:15010 $(as 1000 10.77.0.99 15010)"
echo "app->self:9080 $(as 1000 10.77.0.5 9080)"
echo "proxy->self:9080 $(as 1337 10.77.0.5 9080)"
echo "peer->pod:9080 $(nsenter -t $CLIENT_NS -n node -e "$CLIENT" 10.77.0.5 9080)"
echo "peer->pod:15006 $(nsenter -t $CLIENT_NS -n node -e "$CLIENT" 10.77.0.5 15006)"
echo "peer->pod:15001 $(nsenter -t $CLIENT_NS -n node -e "$CLIENT" 10.77.0.5 15001)"
echo "peer->pod:15000 $(nsenter -t $CLIENT_NS -n node -e "$CLIENT" 10.77.0.5 15000)"
echo "peer->pod:8081 $(nsenter -t $CLIENT_NS -n node -e "$CLIENT" 10.77.0.5 8081)"
`;
  const run = spawnSync('unshare', ['-n', 'sh', '-c', body], { env: { ...process.env, SCRIPT: script, SERVERS, CLIENT, READY: ready }, encoding: 'utf8', timeout: 60_000 });
  assert.is(run.status, 0, `exit ${run.status}\n${run.stdout}\n${run.stderr}`);
  const seen = Object.fromEntries(run.stdout.trim().split('\n').filter((l) => l.includes(' ')).map((l) => l.trim().split(' ') as [string, string]));
  assert.equal(seen, {
    'app->remote:80': 'outbound', // the app's outbound traffic goes to the sidecar
    'proxy->remote:80': 'timeout', // the proxy's own goes out as is (nobody answers 10.77.0.99)
    'app->localhost:9080': 'app', // localhost is never redirected
    'app->remote:15010': 'timeout', // the discovery port is excluded
    'app->self:9080': 'app', // the app calling its own address stays on lo
    'proxy->self:9080': 'inbound', // the proxy calling its own pod goes through the inbound listener
    'peer->pod:9080': 'inbound', // inbound traffic to the app port goes to the sidecar
    'peer->pod:15006': 'inbound',
    'peer->pod:15001': 'inbound', // the outbound listener is not reachable from outside the pod
    'peer->pod:15000': 'admin', // the admin port is not captured (the proxy binds it to loopback anyway)
    'peer->pod:8081': 'other', // ports other than the app's are not captured by default
  });
});

test.run();
