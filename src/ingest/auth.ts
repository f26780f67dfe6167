import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Checks an `Authorization` header against the configured token in constant time: `Bearer <token>`, or Basic
 * auth whose password is the token (any user name), for registries configured that way. Without a token
 * (undefined) every request passes; an empty token is refused with a TypeError, since it would let in anyone
 * who sends Basic auth with an empty password.
 */
export function createAuthenticator(token: string | undefined): (authorization: string | undefined) => boolean {
  if (token === undefined) return () => true;
  if (token === '') throw new TypeError('the ingest token is empty; pass undefined for no authentication');
  // Comparing fixed-length digests keeps the time independent of where the strings differ and of their length.
  const expected = digest(token);
  const matches = (candidate: string): boolean => timingSafeEqual(digest(candidate), expected);
  return (authorization) => {
    if (authorization === undefined) return false;
    const space = authorization.indexOf(' ');
    if (space < 0) return false;
    const scheme = authorization.slice(0, space).toLowerCase();
    const credentials = authorization.slice(space + 1).trim();
    if (scheme === 'bearer') return matches(credentials);
    if (scheme === 'basic') {
      const decoded = Buffer.from(credentials, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return colon >= 0 && matches(decoded.slice(colon + 1));
    }
    return false;
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
