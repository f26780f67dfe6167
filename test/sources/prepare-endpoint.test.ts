// prepareEndpoint: what both sources (the file source and the reconciler) do with a validated spec before applying
// it: Secrets read into the configuration, the URL vetted by the SSRF guard, and the Ready state it gets.
import { describe, expect, it } from 'vitest';
import { parseNotificationEndpoint, type NormalisedSpec } from '../../src/api/notification-endpoint.ts';
import { AddressGuard, EndpointRefusedError } from '../../src/notifications/address-guard.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { SecretNotFoundError, type SecretReader } from '../../src/sources/endpoint-config.ts';
import { prepareEndpoint } from '../../src/sources/prepare-endpoint.ts';
import { readyStateForError } from '../../src/sources/ready-state.ts';

function spec(fields: Record<string, unknown>): NormalisedSpec {
  return parseNotificationEndpoint({
    apiVersion: 'registry-notifier.io/v1alpha1',
    kind: 'NotificationEndpoint',
    metadata: { name: 'x' },
    spec: { url: 'http://127.0.0.1:9/hook', ...fields },
  }).spec;
}

const secrets = (data: Record<string, Record<string, string>>): SecretReader => ({
  read: (_namespace, name) => {
    const secret = data[name];
    return secret && new Map(Object.entries(secret).map(([k, v]) => [k, Buffer.from(v)]));
  },
});

const open = new EndpointSet();

describe('prepareEndpoint', () => {
  it('a spec: its configuration with the Secret values, and Ready=True/Configured', async () => {
    const prepared = await prepareEndpoint(
      spec({ headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'token', key: 'value' } } }] }),
      'ns',
      secrets({ token: { value: 'Bearer t\n' } }),
      open,
    );
    expect(prepared.config).toMatchObject({ url: 'http://127.0.0.1:9/hook', headers: [['Authorization', 'Bearer t']], disabled: false });
    expect(prepared.ready).toEqual({ ready: true, reason: 'Configured' });
  });

  it('disabled: Ready=False/Disabled with the one message both modes show', async () => {
    const prepared = await prepareEndpoint(spec({ disabled: true }), undefined, secrets({}), open);
    expect(prepared.config.disabled).toBe(true);
    expect(prepared.ready).toEqual({ ready: false, reason: 'Disabled', message: 'spec.disabled is true: events are queued, not sent' });
  });

  it('a missing Secret rejects with SecretNotFoundError (Ready reason SecretNotFound)', async () => {
    const spec1 = spec({ signing: { secretKeyRef: { name: 'signing', key: 'key' } } });
    const error = await prepareEndpoint(spec1, 'ns', secrets({}), open).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretNotFoundError);
    expect(readyStateForError(error)).toEqual({ ready: false, reason: 'SecretNotFound', message: 'Secret signing not found' });
  });

  it('a URL the SSRF guard refuses rejects with EndpointRefusedError (Ready reason EndpointRefused)', async () => {
    const guarded = new EndpointSet({ guard: new AddressGuard([]) });
    const error = await prepareEndpoint(spec({ url: 'http://169.254.169.254/latest/meta-data/' }), undefined, secrets({}), guarded).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EndpointRefusedError);
    expect(readyStateForError(error)).toMatchObject({ ready: false, reason: 'EndpointRefused' });
  });
});
