// A Distribution config.yml's `notifications` block as Kubernetes objects (api.md §10): per endpoint entry, one
// Secret holding its header values (when it has any) and one NotificationEndpoint referring to it. The YAML is read
// as Distribution reads it (gopkg.in/yaml.v2: YAML 1.1, so `yes` is true; merge keys; only the first document), and
// every object made is checked by our own spec parser before it is returned.
import { isScalar, parseDocument, type Tags } from 'yaml';
import { InvalidSpecError, NOTIFICATION_ENDPOINT_RESOURCE, parseNotificationEndpoint, type HeaderSpec, type NotificationEndpoint } from '../api/notification-endpoint.ts';
import { isObject } from '../api/spec-schema.ts';
import { convertEndpoint } from './distribution-endpoint.ts';
import { toLabel, toSecretKey, UniqueNames } from './kube-names.ts';
import { scoped, yamlKind, type Note } from './note.ts';
import { NotifierError } from '../notifications/errors.ts';

/** A file that is not a Distribution configuration at all (bad YAML, not a mapping, `notifications` unusable): nothing is converted. */
export class ConfigImportError extends NotifierError {
  constructor(message = 'not a Distribution configuration', options?: ErrorOptions) {
    super('ERR_CONFIG_IMPORT', message, options);
  }
}

/** A Secret of type Opaque as `kubectl apply` takes it, values in `stringData`. */
export interface HeaderSecret {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace?: string };
  type: 'Opaque';
  stringData: Record<string, string>;
}

/** What a configuration converts to: the objects in the order to apply them, and one line per thing reported. */
export interface ImportedConfig {
  /** Per endpoint: its Secret (if it has headers), then the NotificationEndpoint. */
  readonly objects: readonly (HeaderSecret | NotificationEndpoint)[];
  /** What was left out or changed on the way, each `<where>: <what>`; never a header value or URL credentials. */
  readonly notes: readonly string[];
}

/** Options of importDistributionConfig. */
export interface ImportOptions {
  /** The objects' `metadata.namespace`; left out when undefined. */
  readonly namespace?: string;
}

const NOTIFICATIONS_FIELDS = new Set(['events', 'endpoints']);
// The suffix of an endpoint's header Secret: `<endpoint name>-headers`.
const SECRET_SUFFIX = '-headers';

// YAML 1.1 as gopkg.in/yaml.v2 resolves it: no sexagesimal numbers (`1:30` stays a string, which Go then refuses as a
// duration) and no timestamps (a date is a string to a Go string field).
const asGoYamlDoes = (tags: Tags): Tags => tags.filter((tag) => !(typeof tag === 'object' && (tag.format === 'TIME' || tag.tag === 'tag:yaml.org,2002:timestamp')));

/** Converts a Distribution config.yml; throws ConfigImportError when the file cannot be read as one at all. */
export function importDistributionConfig(text: string, options: ImportOptions = {}): ImportedConfig {
  const document = parseDocument(text, { version: '1.1', intAsBigInt: true, customTags: asGoYamlDoes });
  const failure = document.errors[0];
  // only the first line: later ones quote the source, which may hold a header value
  if (failure) throw new ConfigImportError(`not valid YAML (${failure.code}): ${failure.message.split('\n')[0]?.replace(/:$/, '')}`, { cause: failure });
  let root: unknown;
  try {
    root = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new ConfigImportError(`unreadable YAML: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  if (!isObject(root)) throw new ConfigImportError(`holds ${root === undefined || root === null ? 'nothing' : yamlKind(root)}, not a Distribution configuration (a mapping)`);

  const notes: string[] = [];
  const note: Note = (path, message) => void notes.push(`${path}: ${message}`);
  const endpoints = endpointEntries(root.notifications, scoped(note, 'notifications'));
  const names = new UniqueNames();
  const objects: (HeaderSecret | NotificationEndpoint)[] = [];
  endpoints.forEach((entry, i) => {
    const given = isObject(entry) && ['string', 'bigint', 'number', 'boolean'].includes(typeof entry.name) ? String(entry.name) : undefined;
    const shownName = given === undefined ? '' : ` (${/^[\w.-]{1,64}$/.test(given) ? given : JSON.stringify(given.slice(0, 64))})`;
    const where = scoped(note, `notifications.endpoints[${i}]${shownName}`);
    const scalarText = (header: string, index: number | undefined): string | undefined => {
      const node = document.getIn(['notifications', 'endpoints', i, 'headers', header, ...(index === undefined ? [] : [index])], true);
      return isScalar(node) && typeof node.source === 'string' ? node.source : undefined;
    };
    const converted = convertEndpoint(entry, where, scalarText);
    if (!converted) return;
    const name = endpointName(given, i, names, where);
    const metadata = (objectName: string): { name: string; namespace?: string } =>
      options.namespace === undefined ? { name: objectName } : { name: objectName, namespace: options.namespace };
    const secretName = `${name}${SECRET_SUFFIX}`;
    const keys = new UniqueNames(253);
    const stringData: Record<string, string> = {};
    const headers = converted.headers.map(({ name: header, value }): HeaderSpec => {
      const key = keys.take(toSecretKey(header));
      stringData[key] = value;
      return { name: header, valueFrom: { secretKeyRef: { name: secretName, key } } };
    });
    const { apiVersion, kind } = NOTIFICATION_ENDPOINT_RESOURCE;
    const { url, ...rest } = converted.spec;
    const endpoint: NotificationEndpoint = { apiVersion, kind, metadata: metadata(name), spec: { url, ...(headers.length > 0 && { headers }), ...rest } };
    try {
      parseNotificationEndpoint(endpoint); // what we print must pass our own parser, as `kubectl apply` and `--endpoints` judge it
    } catch (error) {
      if (!(error instanceof InvalidSpecError)) throw error;
      return void where('', `cannot be carried over (${error.message}); left out`);
    }
    if (headers.length > 0) objects.push({ apiVersion: 'v1', kind: 'Secret', metadata: metadata(secretName), type: 'Opaque', stringData });
    objects.push(endpoint);
  });
  return { objects, notes };
}

/** `notifications.endpoints`, reporting the rest of `notifications`; [] when there is none. */
function endpointEntries(notifications: unknown, note: Note): unknown[] {
  if (notifications === undefined || notifications === null) {
    note('', 'none in this file, so there is nothing to convert');
    return [];
  }
  if (!isObject(notifications)) throw new ConfigImportError(`notifications is ${yamlKind(notifications)}, not a mapping`);
  for (const field of Object.keys(notifications)) {
    if (!NOTIFICATIONS_FIELDS.has(field)) note(field, 'is not a field of Distribution\'s notifications (events, endpoints); left out');
  }
  eventsOf(notifications.events, scoped(note, 'events'));
  const { endpoints } = notifications;
  if (endpoints === undefined || endpoints === null || (Array.isArray(endpoints) && endpoints.length === 0)) {
    note('endpoints', 'none in this file, so there is nothing to convert');
    return [];
  }
  if (!Array.isArray(endpoints)) throw new ConfigImportError(`notifications.endpoints is ${yamlKind(endpoints)}, not a list`);
  return endpoints;
}

function eventsOf(events: unknown, note: Note): void {
  if (events === undefined || events === null) return;
  if (!isObject(events)) return void note('', `is ${yamlKind(events)}, not a mapping; left out`);
  for (const [field, value] of Object.entries(events)) {
    if (field !== 'includereferences') note(field, 'is not a field of Distribution\'s notifications.events; left out');
    else if (value === true) note(field, 'shapes the events the registry sends, so it stays in the registry\'s config (registry-notifier passes events on as they come); no NotificationEndpoint field');
  }
}

/** The endpoint's Kubernetes name, reporting how it differs from the name in the file. */
function endpointName(given: string | undefined, index: number, names: UniqueNames, note: Note): string {
  const fallback = `endpoint-${index + 1}`;
  const wanted = given === undefined ? '' : toLabel(given);
  const name = names.take(wanted === '' ? fallback : wanted);
  if (given === undefined) note('name', `is missing; named "${name}"`);
  else if (wanted === '') note('name', `has nothing a Kubernetes name can hold; named "${name}"`);
  else if (name !== wanted) note('name', `would be "${wanted}", which an earlier endpoint took; named "${name}"`);
  else if (name !== given) note('name', `named "${name}" (a Kubernetes name: lower-case letters, digits and '-', at most 63 characters)`);
  return name;
}
