import type { NormalisedSpec } from '../api/notification-endpoint.ts';
import type { EndpointConfig } from '../notifications/endpoint.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import { toEndpointConfig, type SecretReader } from './endpoint-config.ts';
import type { ReadyState } from './source.ts';

/** A spec made ready for the engine: its configuration, and the Ready state the endpoint has once it is applied. */
export interface PreparedEndpoint {
  config: EndpointConfig;
  ready: ReadyState;
}

// The Ready state of an endpoint whose configuration was applied: Configured, or Disabled (present, paused).
function appliedState(spec: Pick<NormalisedSpec, 'disabled'>): ReadyState {
  return spec.disabled
    ? { ready: false, reason: 'Disabled', message: 'spec.disabled is true: events are queued, not sent' }
    : { ready: true, reason: 'Configured' };
}

/**
 * What both sources do with a validated spec before applying it (api.md sections 1-2): reads the Secrets it
 * references into the engine's configuration and checks the URL against the SSRF guard. Rejects with
 * `SecretNotFoundError`, `InvalidSecretError` or `EndpointRefusedError` (`readyStateForError` turns them into
 * a Ready state); never puts a secret value in a message. Applying is the caller's step.
 */
export async function prepareEndpoint(
  spec: NormalisedSpec,
  namespace: string | undefined,
  secrets: SecretReader,
  endpoints: Pick<EndpointSet, 'vet'>,
): Promise<PreparedEndpoint> {
  const config = toEndpointConfig(spec, namespace, secrets);
  await endpoints.vet(config.url);
  return { config, ready: appliedState(spec) };
}
