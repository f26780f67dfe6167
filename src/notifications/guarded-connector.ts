import { isIP } from 'node:net';
import type { buildConnector } from 'undici';
import type { AddressGuard, Resolver } from './address-guard.ts';
import { systemResolver } from './address-guard.ts';

/**
 * Wraps an undici connector with the SSRF guard, at connect time: the host is resolved once, every address
 * is checked, and the connection goes to exactly the address that was checked (TLS still verifies the
 * certificate against the host name), so a DNS answer that changes between check and connect — rebinding —
 * cannot reach a refused range. A refused address fails the attempt with `EndpointRefusedError`.
 */
export function guardedConnector(guard: AddressGuard, dial: buildConnector.connector, resolve: Resolver = systemResolver): buildConnector.connector {
  return (options, callback) => {
    const host = options.hostname.replace(/^\[(.*)\]$/, '$1');
    const connectTo = (address: string): void => {
      try {
        guard.assert(address);
      } catch (error) {
        callback(error as Error, null);
        return;
      }
      const servername = options.servername ?? (isIP(host) ? undefined : host);
      dial({ ...options, hostname: address, ...(servername !== undefined && { servername }) }, callback);
    };
    if (isIP(host)) return connectTo(host);
    resolve(host).then(
      (addresses) => {
        // Every address must pass, not just the one we dial: a name that also points inward is refused.
        const refused = addresses.find(({ address }) => guard.refusal(address) !== undefined);
        const first = refused ?? addresses[0];
        if (!first) return callback(new Error(`${host} has no addresses`), null);
        connectTo(first.address);
      },
      (error: Error) => callback(error, null),
    );
  };
}
