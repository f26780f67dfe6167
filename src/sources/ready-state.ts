import { InvalidSpecError } from '../api/notification-endpoint.ts';
import { EndpointRefusedError } from '../notifications/address-guard.ts';
import { EndpointConfigError } from '../notifications/errors.ts';
import { InvalidSecretError, SecretNotFoundError } from './endpoint-config.ts';
import { NoRepositoryGrantError } from './repository-grant.ts';
import type { ReadyState } from './source.ts';

/**
 * The Ready condition an endpoint gets when configuring it failed with `error` (api.md §2 reasons), or
 * undefined for an error that is not about the endpoint (an API failure: the caller retries).
 */
export function readyStateForError(error: unknown, origin?: string): ReadyState | undefined {
  const at = origin !== undefined ? { origin } : {};
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof SecretNotFoundError) return { ready: false, reason: 'SecretNotFound', message, ...at };
  if (error instanceof EndpointRefusedError) return { ready: false, reason: 'EndpointRefused', message, ...at };
  if (error instanceof NoRepositoryGrantError) return { ready: false, reason: 'NoRepositoryGrant', message, ...at };
  if (error instanceof InvalidSpecError || error instanceof InvalidSecretError || error instanceof EndpointConfigError) {
    return { ready: false, reason: 'InvalidSpec', message, ...at };
  }
  return undefined;
}
