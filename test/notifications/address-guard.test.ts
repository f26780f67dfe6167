import { afterEach, describe, expect, it } from 'vitest';
import { AddressGuard, EndpointRefusedError, EndpointUnresolvedError, isLocalhostName, type Resolver } from '../../src/notifications/address-guard.ts';
import { Endpoint, endpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { NotifierError } from '../../src/notifications/errors.ts';
import { HttpSink } from '../../src/notifications/http-sink.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { TestReceiver } from '../support/receiver.ts';
import { recordingDialer as recordingDialerTo, stubResolver } from './guard-doubles.ts';

describe('AddressGuard', () => {
  const guard = new AddressGuard();
  it.each([
    ['169.254.169.254', 'link-local', 'Link Local', '169.254.0.0/16'],
    ['::ffff:169.254.169.254', 'link-local', 'Link Local', '169.254.0.0/16'],
    ['::ffff:a9fe:a9fe', 'link-local', 'Link Local', '169.254.0.0/16'],
    ['64:ff9b::169.254.169.254', 'link-local', 'Link Local', '169.254.0.0/16'],
    ['fd00:ec2::254', 'private', 'Unique-Local', 'fc00::/7'],
    ['127.0.0.1', 'loopback', 'Loopback', '127.0.0.0/8'],
    ['127.8.9.10', 'loopback', 'Loopback', '127.0.0.0/8'],
    ['::1', 'loopback', 'Loopback Address', '::1/128'],
    ['::ffff:127.0.0.1', 'loopback', 'Loopback', '127.0.0.0/8'],
    ['10.1.2.3', 'private', 'Private-Use', '10.0.0.0/8'],
    ['172.20.0.1', 'private', 'Private-Use', '172.16.0.0/12'],
    ['192.168.1.1', 'private', 'Private-Use', '192.168.0.0/16'],
    ['100.100.100.200', 'shared (carrier-grade NAT)', 'Shared Address Space', '100.64.0.0/10'],
    ['0.0.0.0', 'this host', 'This host on this network', '0.0.0.0/32'],
    ['0.0.0.1', 'this network', 'This network', '0.0.0.0/8'],
    ['::', 'unspecified', 'Unspecified Address', '::/128'],
    ['fe80::1', 'link-local', 'Link-Local Unicast', 'fe80::/10'],
    ['fe80::1%eth0', 'link-local', 'Link-Local Unicast', 'fe80::/10'],
    ['224.0.0.1', 'multicast', 'Multicast', '224.0.0.0/4'],
    ['255.255.255.255', 'broadcast', 'Limited Broadcast', '255.255.255.255/32'],
    ['192.0.2.1', 'documentation', 'Documentation (TEST-NET-1)', '192.0.2.0/24'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo', 'TEREDO', '2001::/32'],
    ['2001:4:112::1', 'anycast', 'AS112-v6', '2001:4:112::/48'],
    ['::127.0.0.1', 'IPv4-compatible (deprecated)', 'IPv4-Compatible IPv6 Address (RFC 4291)', '::/96'],
    ['not-an-address', 'not an IP address', '', ''],
  ])('refuses %s (%s, IANA %j, %s), the most specific range naming itself', (address, kind, name, cidr) => {
    expect(guard.refusal(address)).toMatchObject({ kind, name, cidr });
    expect(() => guard.assert(address)).toThrow(EndpointRefusedError);
  });

  it('says which IPv6 range an embedded IPv4 address came through', () => {
    expect(guard.refusal('64:ff9b::7f00:1')).toEqual({
      cidr: '127.0.0.0/8', kind: 'loopback', name: 'Loopback', via: { ipv4: '127.0.0.1', cidr: '64:ff9b::/96', name: 'IPv4-IPv6 Translat.' },
    });
    expect(guard.refusal('::ffff:10.0.0.1')?.via).toEqual({ ipv4: '10.0.0.1', cidr: '::ffff:0:0/96', name: 'IPv4-mapped Address' });
    expect(() => guard.assert('64:ff9b::7f00:1')).toThrow(
      'address 64:ff9b::7f00:1 is loopback ("Loopback", 127.0.0.0/8, as 127.0.0.1 embedded in "IPv4-IPv6 Translat.", 64:ff9b::/96); allow it with --allow-endpoint-cidrs',
    );
    expect(() => guard.assert('169.254.169.254')).toThrow('address 169.254.169.254 is link-local ("Link Local", 169.254.0.0/16); allow it with --allow-endpoint-cidrs');
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::5db8:d822', '64:ff9b::808:808', '2a00:1450::1'])('lets %s through', (address) => {
    expect(guard.refusal(address)).toBeUndefined();
  });

  it('lets allowed CIDRs through, and only those', () => {
    const allowing = new AddressGuard(['127.0.0.0/8', 'fd00::/8']);
    expect(allowing.refusal('127.0.0.1')).toBeUndefined();
    expect(allowing.refusal('::ffff:127.0.0.1')).toBeUndefined();
    expect(allowing.refusal('fd00:ec2::254')).toBeUndefined();
    expect(allowing.refusal('10.0.0.1')?.kind).toBe('private');
    expect(allowing.refusal('169.254.169.254')?.kind).toBe('link-local');
    expect(allowing.refusal('64:ff9b::7f00:1')?.kind).toBe('loopback'); // the translator's loopback is not ours
    expect(allowing.refusal('::127.0.0.1')?.kind).toBe('IPv4-compatible (deprecated)');
  });

  it.each([
    ['localhost', true], ['localhost.', true], ['LocalHost..', true], ['foo.localhost', true], ['a.b.LOCALHOST.', true], ['.localhost', true],
    ['localhost.example', false], ['notlocalhost', false], ['localhostx', false], ['127.0.0.1', false],
  ])('isLocalhostName(%j) is %s', (host, expected) => {
    expect(isLocalhostName(host)).toBe(expected);
  });

  it('stands for the allowed loopback addresses for a localhost name, never resolving it', async () => {
    const resolve = stubResolver({});
    await expect(guard.addresses('foo.localhost.', resolve)).rejects.toThrow('host foo.localhost. is loopback ("localhost.", 127.0.0.0/8, ::1/128)');
    await expect(new AddressGuard(['127.0.0.0/8', '::1/128']).addresses('localhost', resolve)).resolves.toEqual(['127.0.0.1', '::1']);
    await expect(new AddressGuard(['::1/128']).addresses('localhost.', resolve)).resolves.toEqual(['::1']);
    expect(resolve.asked).toEqual([]);
  });

  it('checks a URL: IP literals directly, names through the resolver (every address must pass)', async () => {
    const resolve = stubResolver({ 'hooks.example': ['93.184.216.34'], 'inward.example': ['93.184.216.34', '10.0.0.5'], 'empty.example': [] });
    await expect(guard.checkUrl('http://169.254.169.254/latest/meta-data')).rejects.toMatchObject({ code: 'ERR_ENDPOINT_REFUSED' });
    await expect(guard.checkUrl('http://[::ffff:169.254.169.254]/')).rejects.toThrow(/link-local/);
    await expect(guard.checkUrl('https://hooks.example/x', resolve)).resolves.toBeUndefined();
    await expect(guard.checkUrl('https://inward.example/x', resolve)).rejects.toThrow(/10\.0\.0\.5 is private/);
    await expect(guard.checkUrl('https://empty.example/x', resolve)).rejects.toMatchObject({ code: 'ERR_ENDPOINT_UNRESOLVED' });
    await expect(guard.checkUrl('https://unknown.example/x', resolve)).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it.each([
    [new EndpointRefusedError('10.0.0.1', { cidr: '10.0.0.0/8', kind: 'private', name: 'Private-Use' }), 'EndpointRefusedError', 'ERR_ENDPOINT_REFUSED'],
    [new EndpointUnresolvedError('x.example'), 'EndpointUnresolvedError', 'ERR_ENDPOINT_UNRESOLVED'],
  ])('%s has its name and stable code', (error, name, code) => {
    expect(error).toBeInstanceOf(NotifierError);
    expect(error).toMatchObject({ name, code });
  });

  it('a vetted name that does not resolve yet passes; a refused or localhost one does not', async () => {
    const set = new EndpointSet({ guard, resolve: stubResolver({ 'inward.example': ['10.0.0.5'] }) });
    await expect(set.vet('https://not-yet.example/')).resolves.toBeUndefined();
    await expect(set.vet('https://inward.example/')).rejects.toBeInstanceOf(EndpointRefusedError);
    await expect(set.vet('https://localhost./')).rejects.toBeInstanceOf(EndpointRefusedError);
  });
});

describe('the guard at connect time (nothing is ever dialled outside loopback)', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => {});
  });

  // Records what it is asked to dial and connects to a loopback receiver instead (see guard-doubles.ts).
  async function recordingDialer(): Promise<ReturnType<typeof recordingDialerTo> & { receiver: TestReceiver }> {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    return { ...recordingDialerTo(receiver), receiver };
  }

  const queued: QueuedEvent[] = [{ id: 'e1', json: '{"id":"e1","action":"push","target":{}}', acceptedAt: 0 }];

  it('refuses a name that resolves to a private address, without dialling', async () => {
    const { dial, dialled } = await recordingDialer();
    const sink = new HttpSink({ url: 'http://inward.example/hook', timeoutMs: 1000, dial, guard: new AddressGuard(), resolve: async () => [{ address: '10.0.0.5', family: 4 }] });
    cleanups.push(() => sink.close());
    const error = await sink.write(queued).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
    expect((error as Error).message).toContain('10.0.0.5 is private');
    expect(dialled).toEqual([]);
  });

  it('dials exactly the address it checked, so a rebinding DNS answer cannot slip in', async () => {
    const { dial, dialled, receiver } = await recordingDialer();
    const answers = ['93.184.216.34', '169.254.169.254'];
    let lookups = 0;
    const resolve: Resolver = async () => [{ address: answers[lookups++] ?? '169.254.169.254', family: 4 }];
    const sink = new HttpSink({ url: 'http://rebind.example/hook', timeoutMs: 1000, dial, guard: new AddressGuard(), resolve });
    cleanups.push(() => sink.close());
    await sink.write(queued);
    expect(dialled.map((d) => d.hostname)).toEqual(['93.184.216.34']);
    expect(receiver.requests[0]?.headers.host).toBe('rebind.example');
    expect(lookups).toBe(1);
  });

  it('refuses an IP-literal endpoint at configuration time unless allowed', () => {
    expect(() => new Endpoint('meta', endpointConfig({ url: 'http://169.254.169.254/' }), { guard: new AddressGuard() })).toThrow(EndpointRefusedError);
    expect(() => new Endpoint('v6', endpointConfig({ url: 'http://[::ffff:169.254.169.254]/' }), { guard: new AddressGuard() })).toThrow(EndpointRefusedError);
    expect(() => new Endpoint('local', endpointConfig({ url: 'http://127.0.0.1:1/' }), { guard: new AddressGuard() })).toThrow(/loopback/);
    const allowed = new Endpoint('local', endpointConfig({ url: 'http://127.0.0.1:1/' }), { guard: new AddressGuard(['127.0.0.0/8']) });
    cleanups.push(() => allowed.close({ signal: AbortSignal.abort() }));
    expect(allowed.name).toBe('local');
  });

  it('delivers to an allowed loopback receiver through the real connector', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const sink = new HttpSink({ url: receiver.url.replace('127.0.0.1', 'localhost'), timeoutMs: 1000, guard: new AddressGuard(['127.0.0.0/8', '::1/128']) });
    cleanups.push(() => sink.close());
    await sink.write(queued);
    expect(receiver.requests).toHaveLength(1);
  });

  it('delivers to foo.localhost. (which the system resolver may not know) as loopback, through the real connector', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const sink = new HttpSink({ url: receiver.url.replace('127.0.0.1', 'foo.localhost.'), timeoutMs: 1000, guard: new AddressGuard(['127.0.0.0/8']) });
    cleanups.push(() => sink.close());
    await sink.write(queued);
    expect(receiver.requests).toHaveLength(1);
  });
});
