// Test doubles for the SSRF guard: a dialler that records what it is asked to dial and connects to a loopback
// receiver instead, and a resolver answering from a table. With both, nothing is ever dialled or resolved outside
// the test, whatever the guard decides.
import { connect as netConnect, type Socket } from 'node:net';
import type { buildConnector } from 'undici';
import type { Resolver } from '../../src/notifications/address-guard.ts';
import type { TestReceiver } from '../support/receiver.ts';

/** What the guarded connector asked the dialler for. */
export interface Dialled {
  hostname: string;
  servername: string | undefined;
}

/** A connector that records every dial in `dialled` and connects to `receiver` (on 127.0.0.1) instead. */
export function recordingDialer(receiver: TestReceiver): { dial: buildConnector.connector; dialled: Dialled[] } {
  const port = Number(new URL(receiver.url).port);
  const dialled: Dialled[] = [];
  const dial: buildConnector.connector = (options, callback) => {
    dialled.push({ hostname: options.hostname, servername: options.servername });
    const socket: Socket = netConnect({ host: '127.0.0.1', port }, () => callback(null, socket));
    socket.once('error', (error) => callback(error, null));
  };
  return { dial, dialled };
}

/** A resolver answering from `answers` (name as asked, trailing dot included); any other name fails with ENOTFOUND. */
export function stubResolver(answers: Record<string, string[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (hostname: string): Promise<{ address: string; family: number }[]> => {
    asked.push(hostname);
    const addresses = answers[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { asked });
}
