import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { NotifierError } from './errors.ts';

/** Why an address is refused: the range it is in, and for an IPv4 address embedded in IPv6, the embedding range. */
export interface RefusedRange {
  /** The range in CIDR notation, e.g. `169.254.0.0/16`; empty for something that is not an address. */
  readonly cidr: string;
  /** What the range is, in plain words, e.g. `link-local`. */
  readonly kind: string;
  /** Its name in IANA's registry (or in the RFC that defines it, where IANA lists none), e.g. `Link Local`. */
  readonly name: string;
  /** Set when the embedded IPv4 address `ipv4` was judged: the IPv6 range (`cidr`, `name`) it was embedded in. */
  readonly via?: { readonly ipv4: string; readonly cidr: string; readonly name: string };
}

/** An endpoint address (or a `localhost` name) is in a refused range and not allowed by `--allow-endpoint-cidrs`. */
export class EndpointRefusedError extends NotifierError {
  /** The refused address, or the refused host name. */
  readonly address: string;
  /** The range that refused it. */
  readonly range: RefusedRange;

  constructor(address: string, range: RefusedRange) {
    super('ERR_ENDPOINT_REFUSED', `${isIP(address) ? 'address' : 'host'} ${address} is ${describeRange(range)}; allow it with --allow-endpoint-cidrs`);
    this.address = address;
    this.range = range;
  }
}

/** A host name resolved to no address at all, so there is nothing to check or dial. */
export class EndpointUnresolvedError extends NotifierError {
  constructor(host: string) {
    super('ERR_ENDPOINT_UNRESOLVED', `${host} has no addresses`);
  }
}

/** Resolves a host name to every address it has (node's `dns.lookup` with `all: true` fits). */
export type Resolver = (hostname: string) => Promise<{ address: string; family: number }[]>;

/** The system resolver (what a connection would use). */
export const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

// How an IPv6 range that embeds an IPv4 address in its last 32 bits is judged, instead of being refused whole:
// - 'same-host': IPv4-mapped (::ffff:a.b.c.d). A socket to it is an IPv4 socket to a.b.c.d, the very same host, so
//   the IPv4 address is judged in full, allow-list included: `--allow-endpoint-cidrs 127.0.0.0/8` lets
//   ::ffff:127.0.0.1 through. This is deliberate.
// - 'translated': the NAT64 well-known prefix (64:ff9b::a.b.c.d). Packets go to a translator, which forwards them
//   to a.b.c.d as seen from the translator: the IPv4 address is judged against the refused ranges (a public address
//   passes, 64:ff9b::7f00:1 is loopback), but the IPv4 allow-list does not apply, because the translator's loopback or
//   private network is not the one the operator allowed. Allow such an address by its IPv6 form (64:ff9b::/96).
// Every other range that embeds an IPv4 address is refused whole (IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, the
// local-use NAT64 64:ff9b:1::/48 whose embedding depends on a local prefix length, 6to4 2002::/16, Teredo 2001::/32):
// they are deprecated or local, no webhook receiver needs them, and an IPv4 allow-list entry never opens them.
type Embedding = 'same-host' | 'translated';

// The refused ranges: IANA's IPv4 and IPv6 Special-Purpose Address Registries (iana-ipv4-special-registry,
// iana-ipv6-special-registry) in full, globally reachable entries (anycast, AS112, AMT) included since none is a
// webhook receiver; plus multicast and, for IPv6, everything IANA's IPv6 Address Space registry does not allocate as
// global unicast (2000::/3), which covers the deprecated forms (IPv4-compatible, SIIT, site-local). The most specific
// range that contains an address decides, so a part of a block (TEREDO in 2001::/23) names itself.
// [range, kind, name, embedding]
const RANGES: readonly (readonly [string, string, string, Embedding?])[] = [
  ['0.0.0.0/8', 'this network', 'This network'],
  ['0.0.0.0/32', 'this host', 'This host on this network'],
  ['10.0.0.0/8', 'private', 'Private-Use'],
  ['100.64.0.0/10', 'shared (carrier-grade NAT)', 'Shared Address Space'],
  ['127.0.0.0/8', 'loopback', 'Loopback'],
  ['169.254.0.0/16', 'link-local', 'Link Local'], // the cloud metadata service, 169.254.169.254
  ['172.16.0.0/12', 'private', 'Private-Use'],
  ['192.0.0.0/24', 'special-purpose', 'IETF Protocol Assignments'],
  ['192.0.0.0/29', 'special-purpose', 'IPv4 Service Continuity Prefix'],
  ['192.0.0.8/32', 'special-purpose', 'IPv4 dummy address'],
  ['192.0.0.9/32', 'anycast', 'Port Control Protocol Anycast'],
  ['192.0.0.10/32', 'anycast', 'Traversal Using Relays around NAT Anycast'],
  ['192.0.0.170/32', 'special-purpose', 'NAT64/DNS64 Discovery'],
  ['192.0.0.171/32', 'special-purpose', 'NAT64/DNS64 Discovery'],
  ['192.0.2.0/24', 'documentation', 'Documentation (TEST-NET-1)'],
  ['192.31.196.0/24', 'anycast', 'AS112-v4'],
  ['192.52.193.0/24', 'special-purpose', 'AMT'],
  ['192.88.99.0/24', 'reserved', 'Deprecated (6to4 Relay Anycast)'],
  ['192.168.0.0/16', 'private', 'Private-Use'],
  ['192.175.48.0/24', 'anycast', 'Direct Delegation AS112 Service'],
  ['198.18.0.0/15', 'benchmarking', 'Benchmarking'],
  ['198.51.100.0/24', 'documentation', 'Documentation (TEST-NET-2)'],
  ['203.0.113.0/24', 'documentation', 'Documentation (TEST-NET-3)'],
  ['224.0.0.0/4', 'multicast', 'Multicast'], // IANA IPv4 Address Space
  ['240.0.0.0/4', 'reserved', 'Reserved'],
  ['255.255.255.255/32', 'broadcast', 'Limited Broadcast'],

  ['::/128', 'unspecified', 'Unspecified Address'],
  ['::1/128', 'loopback', 'Loopback Address'],
  ['::/96', 'IPv4-compatible (deprecated)', 'IPv4-Compatible IPv6 Address (RFC 4291)'],
  ['::ffff:0:0/96', 'IPv4-mapped', 'IPv4-mapped Address', 'same-host'],
  ['::ffff:0:0:0/96', 'IPv4-translated (SIIT)', 'IPv4-translated Address (RFC 2765)'],
  ['64:ff9b::/96', 'NAT64', 'IPv4-IPv6 Translat.', 'translated'],
  ['64:ff9b:1::/48', 'local-use NAT64', 'IPv4-IPv6 Translat.'],
  ['100::/64', 'discard-only', 'Discard-Only Address Block'],
  ['100:0:0:1::/64', 'special-purpose', 'Dummy IPv6 Prefix'],
  ['2001::/23', 'special-purpose', 'IETF Protocol Assignments'],
  ['2001::/32', 'Teredo', 'TEREDO'],
  ['2001:1::1/128', 'anycast', 'Port Control Protocol Anycast'],
  ['2001:1::2/128', 'anycast', 'Traversal Using Relays around NAT Anycast'],
  ['2001:1::3/128', 'anycast', 'DNS-SD Service Registration Protocol Anycast'],
  ['2001:2::/48', 'benchmarking', 'Benchmarking'],
  ['2001:3::/32', 'special-purpose', 'AMT'],
  ['2001:4:112::/48', 'anycast', 'AS112-v6'],
  ['2001:10::/28', 'reserved', 'Deprecated (previously ORCHID)'],
  ['2001:20::/28', 'special-purpose', 'ORCHIDv2'],
  ['2001:30::/28', 'special-purpose', 'Drone Remote ID Protocol Entity Tags (DETs) Prefix'],
  ['2001:db8::/32', 'documentation', 'Documentation'],
  ['2002::/16', '6to4', '6to4'],
  ['2620:4f:8000::/48', 'anycast', 'Direct Delegation AS112 Service'],
  ['3fff::/20', 'documentation', 'Documentation'],
  ['5f00::/16', 'special-purpose', 'Segment Routing (SRv6) SIDs'],
  ['fc00::/7', 'private', 'Unique-Local'],
  ['fe80::/10', 'link-local', 'Link-Local Unicast'],
  ['fec0::/10', 'site-local (deprecated)', 'Reserved by IETF (formerly Site-Local, RFC 3879)'],
  ['ff00::/8', 'multicast', 'Multicast'], // IANA IPv6 Address Space, as are the unallocated blocks below
  ...['::/8', '100::/8', '200::/7', '400::/6', '800::/5', '1000::/4', '4000::/3', '6000::/3', '8000::/3', 'a000::/3', 'c000::/3', 'e000::/4', 'f000::/5', 'f800::/6', 'fe00::/9']
    .map((cidr) => [cidr, 'reserved', 'Reserved by IETF'] as const),
];

interface Range {
  readonly range: RefusedRange;
  readonly list: BlockList;
  readonly type: 'ipv4' | 'ipv6';
  readonly prefix: number;
  readonly embedding: Embedding | undefined;
}

// One BlockList per range so that a match can name its range; most specific first.
const [IPV4_RANGES, IPV6_RANGES] = [4, 6].map((family) =>
  RANGES.filter(([cidr]) => isIP(cidr.split('/')[0] ?? '') === family)
    .map(([cidr, kind, name, embedding]): Range => {
      const [network = '', prefix = ''] = cidr.split('/');
      const type = family === 4 ? 'ipv4' : 'ipv6';
      const list = new BlockList();
      list.addSubnet(network, Number(prefix), type);
      return { range: { cidr, kind, name }, list, type, prefix: Number(prefix), embedding };
    })
    .sort((a, b) => b.prefix - a.prefix),
) as [Range[], Range[]];

// What a `localhost` name stands for (RFC 6761 section 6.3; IANA Special-Use Domain Names), in the order tried.
const LOOPBACK = ['127.0.0.1', '::1'] as const;
const LOCALHOST: RefusedRange = { cidr: '127.0.0.0/8, ::1/128', kind: 'loopback', name: 'localhost.' };
const NOT_AN_ADDRESS: RefusedRange = { cidr: '', kind: 'not an IP address', name: '' };

/**
 * The SSRF policy for endpoint addresses: every special-purpose, private, loopback, link-local (cloud metadata),
 * multicast and reserved range is refused unless an allowed CIDR of the same family covers the address; names under
 * `localhost` are loopback without being resolved. Stateless after construction; safe to share.
 */
export class AddressGuard {
  #allowed4 = new BlockList();
  #allowed6 = new BlockList();

  /** `allowCidrs` like `127.0.0.0/8` or `fd00::/8` (validated by the caller); each applies to its own family only. */
  constructor(allowCidrs: readonly string[] = []) {
    for (const cidr of allowCidrs) {
      const [network = '', prefix = ''] = cidr.split('/');
      // Two lists: BlockList would otherwise match an IPv4 rule against IPv4-mapped addresses and back, so an
      // allowed `::/0` would quietly allow every IPv4 address.
      if (isIP(network) === 6) this.#allowed6.addSubnet(network, Number(prefix), 'ipv6');
      else this.#allowed4.addSubnet(network, Number(prefix), 'ipv4');
    }
  }

  /** Why `address` (an IP literal, IPv6 without brackets, zone allowed) is refused, or undefined when it may be dialled. */
  refusal(address: string): RefusedRange | undefined {
    const ip = address.split('%')[0] ?? '';
    const family = isIP(ip);
    if (family === 0) return NOT_AN_ADDRESS;
    if (family === 4) return this.#allowed4.check(ip, 'ipv4') ? undefined : mostSpecific(ip, IPV4_RANGES)?.range;
    if (this.#allowed6.check(ip, 'ipv6')) return undefined;
    const found = mostSpecific(ip, IPV6_RANGES);
    if (!found?.embedding) return found?.range;
    const ipv4 = embeddedIpv4(ip);
    const inner = found.embedding === 'same-host' ? this.refusal(ipv4) : mostSpecific(ipv4, IPV4_RANGES)?.range;
    return inner && { ...inner, via: { ipv4, cidr: found.range.cidr, name: found.range.name } };
  }

  /** Throws `EndpointRefusedError` when `address` is refused. */
  assert(address: string): void {
    const range = this.refusal(address);
    if (range !== undefined) throw new EndpointRefusedError(address, range);
  }

  /**
   * Every address a connection to `host` may use, each one judged: an IP literal (brackets optional) is itself; a name
   * under `localhost` is the allowed loopback addresses and is never resolved; any other name is what `resolve`
   * answers, trailing dot kept (it makes the name absolute). Rejects with `EndpointRefusedError` when any address is
   * refused (a name is only as good as its worst address), with `EndpointUnresolvedError` when there is none, and with
   * the resolver's own error when resolution fails.
   */
  async addresses(host: string, resolve: Resolver = systemResolver): Promise<string[]> {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    const known = this.assertHost(bare);
    if (known !== undefined) return known;
    const answers = await resolve(bare);
    if (answers.length === 0) throw new EndpointUnresolvedError(bare);
    for (const { address } of answers) this.assert(address);
    return answers.map(({ address }) => address);
  }

  /**
   * Judges what can be judged without resolving: an IP literal, or a name under `localhost`. Returns the addresses
   * to dial for those (throwing `EndpointRefusedError` when refused), or undefined for a name to resolve.
   */
  assertHost(host: string): string[] | undefined {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    if (isIP(bare)) {
      this.assert(bare);
      return [bare];
    }
    if (isLocalhostName(bare)) {
      // Resolvers differ on these names (`localhost.` and `*.localhost` often do not resolve at all, or go to DNS,
      // which may answer anything), so the name is judged as what RFC 6761 says it is.
      const allowed = LOOPBACK.filter((address) => this.refusal(address) === undefined);
      if (allowed.length === 0) throw new EndpointRefusedError(bare, LOCALHOST);
      return allowed;
    }
    return undefined;
  }

  /** Checks a URL's host now (see `addresses`): resolves when every address it stands for may be dialled. */
  async checkUrl(url: string, resolve: Resolver = systemResolver): Promise<void> {
    await this.addresses(hostOf(url), resolve);
  }
}

/** The URL's host as an address or name, without IPv6 brackets. */
export function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

/** Whether `host` is `localhost` or a name under it (RFC 6761), in any case, with or without trailing dots. */
export function isLocalhostName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.+$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

// The range for a message: `link-local ("Link Local", 169.254.0.0/16)`, plus the embedding range if any.
function describeRange(range: RefusedRange): string {
  if (range.name === '') return range.kind;
  const via = range.via ? `, as ${range.via.ipv4} embedded in "${range.via.name}", ${range.via.cidr}` : '';
  return `${range.kind} ("${range.name}", ${range.cidr}${via})`;
}

function mostSpecific(ip: string, ranges: readonly Range[]): Range | undefined {
  return ranges.find(({ list, type }) => list.check(ip, type));
}

// The IPv4 address in the last 32 bits of an IPv6 address. node:net has no IPv6-to-bytes parser and no library that
// does this is a dependency, so the WHATWG URL parser does the parsing (every spelling: dotted tail, zero runs, case)
// and writes one canonical hex form back, from which the last two 16-bit groups are read.
function embeddedIpv4(ipv6: string): string {
  const canonical = new URL(`http://[${ipv6}]/`).hostname.slice(1, -1);
  const groups = canonical.split(':');
  const [high, low] = [groups.at(-2), groups.at(-1)].map((group) => (group ? parseInt(group, 16) : 0)) as [number, number];
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}
