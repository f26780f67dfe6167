import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AddressGuard, EndpointRefusedError, type Resolver } from '../../src/notifications/address-guard.ts';
import { Endpoint, endpointConfig } from '../../src/notifications/endpoint.ts';
import { HttpSink } from '../../src/notifications/http-sink.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import type { buildConnector } from 'undici';
import { TestReceiver } from '../support/receiver.ts';

describe('AddressGuard', () => {
  const guard = new AddressGuard();
  it.each([
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['::ffff:169.254.169.254', 'link-local (cloud metadata)'],
    ['::ffff:a9fe:a9fe', 'link-local (cloud metadata)'],
    ['64:ff9b::169.254.169.254', 'link-local (cloud metadata)'],
    ['fd00:ec2::254', 'unique local (private)'],
    ['127.0.0.1', 'loopback'],
    ['127.8.9.10', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.20.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['100.100.100.200', 'shared (carrier-grade NAT) address space'],
    ['0.0.0.0', '"this network"'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
  ])('refuses %s (%s)', (address, range) => {
    expect(guard.refusal(address)).toBe(range);
    expect(() => guard.assert(address)).toThrow(EndpointRefusedError);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])('lets %s through', (address) => {
    expect(guard.refusal(address)).toBeUndefined();
  });

  it('lets allowed CIDRs through, and only those', () => {
    const allowing = new AddressGuard(['127.0.0.0/8', 'fd00::/8']);
    expect(allowing.refusal('127.0.0.1')).toBeUndefined();
    expect(allowing.refusal('::ffff:127.0.0.1')).toBeUndefined();
    expect(allowing.refusal('fd00:ec2::254')).toBeUndefined();
    expect(allowing.refusal('10.0.0.1')).toBe('private');
    expect(allowing.refusal('169.254.169.254')).toBe('link-local (cloud metadata)');
  });

  it('checks a URL: IP literals directly, names through the resolver (every address must pass)', async () => {
    const resolver = (answers: string[]): Resolver => async () => answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    await expect(guard.checkUrl('http://169.254.169.254/latest/meta-data')).rejects.toMatchObject({ code: 'ERR_ENDPOINT_REFUSED' });
    await expect(guard.checkUrl('http://[::ffff:169.254.169.254]/')).rejects.toThrow(/link-local/);
    await expect(guard.checkUrl('https://hooks.example/x', resolver(['93.184.216.34']))).resolves.toBeUndefined();
    await expect(guard.checkUrl('https://inward.example/x', resolver(['93.184.216.34', '10.0.0.5']))).rejects.toThrow(/10\.0\.0\.5 is private/);
  });
});

describe('the guard at connect time (nothing is ever dialled outside loopback)', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => {});
  });

  // A dialler that records the address it was asked for and connects to the loopback receiver instead, so the
  // request can complete while no packet goes anywhere else, whatever the guard decides.
  async function recordingDialer(): Promise<{ dial: buildConnector.connector; targets: string[]; receiver: TestReceiver }> {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const port = Number(new URL(receiver.url).port);
    const targets: string[] = [];
    const dial: buildConnector.connector = (options, callback) => {
      targets.push(options.hostname);
      const socket: Socket = netConnect({ host: '127.0.0.1', port }, () => callback(null, socket));
      socket.once('error', (error) => callback(error, null));
    };
    return { dial, targets, receiver };
  }

  const queued: QueuedEvent[] = [{ id: 'e1', json: '{"id":"e1","action":"push","target":{}}', acceptedAt: 0 }];

  it('refuses a name that resolves to a private address, without dialling', async () => {
    const { dial, targets } = await recordingDialer();
    const sink = new HttpSink({ url: 'http://inward.example/hook', timeoutMs: 1000, dial, guard: new AddressGuard(), resolve: async () => [{ address: '10.0.0.5', family: 4 }] });
    cleanups.push(() => sink.close());
    const error = await sink.write(queued).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
    expect((error as Error).message).toContain('10.0.0.5 is private');
    expect(targets).toEqual([]);
  });

  it('dials exactly the address it checked, so a rebinding DNS answer cannot slip in', async () => {
    const { dial, targets, receiver } = await recordingDialer();
    const answers = ['93.184.216.34', '169.254.169.254'];
    let lookups = 0;
    const resolve: Resolver = async () => [{ address: answers[lookups++] ?? '169.254.169.254', family: 4 }];
    const sink = new HttpSink({ url: 'http://rebind.example/hook', timeoutMs: 1000, dial, guard: new AddressGuard(), resolve });
    cleanups.push(() => sink.close());
    await sink.write(queued);
    expect(targets).toEqual(['93.184.216.34']);
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
});
