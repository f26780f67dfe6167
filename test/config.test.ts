import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkServeConfig, envName, parseCommand, SERVE_FLAGS, serveHelp, UsageError, type Command, type ServeConfig } from '../src/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** `serve` in standalone mode (the one flag it cannot do without) plus `args`, with only `env` in the environment. */
function serve(args: string[] = [], env: Record<string, string> = {}): ServeConfig {
  const withEndpoints = args.includes('--endpoints') || args.includes('--kubernetes') || 'REGISTRY_NOTIFIER_ENDPOINTS' in env || 'REGISTRY_NOTIFIER_KUBERNETES' in env;
  const command = parseCommand(['serve', ...(withEndpoints ? [] : ['--endpoints', 'endpoints.yaml']), ...args], env);
  if (command.command !== 'serve') throw new Error(`got ${command.command}`);
  return command;
}

function usageError(run: () => unknown): UsageError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    const usage = error as UsageError;
    expect(usage.code).toBe('ERR_USAGE');
    expect(usage.name).toBe('UsageError');
    expect(usage.message).not.toContain('\n');
    return usage;
  }
  throw new Error('no UsageError was thrown');
}

const DEFAULTS: ServeConfig = {
  command: 'serve',
  listen: { host: undefined, port: 8080 },
  metricsListen: { host: undefined, port: 9090 },
  endpoints: ['endpoints.yaml'],
  kubernetes: false,
  namespaces: [],
  tenancy: 'none',
  statusIntervalMs: 10_000,
  secretsDir: undefined,
  secretEnv: {},
  ingestToken: undefined,
  maxBodySize: 1024 * 1024,
  maxPendingPerEndpoint: 100_000,
  maxPending: 200_000,
  queueDir: undefined,
  allowEndpointCidrs: [],
  shutdownGraceMs: 25_000,
  logLevel: 'info',
  databaseUrl: undefined,
  replicaId: hostname(),
  leaseDurationMs: 15_000,
  leaderElectionLease: { namespace: 'default', name: 'registry-notifier' },
  statusWritesPerSecond: 20,
  endpointHistograms: true,
};

// Every flag of api.md §3 with a value other than its default, the field it sets, and another valid value.
const FLAGS: [flag: string, value: string, field: keyof ServeConfig, expected: unknown, other: string][] = [
  ['listen', '127.0.0.1:18080', 'listen', { host: '127.0.0.1', port: 18080 }, ':1'],
  ['metrics-listen', '[::1]:19090', 'metricsListen', { host: '::1', port: 19090 }, ':2'],
  ['namespaces', 'team-a, team-b,', 'namespaces', ['team-a', 'team-b'], 'other'],
  ['status-rate', '5', 'statusWritesPerSecond', 5, '50'],
  ['endpoint-histograms', 'false', 'endpointHistograms', false, 'true'],
  ['leader-election-lease', 'registry/notifier-leader', 'leaderElectionLease', { namespace: 'registry', name: 'notifier-leader' }, 'other/name'],
  ['status-interval', '2m30s', 'statusIntervalMs', 150_000, '1s'],
  ['secrets-dir', '/run/secrets', 'secretsDir', '/run/secrets', '/other'],
  ['max-body-size', '512KiB', 'maxBodySize', 512 * 1024, '1000'],
  ['max-pending-per-endpoint', '50', 'maxPendingPerEndpoint', 50, '51'],
  ['max-pending', '70', 'maxPending', 70, '71'],
  ['queue-dir', '/var/lib/registry-notifier', 'queueDir', '/var/lib/registry-notifier', '/other'],
  ['allow-endpoint-cidrs', '127.0.0.0/8,fd00::/8', 'allowEndpointCidrs', ['127.0.0.0/8', 'fd00::/8'], '10.0.0.0/8'],
  ['shutdown-grace', '1.5s', 'shutdownGraceMs', 1500, '1m'],
  ['log-level', 'debug', 'logLevel', 'debug', 'error'],
  ['database-url', 'postgres://notifier:s3cret@db.example:5432/notifier?sslmode=require', 'databaseUrl', 'postgres://notifier:s3cret@db.example:5432/notifier?sslmode=require', 'postgresql://other@db/other'],
  ['replica-id', 'registry-notifier-7d9f-x2', 'replicaId', 'registry-notifier-7d9f-x2', 'other-replica'],
  ['lease-duration', '30s', 'leaseDurationMs', 30_000, '5s'],
];


describe('boolean environment twins and paths', () => {
  it('reads 1/0, true/false, yes/no and refuses anything else with the variable named', () => {
    expect((parseCommand(['serve'], { REGISTRY_NOTIFIER_KUBERNETES: 'TRUE' }) as ServeConfig).kubernetes).toBe(true);
    expect(() => parseCommand(['serve', '--endpoints', 'e.yaml'], { REGISTRY_NOTIFIER_KUBERNETES: 'no' })).not.toThrow();
    expect(() => parseCommand(['serve', '--endpoints', 'e.yaml'], { REGISTRY_NOTIFIER_KUBERNETES: 'on' })).toThrow(
      'REGISTRY_NOTIFIER_KUBERNETES: "on" is not true or false (1/0, true/false, yes/no)',
    );
  });

  it('checkServeConfig refuses an --endpoints path that does not exist', () => {
    const config = parseCommand(['serve', '--endpoints', '/nonexistent/e.yaml'], {}) as ServeConfig;
    expect(() => checkServeConfig(config)).toThrow('--endpoints: /nonexistent/e.yaml does not exist');
    expect(() => checkServeConfig(parseCommand(['serve', '--endpoints', import.meta.dirname], {}) as ServeConfig)).not.toThrow();
  });
});

describe('standalone secret values from the environment', () => {
  it('captures only REGISTRY_NOTIFIER_SECRET_* variables, frozen', () => {
    const config = parseCommand(['serve', '--endpoints', 'e.yaml'], {
      REGISTRY_NOTIFIER_SECRET_HOOK_TOKEN_TOKEN: 'Bearer t',
      REGISTRY_NOTIFIER_LOG_LEVEL: 'debug',
      HOME: '/root',
    }) as ServeConfig;
    expect(config.secretEnv).toEqual({ REGISTRY_NOTIFIER_SECRET_HOOK_TOKEN_TOKEN: 'Bearer t' });
    expect(Object.isFrozen(config.secretEnv)).toBe(true);
  });
});

describe('parseCommand serve', () => {
  it('gives every flag its api.md default', () => {
    expect(serve()).toEqual(DEFAULTS);
  });

  it('covers every serve flag in these tests', () => {
    const covered = new Set([...FLAGS.map(([flag]) => flag), 'endpoints', 'kubernetes', 'ingest-token-file', 'tenancy']);
    expect(new Set(Object.keys(SERVE_FLAGS))).toEqual(covered);
  });

  it.each(FLAGS)('--%s %s', (flag, value, field, expected) => {
    expect(serve([`--${flag}`, value])[field]).toEqual(expected);
    expect(serve([`--${flag}=${value}`])[field]).toEqual(expected);
  });

  it.each(FLAGS)('REGISTRY_NOTIFIER_… twin of --%s', (flag, value, field, expected) => {
    const name = envName(flag);
    expect(name).toBe(`REGISTRY_NOTIFIER_${flag.toUpperCase().replaceAll('-', '_')}`);
    expect(serve([], { [name]: value })[field]).toEqual(expected);
  });

  it.each(FLAGS)('--%s beats its variable', (flag, value, field, expected, other) => {
    const fromEnv = serve([], { [envName(flag)]: other })[field];
    expect(fromEnv).not.toEqual(expected);
    expect(serve([`--${flag}`, value], { [envName(flag)]: other })[field]).toEqual(expected);
  });

  it('--tenancy namespace or none (default none), or its variable; the flag beats it', () => {
    expect(serve(['--kubernetes']).tenancy).toBe('none');
    expect(serve(['--kubernetes', '--tenancy', 'namespace']).tenancy).toBe('namespace');
    expect(serve(['--kubernetes', '--tenancy=namespace']).tenancy).toBe('namespace');
    expect(serve(['--kubernetes'], { REGISTRY_NOTIFIER_TENANCY: 'namespace' }).tenancy).toBe('namespace');
    expect(serve(['--kubernetes', '--tenancy', 'none'], { REGISTRY_NOTIFIER_TENANCY: 'namespace' }).tenancy).toBe('none');
    expect(serve(['--tenancy', 'none']).tenancy).toBe('none'); // standalone, spelled out
    expect(usageError(() => serve(['--kubernetes', '--tenancy', 'namespaces'])).message).toBe('--tenancy: "namespaces" is not one of none, namespace');
  });

  it('--tenancy namespace without --kubernetes is refused with one line saying why, whichever way it is given', () => {
    const why = '--tenancy namespace needs --kubernetes: standalone endpoints have no Namespace to be granted repositories';
    expect(usageError(() => serve(['--tenancy', 'namespace'])).message).toBe(why);
    expect(usageError(() => serve([], { REGISTRY_NOTIFIER_TENANCY: 'namespace' })).message).toBe(why);
  });

  it('reads listen addresses in every documented form', () => {
    expect(serve(['--listen', ':8081']).listen).toEqual({ host: undefined, port: 8081 });
    expect(serve(['--listen', 'localhost:0']).listen).toEqual({ host: 'localhost', port: 0 });
    expect(serve(['--listen', '0.0.0.0:80']).listen).toEqual({ host: '0.0.0.0', port: 80 });
    expect(serve(['--listen', '[::]:65535']).listen).toEqual({ host: '::', port: 65535 });
  });

  it('takes --endpoints repeatedly, or its variable as a comma-separated list; a flag beats it', () => {
    expect(serve(['--endpoints', 'a.yaml', '--endpoints', 'dir/']).endpoints).toEqual(['a.yaml', 'dir/']);
    expect(serve([], { REGISTRY_NOTIFIER_ENDPOINTS: 'a.yaml,b.yaml' }).endpoints).toEqual(['a.yaml', 'b.yaml']);
    expect(serve(['--endpoints', 'flag.yaml'], { REGISTRY_NOTIFIER_ENDPOINTS: 'env.yaml' }).endpoints).toEqual(['flag.yaml']);
  });

  it('takes --kubernetes, or its variable when it says yes', () => {
    expect(serve(['--kubernetes'])).toMatchObject({ kubernetes: true, endpoints: [] });
    for (const yes of ['1', 'true', 'TRUE', 'yes']) expect(serve([], { REGISTRY_NOTIFIER_KUBERNETES: yes }).kubernetes).toBe(true);
    const no = usageError(() => serve([], { REGISTRY_NOTIFIER_KUBERNETES: 'false' }));
    expect(no.message).toMatch(/--endpoints.*--kubernetes/);
  });

  it('--endpoint-histograms takes exactly true or false (default true), or its variable; anything else is one line naming the flag', () => {
    expect(serve().endpointHistograms).toBe(true);
    expect(serve(['--endpoint-histograms=true']).endpointHistograms).toBe(true);
    expect(serve(['--endpoint-histograms=false']).endpointHistograms).toBe(false);
    expect(serve([], { REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS: 'false' }).endpointHistograms).toBe(false);
    expect(serve([], { REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS: '' }).endpointHistograms).toBe(true); // empty counts as unset
    for (const bad of ['False', '0', 'no', 'off', '']) {
      expect(usageError(() => serve([`--endpoint-histograms=${bad}`])).message).toBe(`--endpoint-histograms: "${bad}" is not true or false`);
    }
  });

  it('treats an empty variable as unset', () => {
    expect(serve([], { REGISTRY_NOTIFIER_SECRETS_DIR: '', REGISTRY_NOTIFIER_QUEUE_DIR: '', REGISTRY_NOTIFIER_LISTEN: '' })).toEqual(DEFAULTS);
  });
});

describe('the ingest token', () => {
  it('REGISTRY_NOTIFIER_INGEST_TOKEN holds the value itself (trimmed)', () => {
    expect(serve([], { REGISTRY_NOTIFIER_INGEST_TOKEN: '  s3cret\n' }).ingestToken).toBe('s3cret');
  });

  it.each([['empty', ''], ['blank', ' \n\t']])('refuses to start when REGISTRY_NOTIFIER_INGEST_TOKEN is set but %s (auth would be off by accident)', (_name, value) => {
    expect(() => serve([], { REGISTRY_NOTIFIER_INGEST_TOKEN: value })).toThrow(/REGISTRY_NOTIFIER_INGEST_TOKEN is set but empty/);
    expect(() => parseCommand(['replay', '--endpoint', 'x'], { REGISTRY_NOTIFIER_INGEST_TOKEN: value })).toThrow(UsageError);
  });

  it('--ingest-token-file reads the file, trimmed', () => {
    const path = file('token', '  from-file\n');
    expect(serve(['--ingest-token-file', path]).ingestToken).toBe('from-file');
    expect(serve([], { REGISTRY_NOTIFIER_INGEST_TOKEN_FILE: path }).ingestToken).toBe('from-file');
  });

  it('the file flag beats the value variable', () => {
    const path = file('token2', 'from-file');
    expect(serve(['--ingest-token-file', path], { REGISTRY_NOTIFIER_INGEST_TOKEN: 'from-env' }).ingestToken).toBe('from-file');
  });

  it.each([
    ['a missing file', join(dir, 'does-not-exist'), /--ingest-token-file: cannot read .*ENOENT/],
    ['an empty file', file('empty', ''), /--ingest-token-file: .* is empty/],
    ['a file of blanks', file('blank', ' \n\t\n'), /--ingest-token-file: .* is empty/],
    ['a directory', dir, /--ingest-token-file: cannot read .*EISDIR/],
  ])('refuses %s', (_name, path, message) => {
    expect(usageError(() => serve(['--ingest-token-file', path])).message).toMatch(message);
  });
});

describe('bad usage', () => {
  it.each([
    ['a bare-number duration', ['--status-interval', '500'], '--status-interval'],
    ['a duration with a bad unit', ['--shutdown-grace', '5sec'], '--shutdown-grace'],
    ['a negative duration', ['--shutdown-grace=-1s'], '--shutdown-grace'],
    ['a byte size with a bad unit', ['--max-body-size', '1mb'], '--max-body-size'],
    ['a zero byte size', ['--max-body-size', '0'], '--max-body-size'],
    ['a negative count', ['--max-pending=-3'], '--max-pending'],
    ['a zero count', ['--max-pending-per-endpoint', '0'], '--max-pending-per-endpoint'],
    ['a fractional count', ['--max-pending', '1.5'], '--max-pending'],
    ['a count in words', ['--max-pending-per-endpoint', 'many'], '--max-pending-per-endpoint'],
    ['a CIDR without prefix', ['--allow-endpoint-cidrs', '10.0.0.0'], '--allow-endpoint-cidrs'],
    ['a CIDR prefix too long', ['--allow-endpoint-cidrs', '127.0.0.0/8,10.0.0.0/33'], '--allow-endpoint-cidrs'],
    ['an IPv6 CIDR prefix too long', ['--allow-endpoint-cidrs', 'fd00::/129'], '--allow-endpoint-cidrs'],
    ['a CIDR that is no address', ['--allow-endpoint-cidrs', 'intranet/8'], '--allow-endpoint-cidrs'],
    ['a listen address without port', ['--listen', '8080'], '--listen'],
    ['a listen port out of range', ['--listen', ':65536'], '--listen'],
    ['an unbracketed IPv6 listen address', ['--metrics-listen', '::1:9090'], '--metrics-listen'],
    ['a listen address with an empty port', ['--metrics-listen', 'localhost:'], '--metrics-listen'],
    ['an unknown log level', ['--log-level', 'verbose'], '--log-level'],
    ['an unknown flag', ['--bogus', 'x'], '--bogus'],
    ['a flag without its value', ['--listen'], '--listen'],
    ['a value given to a boolean flag', ['--kubernetes=yes'], '--kubernetes'],
    ['endpoint histograms neither true nor false', ['--endpoint-histograms', 'yes'], '--endpoint-histograms'],
    ['endpoint histograms without a value', ['--endpoint-histograms'], '--endpoint-histograms'],
  ])('%s → UsageError naming the flag', (_name, args, flag) => {
    expect(usageError(() => serve(args)).message).toContain(flag);
  });

  it.each([
    ['REGISTRY_NOTIFIER_STATUS_INTERVAL', '500', '--status-interval'],
    ['REGISTRY_NOTIFIER_MAX_BODY_SIZE', 'lots', '--max-body-size'],
    ['REGISTRY_NOTIFIER_ALLOW_ENDPOINT_CIDRS', '10.0.0.0/40', '--allow-endpoint-cidrs'],
    ['REGISTRY_NOTIFIER_LOG_LEVEL', 'loud', '--log-level'],
    ['REGISTRY_NOTIFIER_LISTEN', 'nowhere', '--listen'],
    ['REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS', 'off', '--endpoint-histograms'],
  ])('a bad %s → UsageError naming the flag', (name, value, flag) => {
    expect(usageError(() => serve([], { [name]: value })).message).toContain(flag);
  });

  it('refuses --endpoints with --kubernetes, and neither', () => {
    expect(usageError(() => parseCommand(['serve', '--endpoints', 'a.yaml', '--kubernetes'], {})).message).toMatch(/--endpoints.*--kubernetes/);
    expect(usageError(() => parseCommand(['serve', '--kubernetes'], { REGISTRY_NOTIFIER_ENDPOINTS: 'a.yaml' })).message).toMatch(/--endpoints.*--kubernetes/);
    expect(usageError(() => parseCommand(['serve'], {})).message).toMatch(/--endpoints.*--kubernetes/);
  });

  it('refuses positional arguments and unknown commands', () => {
    expect(usageError(() => parseCommand(['serve', '--endpoints', 'a.yaml', 'extra'], {})).message).toContain('extra');
    expect(usageError(() => parseCommand(['srve'], {})).message).toContain('srve');
  });
});

describe('the parsed configuration', () => {
  it('is deeply frozen', () => {
    const config = serve(['--allow-endpoint-cidrs', '10.0.0.0/8', '--namespaces', 'a'], {});
    const parts: object[] = [config, config.listen, config.metricsListen, config.endpoints, config.namespaces, config.allowEndpointCidrs];
    for (const part of parts) expect(Object.isFrozen(part)).toBe(true);
    expect(() => ((config as { maxPending: number }).maxPending = 1)).toThrow(TypeError);
    expect(() => (config.listen as { port: number }).port = 1).toThrow(TypeError);
    expect(() => (config.endpoints as string[]).push('more.yaml')).toThrow(TypeError);
    expect(() => (config.allowEndpointCidrs as string[]).push('0.0.0.0/0')).toThrow(TypeError);
    for (const command of [parseCommand(['version']), parseCommand(['demo']), parseCommand(['replay', '--endpoint', 'x'], {})]) {
      expect(Object.isFrozen(command)).toBe(true);
    }
  });
});

describe('help and the other commands', () => {
  it('serveHelp() names every flag, its default and its variable', () => {
    const help = serveHelp();
    for (const [flag, spec] of Object.entries(SERVE_FLAGS)) {
      expect(help).toContain(`--${flag}`);
      expect(help).toContain(envName(flag));
      if (spec.default !== undefined) expect(help).toContain(`(default ${spec.default})`);
    }
    expect(help).toContain('REGISTRY_NOTIFIER_INGEST_TOKEN ');
    expect(help).toMatch(/--tenancy MODE +none: every endpoint may receive every event; namespace: .*registry-notifier\.io\/repositories.*\(needs --kubernetes\) \(default none\)\n +env REGISTRY_NOTIFIER_TENANCY/);
    expect(parseCommand(['serve', '--help'], {})).toEqual({ command: 'help', text: help });
  });

  it('no command at all is a usage error (exit 2), not a silent help', () => {
    expect(() => parseCommand([], {})).toThrow(UsageError);
    expect(() => parseCommand([], {})).toThrow(/no command given/);
  });

  it.each([[['help']], [['--help']], [['-h']]])('%j → usage', (argv) => {
    const command = parseCommand(argv, {});
    expect(command.command).toBe('help');
    const text = (command as Extract<Command, { command: 'help' }>).text;
    for (const name of ['serve', 'replay --endpoint NAME', 'demo', 'version']) expect(text).toContain(name);
  });

  it('version', () => {
    expect(parseCommand(['version'], {})).toEqual({ command: 'version' });
    expect(parseCommand(['--version'], {})).toEqual({ command: 'version' });
  });

  it('demo --rounds', () => {
    expect(parseCommand(['demo'], {})).toEqual({ command: 'demo', logLevel: 'warn', rounds: 0 });
    expect(parseCommand(['demo', '--rounds', '3', '--log-level', 'debug'], {})).toEqual({ command: 'demo', logLevel: 'debug', rounds: 3 });
    expect(usageError(() => parseCommand(['demo', '--rounds', 'three'], {})).message).toContain('--rounds');
    expect(parseCommand(['demo', '--help'], {})).toMatchObject({ command: 'help', text: expect.stringContaining('--rounds') });
  });

  it('replay --endpoint', () => {
    expect(parseCommand(['replay', '--endpoint', 'team/hook'], {})).toEqual({
      command: 'replay',
      endpoint: 'team/hook',
      metricsListen: { host: undefined, port: 9090 },
    });
    expect(parseCommand(['replay', '--endpoint', 'x', '--metrics-listen', '127.0.0.1:9191'], { REGISTRY_NOTIFIER_METRICS_LISTEN: ':1' })).toMatchObject({
      metricsListen: { host: '127.0.0.1', port: 9191 },
    });
    expect(parseCommand(['replay', '--endpoint', 'x'], { REGISTRY_NOTIFIER_METRICS_LISTEN: '127.0.0.1:9292' })).toMatchObject({
      metricsListen: { host: '127.0.0.1', port: 9292 },
    });
    expect(usageError(() => parseCommand(['replay'], {})).message).toContain('--endpoint');
    expect(usageError(() => parseCommand(['replay', '--endpoint', ''], {})).message).toContain('--endpoint');
    expect(parseCommand(['replay', '--help'], {})).toMatchObject({ command: 'help', text: expect.stringContaining('--endpoint NAME') });
  });

  it('resume --endpoint: the same flags as replay, its own usage line and help', () => {
    const tokenFile = file('resume-token', ' resume-secret\n');
    expect(parseCommand(['resume', '--endpoint', 'team/hook'], {})).toEqual({
      command: 'resume',
      endpoint: 'team/hook',
      metricsListen: { host: undefined, port: 9090 },
      ingestToken: undefined,
    });
    expect(parseCommand(['resume', '--endpoint', 'x', '--metrics-listen', '[::1]:9191', '--ingest-token-file', tokenFile], { REGISTRY_NOTIFIER_METRICS_LISTEN: ':1' })).toEqual({
      command: 'resume',
      endpoint: 'x',
      metricsListen: { host: '::1', port: 9191 },
      ingestToken: 'resume-secret',
    });
    expect(parseCommand(['resume', '--endpoint', 'x'], { REGISTRY_NOTIFIER_METRICS_LISTEN: '127.0.0.1:9292', REGISTRY_NOTIFIER_INGEST_TOKEN: 'from-env' })).toMatchObject({
      metricsListen: { host: '127.0.0.1', port: 9292 },
      ingestToken: 'from-env',
    });
    expect(parseCommand(['resume', '--endpoint', 'x'], { REGISTRY_NOTIFIER_INGEST_TOKEN_FILE: tokenFile })).toMatchObject({ ingestToken: 'resume-secret' });
    expect(Object.isFrozen(parseCommand(['resume', '--endpoint', 'x'], {}))).toBe(true);
    expect(usageError(() => parseCommand(['resume'], {})).message).toBe('resume needs --endpoint NAME');
    expect(usageError(() => parseCommand(['resume', '--endpoint', ''], {})).message).toBe('resume needs --endpoint NAME');
    expect(usageError(() => parseCommand(['resume', '--endpoint', 'x', '--metrics-listen', 'nowhere'], {})).message).toContain('--metrics-listen');
    expect(usageError(() => parseCommand(['resume', '--endpoint', 'x', '--queue-dir', '/tmp'], {})).message).toContain('queue-dir');
    expect(() => parseCommand(['resume', '--endpoint', 'x'], { REGISTRY_NOTIFIER_INGEST_TOKEN: ' ' })).toThrow(UsageError);
    const help = parseCommand(['resume', '--help'], {}) as Extract<Command, { command: 'help' }>;
    expect(help.command).toBe('help');
    expect(help.text).toMatch(/^Usage: registry-notifier resume --endpoint NAME \[--metrics-listen ADDR\] \[--ingest-token-file FILE\]\n/);
    expect(help.text).toContain('AutoDisabled');
    expect((parseCommand(['--help'], {}) as Extract<Command, { command: 'help' }>).text).toMatch(/^ {2}resume --endpoint NAME +let an AutoDisabled endpoint/m);
  });

  it('reads process.env when no environment is given', () => {
    process.env.REGISTRY_NOTIFIER_MAX_PENDING = '77';
    try {
      expect(parseCommand(['serve', '--endpoints', 'a.yaml'])).toMatchObject({ maxPending: 77 });
    } finally {
      delete process.env.REGISTRY_NOTIFIER_MAX_PENDING;
    }
  });
});

describe('several replicas on PostgreSQL (api.md §7)', () => {
  const PASSWORD = 'pg-s3cret-9f2c';
  const URL_WITH_PASSWORD = `postgres://notifier:${PASSWORD}@db.example:5432/notifier`;

  it('takes postgres:// and postgresql:// URLs as given, a percent-encoded password and a socket host included', () => {
    for (const url of [
      URL_WITH_PASSWORD,
      'postgresql://notifier@db.example/notifier?sslmode=verify-full',
      'postgres://notifier:p%40ss%2Fw%23rd@[fd00::5]:6432/notifier',
      'postgres:///notifier?host=/var/run/postgresql',
    ]) {
      expect(serve(['--database-url', url]).databaseUrl).toBe(url);
    }
  });

  it.each([
    ['another scheme', `mysql://notifier:${PASSWORD}@db.example/notifier`],
    ['an HTTP URL', `https://notifier:${PASSWORD}@db.example/notifier`],
    ['no URL at all', `notifier:${PASSWORD}@db.example/notifier`],
    ['a password with a raw #', `postgres://notifier:${PASSWORD}#x@db.example/notifier`],
    ['a bare host', 'db.example:5432'],
  ])('refuses %s, without quoting it (it may hold the password)', (_name, url) => {
    for (const error of [usageError(() => serve(['--database-url', url])), usageError(() => serve([], { REGISTRY_NOTIFIER_DATABASE_URL: url }))]) {
      expect(error.message).toMatch(/^--database-url: not a postgres:\/\/ or postgresql:\/\/ URL/);
      expect(error.message).not.toContain(PASSWORD);
    }
  });

  it('refuses --database-url with --queue-dir, whichever way each is given', () => {
    const message = /^--database-url and --queue-dir cannot be combined/;
    expect(usageError(() => serve(['--database-url', URL_WITH_PASSWORD, '--queue-dir', '/q'])).message).toMatch(message);
    expect(usageError(() => serve(['--queue-dir', '/q'], { REGISTRY_NOTIFIER_DATABASE_URL: URL_WITH_PASSWORD })).message).toMatch(message);
    expect(usageError(() => serve(['--database-url', URL_WITH_PASSWORD], { REGISTRY_NOTIFIER_QUEUE_DIR: '/q' })).message).toMatch(message);
    // an empty variable is unset, as everywhere
    expect(serve(['--database-url', URL_WITH_PASSWORD], { REGISTRY_NOTIFIER_QUEUE_DIR: '' }).queueDir).toBeUndefined();
  });

  it('names the replica after the host unless told, and refuses a name a pod could not have', () => {
    expect(serve().replicaId).toBe(hostname());
    expect(serve([], { REGISTRY_NOTIFIER_REPLICA_ID: 'registry-notifier-0' }).replicaId).toBe('registry-notifier-0');
    for (const bad of ['', 'two words', '-leading', 'trailing.', 'a/b', 'x'.repeat(254)]) {
      expect(usageError(() => serve([`--replica-id=${bad}`])).message).toMatch(/^--replica-id: /);
    }
    expect(serve(['--replica-id', 'x'.repeat(253)]).replicaId).toHaveLength(253);
  });

  it('refuses a lease shorter than a second, or not a duration', () => {
    expect(serve(['--lease-duration', '1s']).leaseDurationMs).toBe(1000);
    expect(usageError(() => serve(['--lease-duration', '999ms'])).message).toBe('--lease-duration: 999ms is shorter than 1s');
    expect(usageError(() => serve(['--lease-duration', '15'])).message).toMatch(/^--lease-duration: /);
  });

  it('checkServeConfig takes --database-url: serve runs on PostgreSQL', () => {
    const config = parseCommand(['serve', '--endpoints', import.meta.dirname, '--database-url', URL_WITH_PASSWORD], {}) as ServeConfig;
    expect(() => checkServeConfig(config)).not.toThrow();
    expect(config.databaseUrl).toBe(URL_WITH_PASSWORD);
  });

  it('a URL where a flag name was forgotten is not quoted with its password', () => {
    const error = usageError(() => parseCommand(['serve', '--kubernetes', URL_WITH_PASSWORD], {}));
    expect(error.message).toContain('postgres://db.example:5432/notifier');
    expect(error.message).not.toContain(PASSWORD);
  });

  it('serve --help lists the three flags with their variables, and no value of the environment', () => {
    const help = serveHelp();
    expect(help).toMatch(/--database-url URL .*postgres:\/\/user:password@host:5432\/db/);
    expect(help).toMatch(/--replica-id ID .*\(default: the host name\)/);
    expect(help).toMatch(/--lease-duration DUR .*\(default 15s\)/);
    for (const name of ['REGISTRY_NOTIFIER_DATABASE_URL', 'REGISTRY_NOTIFIER_REPLICA_ID', 'REGISTRY_NOTIFIER_LEASE_DURATION']) expect(help).toContain(name);
    const command = parseCommand(['serve', '--help'], { REGISTRY_NOTIFIER_DATABASE_URL: URL_WITH_PASSWORD });
    expect(JSON.stringify(command)).not.toContain(PASSWORD);
  });
});

describe('migrate', () => {
  const URL_WITH_PASSWORD = 'postgres://notifier:migrate-pw-41c@db.example/notifier';

  it('takes --database-url or its variable, the flag first, frozen', () => {
    expect(parseCommand(['migrate', '--database-url', URL_WITH_PASSWORD], {})).toEqual({ command: 'migrate', databaseUrl: URL_WITH_PASSWORD });
    expect(parseCommand(['migrate'], { REGISTRY_NOTIFIER_DATABASE_URL: URL_WITH_PASSWORD })).toEqual({ command: 'migrate', databaseUrl: URL_WITH_PASSWORD });
    const both = parseCommand(['migrate', '--database-url', URL_WITH_PASSWORD], { REGISTRY_NOTIFIER_DATABASE_URL: 'postgres://other/db' });
    expect(both).toEqual({ command: 'migrate', databaseUrl: URL_WITH_PASSWORD });
    expect(Object.isFrozen(both)).toBe(true);
  });

  it('needs a PostgreSQL URL: missing, empty or invalid is a usage error that does not quote it', () => {
    expect(usageError(() => parseCommand(['migrate'], {})).message).toBe('migrate needs --database-url URL (or REGISTRY_NOTIFIER_DATABASE_URL)');
    expect(usageError(() => parseCommand(['migrate'], { REGISTRY_NOTIFIER_DATABASE_URL: '' })).message).toMatch(/^migrate needs --database-url/);
    const invalid = usageError(() => parseCommand(['migrate', '--database-url', 'mysql://u:migrate-pw-41c@db/x'], {}));
    expect(invalid.message).toMatch(/^--database-url: not a postgres:\/\//);
    expect(invalid.message).not.toContain('migrate-pw-41c');
    expect(usageError(() => parseCommand(['migrate', '--database-url', URL_WITH_PASSWORD, '--queue-dir', '/q'], {})).message).toContain('--queue-dir');
  });

  it('--help explains it and the top-level usage lists it', () => {
    expect(parseCommand(['migrate', '--help'], {})).toMatchObject({ command: 'help', text: expect.stringMatching(/^Usage: registry-notifier migrate --database-url URL/) });
    expect(parseCommand(['--help'], {})).toMatchObject({ text: expect.stringContaining('migrate --database-url URL') });
  });
});

describe('import-config', () => {
  it('FILE and --namespace; frozen', () => {
    expect(parseCommand(['import-config', 'config.yml'], {})).toEqual({ command: 'import-config', file: 'config.yml', namespace: undefined });
    const command = parseCommand(['import-config', '--namespace', 'registry', '-'], {});
    expect(command).toEqual({ command: 'import-config', file: '-', namespace: 'registry' });
    expect(Object.isFrozen(command)).toBe(true);
  });

  it.each([
    [[], /needs FILE/],
    [[''], /needs FILE/],
    [['a.yml', 'b.yml'], /one FILE/],
    [['a.yml', '--namespace', 'Registry'], /--namespace: "Registry" is not a namespace name/],
    [['a.yml', '--namespace', 'a.b'], /--namespace/],
    [['a.yml', '--namespace', 'x'.repeat(64)], /--namespace/],
    [['a.yml', '--namespace', ''], /--namespace/],
    [['a.yml', '--endpoints', 'x'], /Unknown option '--endpoints'/],
  ])('%j is a usage error', (args, message) => {
    expect(usageError(() => parseCommand(['import-config', ...args], {})).message).toMatch(message);
  });

  it('--help, and the command in the usage text', () => {
    expect(parseCommand(['import-config', '--help'], {})).toMatchObject({ command: 'help', text: expect.stringMatching(/^Usage: registry-notifier import-config FILE \[--namespace NS\]/) });
    expect(parseCommand(['--help'], {})).toMatchObject({ text: expect.stringContaining('import-config FILE') });
  });
});
