import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { NotifierError } from './errors.ts';

/** An endpoint address is in a refused range and not allowed by `--allow-endpoint-cidrs`. */
export class EndpointRefusedError extends NotifierError {
  /** The refused address. */
  readonly address: string;

  constructor(address: string, range: string) {
    super('ERR_ENDPOINT_REFUSED', `address ${address} is ${range}; allow it with --allow-endpoint-cidrs`);
    this.address = address;
  }
}

/** Resolves a host name to every address it has (node's `dns.lookup` with `all: true` fits). */
export type Resolver = (hostname: string) => Promise<{ address: string; family: number }[]>;

/** The system resolver (what a connection would use). */
export const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

// Ranges a webhook must not reach unless the operator allows them: they lead into the cluster, the node or
// the cloud's metadata service rather than to a receiver on the internet.
const REFUSED: readonly [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', '"this network"'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'shared (carrier-grade NAT) address space'],
  ['169.254.0.0', 16, 'ipv4', 'link-local (cloud metadata)'],
  ['192.0.0.0', 24, 'ipv4', 'IETF protocol assignments'],
  ['198.18.0.0', 15, 'ipv4', 'benchmarking'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['fc00::', 7, 'ipv6', 'unique local (private)'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

/**
 * The SSRF policy for endpoint addresses: loopback, private, link-local (cloud metadata), multicast and
 * reserved ranges are refused unless an allowed CIDR covers the address. IPv4 addresses embedded in IPv6
 * (`::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are judged as the IPv4 address they reach.
 */
export class AddressGuard {
  #allowed = new BlockList();
  #refused: { list: BlockList; range: string }[] = [];

  /** `allowCidrs` like `127.0.0.0/8` or `fd00::/8` (validated by the caller). */
  constructor(allowCidrs: readonly string[] = []) {
    for (const cidr of allowCidrs) {
      const [network = '', prefix = ''] = cidr.split('/');
      this.#allowed.addSubnet(network, Number(prefix), isIP(network) === 6 ? 'ipv6' : 'ipv4');
    }
    for (const [network, prefix, type, range] of REFUSED) {
      const list = new BlockList();
      list.addSubnet(network, prefix, type);
      this.#refused.push({ list, range });
    }
  }

  /** Why `address` (an IP literal) is refused, or undefined when it may be dialled. */
  refusal(address: string): string | undefined {
    const ip = embeddedIpv4(address) ?? address;
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (isIP(ip) === 0) return 'not an IP address';
    if (this.#allowed.check(ip, type)) return undefined;
    return this.#refused.find(({ list }) => list.check(ip, type))?.range;
  }

  /** Throws `EndpointRefusedError` when `address` is refused. */
  assert(address: string): void {
    const range = this.refusal(address);
    if (range !== undefined) throw new EndpointRefusedError(address, range);
  }

  /** Checks a URL's host now: an IP literal directly, a name through `resolve` (every address must pass). */
  async checkUrl(url: string, resolve: Resolver = systemResolver): Promise<void> {
    const host = hostOf(url);
    if (isIP(host)) return this.assert(host);
    for (const { address } of await resolve(host)) this.assert(address);
  }
}

/** The URL's host as an address or name, without IPv6 brackets. */
export function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

function embeddedIpv4(address: string): string | undefined {
  if (isIP(address) !== 6) return undefined;
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (!hex) return undefined;
  const [high, low] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}
