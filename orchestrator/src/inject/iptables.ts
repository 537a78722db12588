// The traffic redirection the wasmesh-init container sets up in the pod's network namespace, as
// Istio's istio-init (tools/istio-iptables) does: NAT rules that send the app's inbound TCP to the
// sidecar's inbound listener and its outbound TCP to the outbound listener, except the proxy's own
// traffic (matched by its UID/GID, 1337), loopback traffic and the excluded ports and ranges.
//
// buildIptablesRules returns argument arrays (one `iptables` invocation each, no shell), so tests
// can check them; renderIptablesScript turns them into the `sh -c` script the init container runs.
//
// Chains (all in the nat table):
//   PREROUTING -> WASMESH_INBOUND    inbound TCP: the included ports jump to WASMESH_IN_REDIRECT
//   WASMESH_IN_REDIRECT              REDIRECT --to-ports <inbound port, 15006>
//   OUTPUT     -> WASMESH_OUTPUT     outbound TCP: the proxy's own and loopback traffic returns,
//                                    the rest jumps to WASMESH_REDIRECT
//   WASMESH_REDIRECT                 REDIRECT --to-ports <outbound port, 15001>
//
// IPv4 only: the rules are for iptables, not ip6tables.

import { isIPv4 } from 'node:net';

export const PROXY_UID = 1337;
export const PROXY_GID = 1337;
export const DEFAULT_OUTBOUND_PORT = 15001;
export const DEFAULT_INBOUND_PORT = 15006;
export const DEFAULT_ADMIN_PORT = 15000;
/** The proxy's read-only status port (readiness probe, metrics), Istio's 15021. */
export const DEFAULT_STATUS_PORT = 15021;
/** The orchestrator's discovery port: never captured, in either direction. */
export const DISCOVERY_PORT = 15010;

export const CHAIN = {
  inbound: 'WASMESH_INBOUND',
  inRedirect: 'WASMESH_IN_REDIRECT',
  output: 'WASMESH_OUTPUT',
  redirect: 'WASMESH_REDIRECT',
} as const;

export interface TrafficRedirect {
  /** Sidecar outbound listener (REDIRECT target of outbound traffic). */
  outboundPort: number;
  /** Sidecar inbound listener (REDIRECT target of inbound traffic). */
  inboundPort: number;
  /** UID and GID the proxy runs as: its own traffic is never redirected. */
  proxyUid: number;
  proxyGid: number;
  /** Inbound ports captured: '*' (all but the excluded ones) or a list ([] = no inbound capture). */
  includeInboundPorts: '*' | readonly number[];
  /** Inbound ports never captured (the admin, status and discovery ports are added by the caller). */
  excludeInboundPorts: readonly number[];
  /** Outbound destinations captured: '*' or a list of CIDRs ([] = none, unless by port). */
  includeOutboundIPRanges: '*' | readonly string[];
  /** Outbound destinations never captured (CIDRs). */
  excludeOutboundIPRanges: readonly string[];
  /** Outbound ports captured whatever the destination address. */
  includeOutboundPorts: readonly number[];
  /** Outbound ports never captured. */
  excludeOutboundPorts: readonly number[];
}

/** One iptables invocation's arguments, without the program name: ['-t', 'nat', '-A', ...]. */
export type IptablesRule = readonly string[];

const nat = (...args: string[]): IptablesRule => ['-t', 'nat', ...args];

/** The rules, in the order they must be applied. */
export function buildIptablesRules(cfg: TrafficRedirect): IptablesRule[] {
  const rules: IptablesRule[] = [];
  const inboundExcluded = new Set(cfg.excludeInboundPorts);
  const inboundCapture = cfg.includeInboundPorts === '*' || cfg.includeInboundPorts.some((p) => !inboundExcluded.has(p));

  for (const chain of [CHAIN.inbound, CHAIN.inRedirect, CHAIN.output, CHAIN.redirect]) rules.push(nat('-N', chain));
  rules.push(nat('-A', CHAIN.redirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(cfg.outboundPort)));
  rules.push(nat('-A', CHAIN.inRedirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(cfg.inboundPort)));

  // Inbound.
  rules.push(nat('-A', 'PREROUTING', '-p', 'tcp', '-j', CHAIN.inbound));
  // The outbound listener binds every address (the REDIRECT of outbound traffic lands on it), so a
  // connection from outside the pod straight to it would use this pod as an open proxy into the
  // mesh: such connections go to the inbound listener instead, as any other inbound traffic.
  rules.push(nat('-A', CHAIN.inbound, '-p', 'tcp', '--dport', String(cfg.outboundPort), '-j', CHAIN.inRedirect));
  if (cfg.includeInboundPorts === '*') {
    for (const port of uniq(cfg.excludeInboundPorts)) rules.push(nat('-A', CHAIN.inbound, '-p', 'tcp', '--dport', String(port), '-j', 'RETURN'));
    rules.push(nat('-A', CHAIN.inbound, '-p', 'tcp', '-j', CHAIN.inRedirect));
  } else {
    for (const port of uniq(cfg.includeInboundPorts)) {
      if (!inboundExcluded.has(port)) rules.push(nat('-A', CHAIN.inbound, '-p', 'tcp', '--dport', String(port), '-j', CHAIN.inRedirect));
    }
  }

  // Outbound.
  rules.push(nat('-A', 'OUTPUT', '-p', 'tcp', '-j', CHAIN.output));
  for (const port of uniq(cfg.excludeOutboundPorts)) rules.push(nat('-A', CHAIN.output, '-p', 'tcp', '--dport', String(port), '-j', 'RETURN'));
  for (const [flag, id] of [['--uid-owner', String(cfg.proxyUid)], ['--gid-owner', String(cfg.proxyGid)]] as const) {
    // The proxy calling this pod's own address (an app calling itself through its service) goes
    // over lo to the inbound listener, as it would from another pod.
    if (inboundCapture) rules.push(nat('-A', CHAIN.output, '-o', 'lo', '!', '-d', '127.0.0.1/32', '-m', 'owner', flag, id, '-j', CHAIN.inRedirect));
    // The app calling its own pod address over lo is not redirected.
    rules.push(nat('-A', CHAIN.output, '-o', 'lo', '-m', 'owner', '!', flag, id, '-j', 'RETURN'));
    // Everything else the proxy sends goes out as is (no loop through its own listener).
    rules.push(nat('-A', CHAIN.output, '-m', 'owner', flag, id, '-j', 'RETURN'));
  }
  // Containers of the pod talking over localhost (and apps that know the proxy) are not redirected.
  rules.push(nat('-A', CHAIN.output, '-d', '127.0.0.1/32', '-j', 'RETURN'));
  for (const port of uniq(cfg.includeOutboundPorts)) rules.push(nat('-A', CHAIN.output, '-p', 'tcp', '--dport', String(port), '-j', CHAIN.redirect));
  for (const cidr of uniq(cfg.excludeOutboundIPRanges)) rules.push(nat('-A', CHAIN.output, '-d', cidr, '-j', 'RETURN'));
  if (cfg.includeOutboundIPRanges === '*') {
    rules.push(nat('-A', CHAIN.output, '-j', CHAIN.redirect));
  } else {
    for (const cidr of uniq(cfg.includeOutboundIPRanges)) rules.push(nat('-A', CHAIN.output, '-d', cidr, '-j', CHAIN.redirect));
  }
  return rules;
}

/**
 * The POSIX sh script that applies `rules` with `iptables`, then prints the nat table for the init
 * container's log. It can run again in the same network namespace (an init container restarted
 * by the kubelet): a chain that exists is flushed instead of created, and a jump from a built-in
 * chain is appended only when it is not there yet (`iptables -C`).
 */
export function renderIptablesScript(rules: readonly IptablesRule[], program = 'iptables'): string {
  const lines = ['set -eu'];
  for (const rule of rules) {
    const args = rule.map(shellQuote).join(' ');
    const op = rule[2];
    const chain = rule[3] ?? '';
    if (op === '-N') {
      lines.push(`${program} -t nat -N ${shellQuote(chain)} 2>/dev/null || ${program} -t nat -F ${shellQuote(chain)}`);
    } else if (op === '-A' && !chain.startsWith('WASMESH_')) {
      const check = ['-t', 'nat', '-C', ...rule.slice(3)].map(shellQuote).join(' ');
      lines.push(`${program} ${check} 2>/dev/null || ${program} ${args}`);
    } else {
      lines.push(`${program} ${args}`);
    }
  }
  lines.push(`${program}-save -t nat 2>/dev/null || ${program} -t nat -S`);
  return `${lines.join('\n')}\n`;
}

/** Single-quotes an argument for sh when it holds anything but safe characters. */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_./:,=+-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

function uniq<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

// ---------------------------------------------------------------------------------------------
// Annotation values (Istio's traffic.sidecar.istio.io/* syntax)

/** "80,8080" -> [80, 8080]; "" -> []; "*" only where `allowStar`. Throws a message naming the value. */
export function parsePortList(value: string, allowStar: boolean): '*' | number[] {
  const text = value.trim();
  if (text === '*') {
    if (allowStar) return '*';
    throw new Error(`"*" is not allowed here: list ports, like "8080,9090"`);
  }
  const ports: number[] = [];
  for (const part of text.split(',')) {
    const p = part.trim();
    if (p === '') continue;
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new Error(`"${p}" is not a port number (1-65535)`);
    ports.push(Number(p));
  }
  return ports;
}

/** "10.0.0.0/8,1.2.3.4" -> ["10.0.0.0/8", "1.2.3.4/32"]; "*" where `allowStar`. Throws on anything but IPv4 CIDRs. */
export function parseCidrList(value: string, allowStar: boolean): '*' | string[] {
  const text = value.trim();
  if (text === '*') {
    if (allowStar) return '*';
    throw new Error(`"*" is not allowed here: list IPv4 ranges, like "10.0.0.0/8"`);
  }
  const out: string[] = [];
  for (const part of text.split(',')) {
    const c = part.trim();
    if (c === '') continue;
    const [ip, prefix, ...rest] = c.split('/');
    if (rest.length > 0 || !isIPv4(ip ?? '')) {
      throw new Error(`"${c}" is not an IPv4 address or range (CIDR like 10.0.0.0/8)${ip && ip.includes(':') ? '; IPv6 ranges are not supported' : ''}`);
    }
    if (prefix !== undefined && (!/^\d{1,2}$/.test(prefix) || Number(prefix) > 32)) throw new Error(`"${c}": the prefix length must be 0-32`);
    out.push(`${ip}/${prefix ?? '32'}`);
  }
  return out;
}
