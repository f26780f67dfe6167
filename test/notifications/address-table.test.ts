// The SSRF table (issue 10, section 3): every refused and every must-stay-allowed endpoint, checked both at
// configuration time (EndpointSet.vet, and the Endpoint constructor for IP literals) and at connect time (an
// HttpSink whose guarded connector dials through a recording dialler). Names resolve through a stub; the dialler
// only ever connects to the loopback receiver.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressGuard, EndpointRefusedError } from '../../src/notifications/address-guard.ts';
import { Endpoint, endpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { HttpRequestError } from '../../src/notifications/errors.ts';
import { HttpSink } from '../../src/notifications/http-sink.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { useCleanups } from '../support/cleanup.ts';
import { TestReceiver } from '../support/receiver.ts';
import { recordingDialer, stubResolver } from './guard-doubles.ts';

const DNS: Record<string, string[]> = {
  'hooks.example': ['93.184.216.34', '2606:4700::1111'],
  'hooks.example.': ['93.184.216.34'],
  'inward.example': ['93.184.216.34', '10.0.0.5'], // one bad address is enough
  'inward-first.example': ['10.0.0.5', '93.184.216.34'],
  'inward6.example': ['2606:4700::1111', 'fd00::1'],
  'mapped.example': ['::ffff:169.254.169.254'],
  'nat64.example': ['64:ff9b::a9fe:a9fe'],
  'metadata.example.': ['169.254.169.254'],
};

// [url, kind of the refusing range, refused address or host]
const REFUSED: [string, string, string][] = [
  ['http://192.0.2.1/', 'documentation', '192.0.2.1'],
  ['http://198.51.100.7/', 'documentation', '198.51.100.7'],
  ['http://203.0.113.9/', 'documentation', '203.0.113.9'],
  ['http://198.18.0.1/', 'benchmarking', '198.18.0.1'],
  ['http://198.19.255.254/', 'benchmarking', '198.19.255.254'],
  ['http://192.0.0.8/', 'special-purpose', '192.0.0.8'],
  ['http://192.0.0.200/', 'special-purpose', '192.0.0.200'],
  ['http://192.88.99.1/', 'reserved', '192.88.99.1'],
  ['http://0.1.2.3/', 'this network', '0.1.2.3'],
  ['http://0.0.0.0/', 'this host', '0.0.0.0'],
  ['http://240.0.0.1/', 'reserved', '240.0.0.1'],
  ['http://255.255.255.255/', 'broadcast', '255.255.255.255'],
  ['http://224.0.0.1/', 'multicast', '224.0.0.1'],
  ['http://127.0.0.1:8080/', 'loopback', '127.0.0.1'],
  ['http://2130706433/', 'loopback', '127.0.0.1'], // the URL parser turns 2130706433 into 127.0.0.1
  ['http://169.254.169.254/latest/meta-data', 'link-local', '169.254.169.254'],
  ['http://10.0.0.1/', 'private', '10.0.0.1'],
  ['http://172.16.0.1/', 'private', '172.16.0.1'],
  ['http://192.168.0.1/', 'private', '192.168.0.1'],
  ['http://100.64.0.1/', 'shared (carrier-grade NAT)', '100.64.0.1'],
  ['http://[::]/', 'unspecified', '::'],
  ['http://[::1]/', 'loopback', '::1'],
  ['http://[::127.0.0.1]/', 'IPv4-compatible (deprecated)', '::7f00:1'],
  ['http://[::169.254.169.254]/', 'IPv4-compatible (deprecated)', '::a9fe:a9fe'],
  ['http://[::ffff:127.0.0.1]/', 'loopback', '::ffff:7f00:1'],
  ['http://[::ffff:169.254.169.254]/', 'link-local', '::ffff:a9fe:a9fe'],
  ['http://[::ffff:0:127.0.0.1]/', 'IPv4-translated (SIIT)', '::ffff:0:7f00:1'],
  ['http://[64:ff9b::7f00:1]/', 'loopback', '64:ff9b::7f00:1'],
  ['http://[64:ff9b::169.254.169.254]/', 'link-local', '64:ff9b::a9fe:a9fe'],
  ['http://[64:ff9b::10.0.0.1]/', 'private', '64:ff9b::a00:1'],
  ['http://[64:ff9b:1::7f00:1]/', 'local-use NAT64', '64:ff9b:1::7f00:1'],
  ['http://[2002:7f00:1::]/', '6to4', '2002:7f00:1::'],
  ['http://[2002:a9fe:a9fe::]/', '6to4', '2002:a9fe:a9fe::'],
  ['http://[2002:5db8:d822::1]/', '6to4', '2002:5db8:d822::1'], // refused whole, even around a public IPv4
  ['http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/', 'Teredo', '2001:0:4136:e378:8000:63bf:3fff:fdd2'],
  ['http://[2001::80ff:fffe]/', 'Teredo', '2001::80ff:fffe'], // client 127.0.0.1, XOR'ed
  ['http://[2001:2::1]/', 'benchmarking', '2001:2::1'],
  ['http://[2001:20::1]/', 'special-purpose', '2001:20::1'],
  ['http://[2001:1ff::1]/', 'special-purpose', '2001:1ff::1'], // 2001::/23, outside its named parts
  ['http://[100::1]/', 'discard-only', '100::1'],
  ['http://[2001:db8::1]/', 'documentation', '2001:db8::1'],
  ['http://[3fff::1]/', 'documentation', '3fff::1'],
  ['http://[5f00::1]/', 'special-purpose', '5f00::1'],
  ['http://[fec0::1]/', 'site-local (deprecated)', 'fec0::1'],
  ['http://[fc00::1]/', 'private', 'fc00::1'],
  ['http://[fd00:ec2::254]/', 'private', 'fd00:ec2::254'],
  ['http://[fe80::1]/', 'link-local', 'fe80::1'],
  ['http://[ff02::1]/', 'multicast', 'ff02::1'],
  ['http://[4000::1]/', 'reserved', '4000::1'], // not allocated as global unicast
  ['http://localhost/', 'loopback', 'localhost'],
  ['http://localhost./', 'loopback', 'localhost.'],
  ['http://LOCALHOST:8080/', 'loopback', 'localhost'],
  ['http://foo.localhost/', 'loopback', 'foo.localhost'],
  ['http://foo.localhost./', 'loopback', 'foo.localhost.'],
  ['http://a.b.LocalHost../', 'loopback', 'a.b.localhost..'],
  ['http://inward.example/', 'private', '10.0.0.5'],
  ['http://inward-first.example/', 'private', '10.0.0.5'],
  ['http://inward6.example/', 'private', 'fd00::1'],
  ['http://mapped.example/', 'link-local', '::ffff:169.254.169.254'],
  ['http://nat64.example/', 'link-local', '64:ff9b::a9fe:a9fe'],
  ['http://metadata.example./', 'link-local', '169.254.169.254'],
];

// [url, the address dialled]
const ALLOWED: [string, string][] = [
  ['http://93.184.216.34/hook', '93.184.216.34'],
  ['http://1.1.1.1/', '1.1.1.1'],
  ['http://8.8.8.8/', '8.8.8.8'],
  ['http://172.32.0.1/', '172.32.0.1'],
  ['http://192.0.3.1/', '192.0.3.1'],
  ['http://198.20.0.1/', '198.20.0.1'],
  ['http://100.128.0.1/', '100.128.0.1'],
  ['http://[2606:4700::1111]/', '2606:4700::1111'],
  ['http://[2a00:1450:4001:80b::200e]/', '2a00:1450:4001:80b::200e'],
  ['http://[64:ff9b::5db8:d822]/', '64:ff9b::5db8:d822'], // NAT64 to 93.184.216.34
  ['http://[::ffff:93.184.216.34]/', '::ffff:5db8:d822'],
  ['http://hooks.example/hook', '93.184.216.34'],
  ['http://hooks.example./hook', '93.184.216.34'],
];

const event: QueuedEvent[] = [{ id: 'e1', json: '{"id":"e1","action":"push","target":{}}', acceptedAt: 0 }];
const cleanups = useCleanups();
let receiver: TestReceiver;
beforeAll(async () => {
  receiver = await TestReceiver.start();
});
afterAll(() => receiver.close());

/** One POST through a guarded HttpSink; what it dialled and how it ended. */
async function connectThrough(url: string, guard: AddressGuard): Promise<{ dialled: string[]; servernames: (string | undefined)[]; error: unknown; asked: string[] }> {
  const { dial, dialled } = recordingDialer(receiver);
  const resolve = stubResolver(DNS);
  const sink = new HttpSink({ url, timeoutMs: 2000, dial, guard, resolve });
  cleanups.push(() => sink.close());
  const error = await sink.write(event).then(() => undefined, (e: unknown) => e);
  return { dialled: dialled.map((d) => d.hostname), servernames: dialled.map((d) => d.servername), error, asked: resolve.asked };
}

async function vet(url: string, guard: AddressGuard): Promise<unknown> {
  return new EndpointSet({ guard, resolve: stubResolver(DNS) }).vet(url).then(() => undefined, (e: unknown) => e);
}

describe('refused endpoints, unless allowed', () => {
  const guard = new AddressGuard();

  it.each(REFUSED)('%s is refused as %s (%s) when configured', async (url, kind, address) => {
    const error = await vet(url, guard);
    expect(error).toBeInstanceOf(EndpointRefusedError);
    expect(error).toMatchObject({ code: 'ERR_ENDPOINT_REFUSED', address, range: { kind } });
    expect((error as Error).message).toContain(`${address} is ${kind}`);
    if (/^\[|^[\d.]+$|localhost\.*$/i.test(new URL(url).hostname)) {
      // An IP literal or a localhost name is refused by the endpoint itself too, before anything is built.
      expect(() => new Endpoint('x', endpointConfig({ url }), { guard })).toThrow(EndpointRefusedError);
    }
  });

  it.each(REFUSED)('%s is refused as %s (%s) at connect time, and nothing is dialled', async (url, kind, address) => {
    const { dialled, error } = await connectThrough(url, guard);
    expect(error).toBeInstanceOf(HttpRequestError);
    expect((error as HttpRequestError).cause).toBeInstanceOf(EndpointRefusedError);
    expect((error as HttpRequestError).cause).toMatchObject({ address, range: { kind } });
    expect(dialled).toEqual([]);
  });

  it('never sends a localhost name to the resolver', async () => {
    for (const url of ['http://localhost/', 'http://localhost./', 'http://foo.localhost./']) {
      expect((await connectThrough(url, guard)).asked).toEqual([]);
      const resolve = stubResolver({ 'localhost.': ['93.184.216.34'], localhost: ['93.184.216.34'], 'foo.localhost.': ['93.184.216.34'] });
      await expect(new EndpointSet({ guard, resolve }).vet(url)).rejects.toThrow(EndpointRefusedError);
      expect(resolve.asked).toEqual([]);
    }
  });
});

describe('endpoints that must stay allowed', () => {
  const guard = new AddressGuard();

  it.each(ALLOWED)('%s passes when configured and is dialled at %s', async (url, address) => {
    expect(await vet(url, guard)).toBeUndefined();
    const { dialled, error } = await connectThrough(url, guard);
    expect(error).toBeUndefined();
    expect(dialled).toEqual([address]);
  });

  it('resolves a trailing-dot name as written (absolute) and presents it without the dot as the server name', async () => {
    const { dialled, servernames, asked } = await connectThrough('http://hooks.example./hook', guard);
    expect(asked).toEqual(['hooks.example.']);
    expect(dialled).toEqual(['93.184.216.34']);
    expect(servernames).toEqual(['hooks.example']);
    expect(receiver.requests.at(-1)?.headers.host).toBe('hooks.example.');
  });

  it('presents no server name for an IP literal', async () => {
    expect((await connectThrough('http://93.184.216.34/', guard)).servernames.map(Boolean)).toEqual([false]); // undici's null
  });
});

describe('the allow-list and the embedded IPv4 forms', () => {
  // [allowed CIDRs, url, the address dialled, or undefined when refused]
  const cases: [string[], string, string | undefined][] = [
    [['127.0.0.0/8'], 'http://127.0.0.1/', '127.0.0.1'],
    // IPv4-mapped is the same socket destination as the IPv4 address: the IPv4 allow-list applies (deliberate).
    [['127.0.0.0/8'], 'http://[::ffff:127.0.0.1]/', '::ffff:7f00:1'],
    [['127.0.0.0/8'], 'http://localhost/', '127.0.0.1'],
    [['127.0.0.0/8'], 'http://foo.localhost./', '127.0.0.1'],
    [['::1/128'], 'http://localhost/', '::1'],
    [['127.0.0.0/8', '::1/128'], 'http://localhost./', '127.0.0.1'],
    // Every other embedded form stays refused: an IPv4 allow-list entry does not open it.
    [['127.0.0.0/8'], 'http://[::1]/', undefined],
    [['127.0.0.0/8'], 'http://[::127.0.0.1]/', undefined],
    [['127.0.0.0/8'], 'http://[::ffff:0:127.0.0.1]/', undefined],
    [['127.0.0.0/8'], 'http://[64:ff9b::7f00:1]/', undefined],
    [['127.0.0.0/8'], 'http://[64:ff9b:1::7f00:1]/', undefined],
    [['127.0.0.0/8'], 'http://[2002:7f00:1::]/', undefined],
    [['127.0.0.0/8'], 'http://[2001::80ff:fffe]/', undefined],
    [['127.0.0.0/8'], 'http://169.254.169.254/', undefined],
    [['169.254.0.0/16'], 'http://[64:ff9b::a9fe:a9fe]/', undefined],
    // ... unless the IPv6 form itself is allowed.
    [['64:ff9b::/96'], 'http://[64:ff9b::7f00:1]/', '64:ff9b::7f00:1'],
    [['2002::/16'], 'http://[2002:7f00:1::]/', '2002:7f00:1::'],
    [['::ffff:7f00:0/104'], 'http://[::ffff:127.0.0.1]/', '::ffff:7f00:1'],
    // An allowed CIDR covers its own family only.
    [['::/0'], 'http://10.0.0.1/', undefined],
    [['::/0'], 'http://[fd00::1]/', 'fd00::1'],
    [['0.0.0.0/0'], 'http://[::ffff:0:10.0.0.1]/', undefined],
    [['10.0.0.0/8'], 'http://inward.example/', '93.184.216.34'],
  ];

  it.each(cases)('with %j, %s → %s', async (allowed, url, address) => {
    const guard = new AddressGuard(allowed);
    const configured = await vet(url, guard);
    const { dialled, error } = await connectThrough(url, guard);
    if (address === undefined) {
      expect(configured).toBeInstanceOf(EndpointRefusedError);
      expect((error as HttpRequestError).cause).toBeInstanceOf(EndpointRefusedError);
      expect(dialled).toEqual([]);
    } else {
      expect(configured).toBeUndefined();
      expect(error).toBeUndefined();
      expect(dialled).toEqual([address]);
    }
  });
});
