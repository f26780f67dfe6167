// One error hierarchy (undici's rule): every error class registry-notifier throws extends NotifierError, names
// itself, and carries a stable ERR_* code callers branch on; codes are unique; `cause` is kept where given.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ByteSizeError, DurationError } from '../src/api/duration.ts';
import { InvalidSpecError } from '../src/api/spec-schema.ts';
import { UsageError } from '../src/config.ts';
import { SecretPendingError } from '../src/controller/reconciler.ts';
import { DatabaseSchemaError, DatabaseUnavailableError } from '../src/database/errors.ts';
import { ConfigImportError } from '../src/import/distribution-config.ts';
import { GoDurationError } from '../src/import/go-duration.ts';
import { IngestError } from '../src/ingest/ingest-error.ts';
import { JournalDamagedError, JournalUnavailableError, JournalWriteError } from '../src/journal/journal.ts';
import { ApiTimeoutError } from '../src/k8s/deadline.ts';
import { ApiCallError } from '../src/k8s/errors.ts';
import { EndpointRefusedError, EndpointUnresolvedError } from '../src/notifications/address-guard.ts';
import {
  EndpointConfigError, HttpRequestError, HttpStatusError, NotifierError, QueueFullError, SinkClosedError, WriteAbortedError,
} from '../src/notifications/errors.ts';
import { SigningKeyError, WebhookVerificationError } from '../src/notifications/signing.ts';
import { InvalidSecretError, SecretNotFoundError } from '../src/sources/endpoint-config.ts';
import { NoRepositoryGrantError } from '../src/sources/repository-grant.ts';

const cause = new Error('the underlying error');

// One instance of every class, built as the code builds it, with the code it must carry.
const ERRORS: [NotifierError, string][] = [
  [new SinkClosedError('queue'), 'ERR_SINK_CLOSED'],
  [new WriteAbortedError(2, cause), 'ERR_WRITE_ABORTED'],
  [new HttpStatusError(503, 'Service Unavailable'), 'ERR_HTTP_STATUS'],
  [new HttpRequestError('no answer within 1000ms', cause), 'ERR_HTTP_REQUEST'],
  [new EndpointConfigError('url is not a valid absolute URL', { cause }), 'ERR_ENDPOINT_CONFIG'],
  [new QueueFullError(10, 10, 'ns/a'), 'ERR_QUEUE_FULL'],
  [new EndpointRefusedError('127.0.0.1', { cidr: '127.0.0.0/8', kind: 'loopback', name: 'Loopback' }), 'ERR_ENDPOINT_REFUSED'],
  [new EndpointUnresolvedError('hooks.example'), 'ERR_ENDPOINT_UNRESOLVED'],
  [new WebhookVerificationError('no signature'), 'ERR_WEBHOOK_VERIFICATION'],
  [new SigningKeyError('is not an Ed25519 private key'), 'ERR_SIGNING_KEY'],
  [new IngestError(503, 'QueueFull', 'full'), 'ERR_INGEST_REFUSED'],
  [new JournalWriteError('write failed', cause), 'ERR_JOURNAL_WRITE'],
  [new JournalUnavailableError('in use', cause), 'ERR_JOURNAL_UNAVAILABLE'],
  [new JournalDamagedError('quick_check: bad'), 'ERR_JOURNAL_DAMAGED'],
  [new DatabaseUnavailableError(cause), 'ERR_DATABASE_UNAVAILABLE'],
  [new DatabaseSchemaError('unknown migration 9'), 'ERR_DATABASE_SCHEMA'],
  [new ApiTimeoutError('get lease', 5000), 'ERR_API_TIMEOUT'],
  [new ApiCallError('reading Secret x', Object.assign(new Error('boom'), { statusCode: 500 })), 'ERR_API_CALL'],
  [new SecretPendingError('Secret x not found', { cause }), 'ERR_SECRET_PENDING'],
  [new SecretNotFoundError('Secret x not found'), 'ERR_SECRET_NOT_FOUND'],
  [new InvalidSecretError('half a key pair'), 'ERR_INVALID_SECRET'],
  [new NoRepositoryGrantError('team-a', undefined), 'ERR_NO_REPOSITORY_GRANT'],
  [new InvalidSpecError('spec.url', 'must be http or https'), 'ERR_INVALID_SPEC'],
  [new DurationError('"500" has no unit'), 'ERR_INVALID_DURATION'],
  [new ByteSizeError('"1XB" is not a size'), 'ERR_INVALID_BYTE_SIZE'],
  [new UsageError('no command given'), 'ERR_USAGE'],
  [new ConfigImportError('not a mapping'), 'ERR_CONFIG_IMPORT'],
  [new GoDurationError('"1y" is not a Go duration'), 'ERR_GO_DURATION'],
];

describe('every error class', () => {
  it.each(ERRORS.map(([error, code]) => [error.constructor.name, error, code] as const))('%s: a NotifierError named after its class, with its stable code', (name, error, code) => {
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(NotifierError);
    expect(error.name).toBe(name);
    expect(error.code).toBe(code);
    expect(error.code).toMatch(/^ERR_[A-Z]+(_[A-Z]+)*$/);
    expect(error.message.length).toBeGreaterThan(0);
    expect(String(error)).toBe(`${name}: ${error.message}`);
    expect(error.stack).toContain(name);
  });

  it('codes are unique: each names one kind of failure', () => {
    const codes = ERRORS.map(([, code]) => code);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('cause is kept where one is given', () => {
    expect(new WriteAbortedError(0, cause).cause).toBe(cause);
    expect(new JournalWriteError('write failed', cause).cause).toBe(cause);
    expect(new SecretPendingError('x', { cause }).cause).toBe(cause);
    expect(new ApiCallError('reading Secret x', cause).cause).toBe(cause);
  });

  it('the table above names every error class in src/ (a new class without an entry fails here)', () => {
    const declared: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts')) {
          for (const match of readFileSync(path, 'utf8').matchAll(/class (\w+) extends (\w+)/g)) {
            if (/Error$/.test(match[2]!) || /Error$/.test(match[1]!)) declared.push(`${match[1]} extends ${match[2]}`);
          }
        }
      }
    };
    walk(join(import.meta.dirname, '../src'));
    const tabled = new Set(ERRORS.map(([error]) => error.constructor.name));
    for (const line of declared) {
      const [name, , base] = line.split(' ');
      if (name === 'NotifierError') {
        expect(base).toBe('Error');
        continue;
      }
      expect(base, `${name} must extend NotifierError`).toBe('NotifierError');
      expect(tabled.has(name!), `${name} is missing from the table`).toBe(true);
    }
  });
});
