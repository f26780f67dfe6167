import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseNotificationEndpoint } from '../../src/api/notification-endpoint.ts';
import { toEndpointConfig } from '../../src/sources/endpoint-config.ts';
import { FileSecretReader, secretEnvName } from '../../src/sources/file-secrets.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function secretsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'rn-secrets-'));
  dirs.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

describe('standalone secrets', () => {
  it('names the variable after the Secret and key, upper-cased, other characters as _', () => {
    expect(secretEnvName('receiver-token', 'token')).toBe('REGISTRY_NOTIFIER_SECRET_RECEIVER_TOKEN_TOKEN');
    expect(secretEnvName('ca', 'ca.crt')).toBe('REGISTRY_NOTIFIER_SECRET_CA_CA_CRT');
  });

  it('reads a key from its file first, else from its variable; neither means the Secret does not exist', () => {
    const dir = secretsDir({ 'hook/token': 'from-file\n' });
    const env = {
      REGISTRY_NOTIFIER_SECRET_HOOK_TOKEN: 'from-env',
      REGISTRY_NOTIFIER_SECRET_HOOK_EXTRA: 'only-env',
      REGISTRY_NOTIFIER_SECRET_SIGNING_SECRET: 'whsec_c2VjcmV0',
    };
    const reader = new FileSecretReader(dir, env);
    expect(reader.read(undefined, 'hook')?.get('token')?.toString()).toBe('from-file\n');
    expect(reader.read(undefined, 'hook')?.get('extra')?.toString()).toBe('only-env');
    expect(reader.read(undefined, 'signing')?.get('secret')?.toString()).toBe('whsec_c2VjcmV0');
    expect(reader.read(undefined, 'signing')?.get('other')).toBeUndefined();
    expect(reader.read(undefined, 'absent')).toBeUndefined();
    expect(new FileSecretReader(undefined, {}).read(undefined, 'hook')).toBeUndefined();
  });

  it('resolves a header and a signing secret from the environment alone', () => {
    const { spec } = parseNotificationEndpoint({
      apiVersion: 'registry-notifier.io/v1alpha1',
      kind: 'NotificationEndpoint',
      metadata: { name: 'env-only' },
      spec: {
        url: 'https://hooks.example/x',
        headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'hook-token', key: 'token' } } }],
        signing: { secretKeyRef: { name: 'signing', key: 'secret' } },
      },
    });
    const reader = new FileSecretReader(undefined, {
      REGISTRY_NOTIFIER_SECRET_HOOK_TOKEN_TOKEN: 'Bearer abc',
      REGISTRY_NOTIFIER_SECRET_SIGNING_SECRET: 'whsec_c2VjcmV0',
    });
    const config = toEndpointConfig(spec, undefined, reader);
    expect(config.headers).toEqual([['Authorization', 'Bearer abc']]);
    expect(config.signingKey?.toString()).toBe('secret');
  });
});
