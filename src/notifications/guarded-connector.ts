import { isIP } from 'node:net';
import type { buildConnector } from 'undici';
import { EndpointUnresolvedError, systemResolver, type AddressGuard, type Resolver } from './address-guard.ts';

/**
 * Wraps an undici connector with the SSRF guard, at connect time: the host is resolved once (a `localhost` name is
 * loopback and never resolved), every address is checked, and the connection goes to exactly the first of the checked
 * addresses (TLS still verifies the certificate against the host name), so a DNS answer that changes between check
 * and connect — rebinding — cannot reach a refused range. If any address is refused the attempt fails with
 * `EndpointRefusedError` and nothing is dialled; a name with no address fails with `EndpointUnresolvedError`.
 */
export function guardedConnector(guard: AddressGuard, dial: buildConnector.connector, resolve: Resolver = systemResolver): buildConnector.connector {
  return (options, callback) => {
    const host = options.hostname.replace(/^\[(.*)\]$/, '$1');
    // The server name (SNI, certificate check) is the host name without its trailing dots (RFC 6066 section 3); the
    // resolver gets the name as written, since a trailing dot keeps the resolver's search list out.
    const given = options.servername ?? (isIP(host) ? undefined : host);
    const servername = given?.replace(/\.+$/, '') || undefined;
    guard.addresses(host, resolve).then(
      ([address]) => {
        if (address === undefined) return callback(new EndpointUnresolvedError(host), null);
        try {
          dial({ ...options, hostname: address, ...(servername !== undefined && { servername }) }, callback);
        } catch (error) {
          callback(error as Error, null);
        }
      },
      (error: Error) => callback(error, null),
    );
  };
}
