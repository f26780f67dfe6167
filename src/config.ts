/**
 * The command line, parsed once into a typed, frozen configuration (api.md §3). Every flag has an environment
 * twin `REGISTRY_NOTIFIER_<FLAG>`; a flag beats its variable. Nothing else in the program reads `process.env`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parseByteSize, parseDuration } from './api/duration.ts';
import { DNS1123_LABEL } from './api/spec-schema.ts';
import { SECRET_ENV_PREFIX } from './sources/file-secrets.ts';
import { NotifierError } from './notifications/errors.ts';

/** Bad usage or invalid configuration: the program prints the message on one line and exits with 2. */
export class UsageError extends NotifierError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** A host and port to listen on; `host` undefined means every interface. */
export interface ListenAddress {
  readonly host: string | undefined;
  readonly port: number;
}

/**
 * `http://host:port` as a client on this machine reaches a server listening on `host`: an unspecified or wildcard
 * host (Node then picks the interfaces, IPv6 where the pod has it) is reached at 127.0.0.1.
 */
export function localBaseUrl(host: string | undefined, port: number): string {
  const address = host === undefined || host === '' || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** Log levels pino knows, least to most verbose is the reverse of this list. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Tenancy modes of `--tenancy` (api.md §9). */
export const TENANCY_MODES = ['none', 'namespace'] as const;
/** One of `TENANCY_MODES`. */
export type Tenancy = (typeof TENANCY_MODES)[number];

/** Everything `serve` needs. */
export interface ServeConfig {
  readonly command: 'serve';
  readonly listen: ListenAddress;
  readonly metricsListen: ListenAddress;
  readonly endpoints: readonly string[];
  readonly kubernetes: boolean;
  /** Namespaces to watch; empty = all. */
  readonly namespaces: readonly string[];
  /** `namespace`: an endpoint receives only the repositories its Namespace is granted (api.md §9); `none`: every event. */
  readonly tenancy: Tenancy;
  readonly statusIntervalMs: number;
  readonly secretsDir: string | undefined;
  /** The `REGISTRY_NOTIFIER_SECRET_*` variables: standalone secret values that have no file in `secretsDir`. */
  readonly secretEnv: Readonly<Record<string, string>>;
  /** The bearer token the registry must send; undefined = no authentication. */
  readonly ingestToken: string | undefined;
  readonly maxBodySize: number;
  readonly maxPendingPerEndpoint: number;
  readonly maxPending: number;
  readonly queueDir: string | undefined;
  readonly allowEndpointCidrs: readonly string[];
  readonly shutdownGraceMs: number;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  // Several replicas on PostgreSQL (api.md §7).
  /** The shared database (`postgres://…`, with its password: show it only through `redactDatabaseUrl`); undefined = one replica. */
  readonly databaseUrl: string | undefined;
  /** How this replica names itself in leases and logs; the host name (the pod's name) unless given. */
  readonly replicaId: string;
  /** An endpoint whose owner stopped renewing its lease for this long is taken over by another replica. */
  readonly leaseDurationMs: number;
  /** The Lease electing the replica that writes status (cluster mode with a database). */
  readonly leaderElectionLease: { readonly namespace: string; readonly name: string };
  /** Status writes per second at most, over all endpoints. */
  readonly statusWritesPerSecond: number;
  /** Whether the two `/metrics` histograms carry the `endpoint` label; false: one of each per process. */
  readonly endpointHistograms: boolean;
}

/** `replay` and `resume`: one authenticated call to a running server's admin port, on one endpoint. */
export interface AdminCommand<C extends 'replay' | 'resume' = 'replay' | 'resume'> {
  readonly command: C;
  readonly endpoint: string;
  readonly metricsListen: ListenAddress;
  readonly ingestToken: string | undefined;
}

/** What the command line asks for. */
export type Command =
  | ServeConfig
  | { readonly command: 'version' }
  | { readonly command: 'help'; readonly text: string }
  | { readonly command: 'demo'; readonly logLevel: ServeConfig['logLevel']; readonly rounds: number }
  | AdminCommand<'replay'>
  | AdminCommand<'resume'>
  | { readonly command: 'migrate'; readonly databaseUrl: string }
  | { readonly command: 'import-config'; readonly file: string; readonly namespace: string | undefined };

interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  default?: string;
  placeholder?: string;
  help: string;
}

/** The flags of `serve`, in the order `--help` lists them; defaults as api.md §3 gives them. */
export const SERVE_FLAGS: Readonly<Record<string, FlagSpec>> = {
  listen: { type: 'string', default: ':8080', placeholder: 'ADDR', help: 'ingest address (POST /events)' },
  'metrics-listen': { type: 'string', default: ':9090', placeholder: 'ADDR', help: '/metrics, /healthz, /readyz, /endpoints' },
  endpoints: { type: 'string', multiple: true, placeholder: 'PATH', help: 'YAML file or directory of NotificationEndpoints (repeatable); standalone mode' },
  kubernetes: { type: 'boolean', help: 'endpoints from the cluster (in-cluster config, else KUBECONFIG)' },
  namespaces: { type: 'string', placeholder: 'A,B', help: 'namespaces to watch in cluster mode (default: all)' },
  tenancy: { type: 'string', default: 'none', placeholder: 'MODE', help: 'none: every endpoint may receive every event; namespace: an endpoint receives only the repositories its Namespace\'s registry-notifier.io/repositories annotation grants (needs --kubernetes)' },
  'status-interval': { type: 'string', default: '10s', placeholder: 'DUR', help: 'how often changed counters are written to status' },
  'status-rate': { type: 'string', default: '20', placeholder: 'N', help: 'status writes per second at most, over all endpoints, for counters and Delivering changes (Ready changes are written at once)' },
  'secrets-dir': { type: 'string', placeholder: 'DIR', help: 'standalone secretKeyRef root: <DIR>/<name>/<key>' },
  'ingest-token-file': { type: 'string', placeholder: 'FILE', help: 'bearer token the registry must send (env REGISTRY_NOTIFIER_INGEST_TOKEN holds the value)' },
  'max-body-size': { type: 'string', default: '1MiB', placeholder: 'SIZE', help: 'ingest request body limit' },
  'max-pending-per-endpoint': { type: 'string', default: '100000', placeholder: 'N', help: 'queued events per endpoint before the ingest answers 503' },
  'max-pending': { type: 'string', default: '200000', placeholder: 'N', help: 'queued events in all before the ingest answers 503' },
  'queue-dir': { type: 'string', placeholder: 'DIR', help: 'durable journal directory (absent: in memory)' },
  'database-url': { type: 'string', placeholder: 'URL', help: 'PostgreSQL shared by several replicas, postgres://user:password@host:5432/db (not with --queue-dir)' },
  'replica-id': { type: 'string', placeholder: 'ID', help: 'how this replica names itself in leases and logs (default: the host name)' },
  'lease-duration': { type: 'string', default: '15s', placeholder: 'DUR', help: 'an endpoint whose owner stopped renewing for this long is taken over by another replica' },
  'leader-election-lease': { type: 'string', placeholder: 'NAMESPACE/NAME', help: 'with --kubernetes and --database-url: the coordination.k8s.io Lease electing the replica that writes status (default: <pod namespace>/registry-notifier)' },
  'allow-endpoint-cidrs': { type: 'string', placeholder: 'CIDR[,CIDR]', help: 'let endpoints reach otherwise refused ranges (loopback, private, link-local)' },
  'shutdown-grace': { type: 'string', default: '25s', placeholder: 'DUR', help: 'drain time on SIGTERM' },
  'log-level': { type: 'string', default: 'info', placeholder: 'LEVEL', help: `JSON logs on stdout: ${LOG_LEVELS.join(', ')}` },
  'endpoint-histograms': { type: 'string', default: 'true', placeholder: 'BOOL', help: 'true: /metrics has the delivery duration and event latency histograms per endpoint (22 series an endpoint); false: one of each for the process (advised beyond about 1,000 endpoints)' },
};

/** The environment variable twin of a flag: `--max-body-size` → `REGISTRY_NOTIFIER_MAX_BODY_SIZE`. */
export function envName(flag: string): string {
  return `REGISTRY_NOTIFIER_${flag.toUpperCase().replaceAll('-', '_')}`;
}

const USAGE = `Usage: registry-notifier <command> [flags]

Commands:
  serve                    run the ingest, the delivery engine and the endpoint source (the container's entrypoint)
  replay --endpoint NAME   move an endpoint's dead letters back into its queue (asks a running server)
  resume --endpoint NAME   let an AutoDisabled endpoint (retry.disableAfter) send its queue again (asks a running server)
  migrate --database-url URL  create or update the PostgreSQL schema, then exit
  demo                     run a local demo: a receiver, an endpoint and sample registry events
  import-config FILE       print a registry's config.yml notification endpoints as NotificationEndpoints and Secrets
  version                  print the version

Run 'registry-notifier <command> --help' for the command's flags.`;

/** `--help` text of `serve`: every flag, its default and its environment twin. */
export function serveHelp(): string {
  const rows = Object.entries(SERVE_FLAGS).map(([name, spec]) => {
    const flag = `--${name}${spec.placeholder ? ` ${spec.placeholder}` : ''}`;
    const def = spec.default !== undefined ? ` (default ${spec.default})` : '';
    return `  ${flag.padEnd(36)} ${spec.help}${def}\n  ${''.padEnd(36)} env ${envName(name)}`;
  });
  return `Usage: registry-notifier serve [flags]\n\nFlags (a flag beats its environment variable):\n${rows.join('\n')}\n  --help                               this text`;
}

/** Checks what parsing cannot: every `--endpoints` path exists now; throws `UsageError` (exit 2) otherwise. */
export function checkServeConfig(config: ServeConfig): void {
  for (const path of config.endpoints) {
    if (!existsSync(path)) throw new UsageError(`--endpoints: ${path} does not exist`);
  }
}

/** Parses argv (without node and script) and the environment into a frozen command; throws `UsageError`. */
export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): Command {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
      throw new UsageError(`no command given; try 'registry-notifier serve' or 'registry-notifier --help'`);
    case 'help':
    case '--help':
    case '-h':
      return freeze({ command: 'help', text: USAGE });
    case 'version':
    case '--version':
      return freeze({ command: 'version' });
    case 'serve':
      return parseServe(rest, env);
    case 'demo': {
      const { values } = parse(rest, { 'log-level': SERVE_FLAGS['log-level']!, rounds: { type: 'string', help: '' }, help: { type: 'boolean', help: '' } });
      if (values.help) return freeze({ command: 'help', text: 'Usage: registry-notifier demo [--rounds N] [--log-level LEVEL]\n\nStarts a receiver on 127.0.0.1, an ingest and an endpoint, and sends sample registry events through them\n(one image push, pull, mount and delete per round; N rounds, default: until Ctrl-C).' });
      const rounds = values.rounds === undefined ? 0 : count('rounds', String(values.rounds));
      return freeze({ command: 'demo', logLevel: logLevel(String(values['log-level'] ?? 'warn')), rounds });
    }
    case 'replay':
      return parseAdminCommand('replay', "move the endpoint's dead\nletters back into its queue", rest, env);
    case 'resume':
      return parseAdminCommand('resume', 'let the endpoint, stopped by\nretry.disableAfter (Ready=False, reason AutoDisabled), send its kept queue again; an endpoint that is not\nAutoDisabled is left as it is', rest, env);
    case 'migrate':
      return parseMigrate(rest, env);
    case 'import-config':
      return parseImportConfig(rest);
    default:
      throw new UsageError(`unknown command "${command}"; run 'registry-notifier --help'`);
  }
}

function parseServe(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  const { values } = parse(argv, { ...SERVE_FLAGS, help: { type: 'boolean', help: '' } });
  if (values.help) return freeze({ command: 'help', text: serveHelp() });
  // A flag beats its variable; a variable beats the default.
  const get = (name: string): string | undefined => {
    const given = values[name];
    if (typeof given === 'string') return given;
    return fromEnv(env, name) ?? SERVE_FLAGS[name]?.default;
  };
  const endpointsFlag = values.endpoints as string[] | undefined;
  const endpoints = endpointsFlag ?? list(fromEnv(env, 'endpoints'));
  const kubernetes = values.kubernetes === true || isTrue('kubernetes', fromEnv(env, 'kubernetes'));

  if (endpoints.length === 0 && !kubernetes) throw new UsageError('serve needs --endpoints PATH (standalone) or --kubernetes');
  if (endpoints.length > 0 && kubernetes) throw new UsageError('--endpoints and --kubernetes cannot be combined');
  const database = databaseUrl(get('database-url'));
  if (database !== undefined && get('queue-dir') !== undefined) {
    throw new UsageError('--database-url and --queue-dir cannot be combined: with a database the queue lives there');
  }
  const tenancyMode = tenancy(get('tenancy')!);
  if (tenancyMode === 'namespace' && !kubernetes) {
    throw new UsageError('--tenancy namespace needs --kubernetes: standalone endpoints have no Namespace to be granted repositories');
  }
  const config: ServeConfig = {
    command: 'serve',
    listen: listenAddress('listen', get('listen')!),
    metricsListen: listenAddress('metrics-listen', get('metrics-listen')!),
    endpoints,
    kubernetes,
    namespaces: list(get('namespaces')),
    tenancy: tenancyMode,
    statusIntervalMs: duration('status-interval', get('status-interval')!),
    statusWritesPerSecond: count('status-rate', get('status-rate')!),
    endpointHistograms: trueOrFalse('endpoint-histograms', get('endpoint-histograms')!),
    secretsDir: get('secrets-dir'),
    secretEnv: Object.fromEntries(
      Object.entries(env).filter((entry): entry is [string, string] => entry[0].startsWith(SECRET_ENV_PREFIX) && entry[1] !== undefined),
    ),
    ingestToken: ingestToken(get('ingest-token-file'), env),
    maxBodySize: byteSize('max-body-size', get('max-body-size')!),
    maxPendingPerEndpoint: count('max-pending-per-endpoint', get('max-pending-per-endpoint')!),
    maxPending: count('max-pending', get('max-pending')!),
    queueDir: get('queue-dir'),
    allowEndpointCidrs: list(get('allow-endpoint-cidrs')).map(cidr),
    shutdownGraceMs: duration('shutdown-grace', get('shutdown-grace')!),
    logLevel: logLevel(get('log-level')!),
    databaseUrl: database,
    replicaId: replicaId(get('replica-id') ?? hostname()),
    leaseDurationMs: leaseDuration(get('lease-duration')!),
    leaderElectionLease: leaderLease(get('leader-election-lease')),
  };
  return freeze(config);
}

/** `replay` / `resume --endpoint NAME [--metrics-listen ADDR] [--ingest-token-file FILE]`; `what` says what it asks for. */
function parseAdminCommand(command: AdminCommand['command'], what: string, argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  const specs = {
    endpoint: { type: 'string', help: '' },
    'metrics-listen': SERVE_FLAGS['metrics-listen']!,
    'ingest-token-file': SERVE_FLAGS['ingest-token-file']!,
    help: { type: 'boolean', help: '' },
  } satisfies Record<string, FlagSpec>;
  const { values } = parse(argv, specs);
  if (values.help) {
    return freeze({ command: 'help', text: `Usage: registry-notifier ${command} --endpoint NAME [--metrics-listen ADDR] [--ingest-token-file FILE]

Asks the running server at --metrics-listen (default :9090, i.e. 127.0.0.1:9090) to ${what}. Authenticates with the ingest token (--ingest-token-file, or the value in
${envName('ingest-token')}). NAME is namespace/name in cluster mode.` });
  }
  if (typeof values.endpoint !== 'string' || values.endpoint === '') throw new UsageError(`${command} needs --endpoint NAME`);
  const tokenFile = typeof values['ingest-token-file'] === 'string' ? values['ingest-token-file'] : fromEnv(env, 'ingest-token-file');
  const parsed: AdminCommand = {
    command,
    endpoint: values.endpoint,
    metricsListen: listenAddress('metrics-listen', String(values['metrics-listen'] ?? fromEnv(env, 'metrics-listen') ?? ':9090')),
    ingestToken: ingestToken(tokenFile, env),
  };
  return freeze(parsed as Command);
}

/** `migrate --database-url URL`: the URL from the flag or its variable. */
function parseMigrate(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  const { values } = parse(argv, { 'database-url': SERVE_FLAGS['database-url']!, help: { type: 'boolean', help: '' } });
  if (values.help) {
    return freeze({ command: 'help', text: `Usage: registry-notifier migrate --database-url URL

Creates or updates the PostgreSQL schema of --database-url (postgres://user:password@host:5432/db, or the
variable ${envName('database-url')}) and exits: 0 done or already up to date, 1 the database failed or its
schema is newer than this release, 2 bad usage. 'serve --database-url' does the same at start; this is for a
separate migration step. Replicas may migrate at the same time: they take turns under an advisory lock.` });
  }
  const url = databaseUrl(typeof values['database-url'] === 'string' ? values['database-url'] : fromEnv(env, 'database-url'));
  if (url === undefined) throw new UsageError(`migrate needs --database-url URL (or ${envName('database-url')})`);
  return freeze({ command: 'migrate', databaseUrl: url });
}

const IMPORT_CONFIG_HELP = `Usage: registry-notifier import-config FILE [--namespace NS]

Reads a CNCF Distribution (registry) config.yml, or stdin for FILE '-', and prints its notifications.endpoints
as Kubernetes objects, a multi-document YAML stream on stdout, ready for 'kubectl apply -f -' or '--endpoints':
one NotificationEndpoint per endpoint (name made a valid Kubernetes name; url, timeout, threshold, backoff,
ignoredmediatypes, ignore and disabled carried over with Distribution's meaning) and, for an endpoint with
headers, one Secret <name>-headers holding the header values, referred to by valueFrom.secretKeyRef (header
values are credentials and never written into the NotificationEndpoint). Several values of one header are
joined into one value with ", ". What cannot be carried over, or changes on the way, is reported on stderr,
one line each, and the rest is still converted.

Flags:
  --namespace NS   the objects' metadata.namespace (default: none, so kubectl's current namespace)
  --help           this text

Exit codes: 0 converted (notes on stderr are not failures), 2 bad usage, or FILE cannot be read or is not a
registry configuration (one line on stderr).`;

// `import-config FILE [--namespace NS]`: the one positional argument is the file.
function parseImportConfig(argv: readonly string[]): Command {
  let parsed: { values: { namespace?: string | undefined; help?: boolean | undefined }; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: { namespace: { type: 'string' }, help: { type: 'boolean' } }, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]!);
  }
  const { values, positionals } = parsed;
  if (values.help) return freeze({ command: 'help', text: IMPORT_CONFIG_HELP });
  const [file, extra] = positionals;
  if (file === undefined || file === '') throw new UsageError('import-config needs FILE, the registry\'s config.yml (or - for stdin)');
  if (extra !== undefined) throw new UsageError(`import-config takes one FILE, not also "${extra}"`);
  const { namespace } = values;
  if (namespace !== undefined && (namespace.length > 63 || !DNS1123_LABEL.test(namespace))) {
    throw new UsageError(`--namespace: "${namespace}" is not a namespace name (lower-case letters, digits and '-', at most 63)`);
  }
  return freeze({ command: 'import-config', file, namespace });
}

/**
 * The flag's environment variable; set but empty counts as unset, as a template that renders `value: ""` means
 * "not configured" (an empty --secrets-dir or --queue-dir would otherwise silently mean the working directory).
 */
function fromEnv(env: Readonly<Record<string, string | undefined>>, flag: string): string | undefined {
  const value = env[envName(flag)];
  return value === '' ? undefined : value;
}

function parse(argv: readonly string[], specs: Record<string, FlagSpec>): { values: Record<string, string | boolean | string[] | undefined> } {
  const options = Object.fromEntries(
    Object.entries(specs).map(([name, spec]) => [name, { type: spec.type, ...(spec.multiple && { multiple: true }) }]),
  );
  try {
    const { values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
    return { values: values as Record<string, string | boolean | string[] | undefined> };
  } catch (error) {
    // The message may quote an argument, which may be a database URL with its password: drop any user-info.
    throw new UsageError((error as Error).message.split('\n')[0]!.replace(/(\/\/)[^/@\s'"]*@/g, '$1'));
  }
}

/** Parses `:8080`, `127.0.0.1:8080`, `[::1]:8080` or `localhost:0`. */
export function listenAddress(flag: string, text: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`--${flag}: "${text}" is not HOST:PORT (e.g. :8080 or 127.0.0.1:8080)`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

function duration(flag: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`--${flag}: ${(error as Error).message}`);
  }
}

/**
 * A `postgres://` or `postgresql://` URL, or undefined. The messages never quote it: it holds the password. A
 * password with characters such as `@`, `/` or `#` must be percent-encoded, as in any URL.
 */
function databaseUrl(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const url = URL.parse(text);
  if (url === null || !['postgres:', 'postgresql:'].includes(url.protocol)) {
    throw new UsageError('--database-url: not a postgres:// or postgresql:// URL (postgres://user:password@host:5432/db; percent-encode special characters in the password)');
  }
  return text;
}

/** A replica id: what a pod or host name may hold, at most 253 characters. */
function replicaId(text: string): string {
  if (!/^[A-Za-z0-9]([A-Za-z0-9._:-]{0,251}[A-Za-z0-9])?$/.test(text)) {
    throw new UsageError(`--replica-id: "${text.slice(0, 300)}" is not a name such as registry-notifier-0 (letters, digits, '.', '_', ':', '-'; at most 253)`);
  }
  return text;
}

// A lease shorter than this would be renewed more often than a database round trip under load allows.
const MIN_LEASE_MS = 1000;

// Where Kubernetes mounts the pod's namespace for its service account.
const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** `NAMESPACE/NAME`, or by default the pod's namespace (`default` outside a pod) and `registry-notifier`. */
function leaderLease(text: string | undefined): { namespace: string; name: string } {
  if (text === undefined) {
    let namespace = 'default';
    try {
      namespace = readFileSync(POD_NAMESPACE_FILE, 'utf8').trim() || namespace;
    } catch {
      // not in a pod
    }
    return { namespace, name: 'registry-notifier' };
  }
  const [namespace, name, extra] = text.split('/');
  if (!namespace || !name || extra !== undefined || !DNS1123_LABEL.test(namespace) || name.length > 253 || !/^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(name)) {
    throw new UsageError(`--leader-election-lease: "${text.slice(0, 300)}" is not NAMESPACE/NAME (Kubernetes names)`);
  }
  return { namespace, name };
}

function leaseDuration(text: string): number {
  const ms = duration('lease-duration', text);
  if (ms < MIN_LEASE_MS) throw new UsageError(`--lease-duration: ${text} is shorter than 1s`);
  return ms;
}

function byteSize(flag: string, text: string): number {
  try {
    const bytes = parseByteSize(text);
    if (bytes < 1) throw new Error('must be at least 1 byte');
    return bytes;
  } catch (error) {
    throw new UsageError(`--${flag}: ${(error as Error).message}`);
  }
}

function count(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${flag}: "${text}" is not a positive whole number`);
  return n;
}

/** A flag taking exactly `true` or `false`, as the chart writes it. */
function trueOrFalse(flag: string, text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new UsageError(`--${flag}: "${text}" is not true or false`);
}

function tenancy(text: string): Tenancy {
  const mode = TENANCY_MODES.find((m) => m === text);
  if (!mode) throw new UsageError(`--tenancy: "${text}" is not one of ${TENANCY_MODES.join(', ')}`);
  return mode;
}

function logLevel(text: string): ServeConfig['logLevel'] {
  const level = LOG_LEVELS.find((l) => l === text);
  if (!level) throw new UsageError(`--log-level: "${text}" is not one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

function cidr(text: string): string {
  const [address, bits, extra] = text.split('/');
  const family = isIP(address ?? '');
  const prefix = Number(bits);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(bits ?? '') || prefix > max) {
    throw new UsageError(`--allow-endpoint-cidrs: "${text}" is not a CIDR such as 127.0.0.0/8 or fd00::/8`);
  }
  return text;
}

/**
 * The ingest token from its file or its variable. A variable that is set must hold a token: an empty one (an
 * empty Secret behind the chart's env var) would otherwise turn authentication off without a word.
 */
function ingestToken(file: string | undefined, env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (file !== undefined) {
    let token: string;
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw new UsageError(`--ingest-token-file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (token === '') throw new UsageError(`--ingest-token-file: ${file} is empty`);
    return token;
  }
  const name = envName('ingest-token');
  const value = env[name];
  if (value === undefined) return undefined;
  if (value.trim() === '') throw new UsageError(`${name} is set but empty; set a token, or unset it to run without authentication`);
  return value.trim();
}

function list(text: string | undefined): string[] {
  return (text ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function isTrue(flag: string, text: string | undefined): boolean {
  if (text === undefined) return false;
  const value = text.toLowerCase();
  if (['1', 'true', 'yes'].includes(value)) return true;
  if (['0', 'false', 'no'].includes(value)) return false;
  throw new UsageError(`${envName(flag)}: "${text}" is not true or false (1/0, true/false, yes/no)`);
}

function freeze<T extends object>(value: T): T {
  for (const field of Object.values(value)) if (field && typeof field === 'object') freeze(field as object);
  return Object.freeze(value);
}
