// The conversion of a Distribution config.yml, on Distribution's own example configs and on every rule: what each
// one prints must pass our own spec parser (parseNotificationEndpointsYaml, as `--endpoints` reads it), and every
// Secret reference must point at a key of a Secret printed beside it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseNotificationEndpointsYaml, type NotificationEndpoint } from '../../src/api/notification-endpoint.ts';
import { ConfigImportError, importDistributionConfig, type HeaderSecret, type ImportOptions } from '../../src/import/distribution-config.ts';
import { toYamlStream } from '../../src/import/yaml-stream.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'distribution-configs');
const TOKEN = 'tok-5f1c9e0b7d2a'; // a header value: must never reach a note

/** Converts `yaml` and checks the printed stream as our parser and a YAML 1.1 reader (kubectl's) see it. */
function convert(yaml: string, options: ImportOptions = {}) {
  const { objects, notes } = importDistributionConfig(yaml, options);
  const stream = toYamlStream(objects);
  const parsed = parseNotificationEndpointsYaml(stream, 'stdout');
  expect(parsed.errors.map((e) => e.error.message)).toEqual([]);
  const endpoints = objects.filter((o): o is NotificationEndpoint => o.kind === 'NotificationEndpoint');
  const secrets = objects.filter((o): o is HeaderSecret => o.kind === 'Secret');
  expect(parsed.endpoints.map((e) => e.name)).toEqual(endpoints.map((e) => e.metadata.name));
  // Read back as YAML 1.1 (what kubectl's go-yaml does), the stream is the very objects: every value keeps its type.
  expect(stream.split(/^---$/m).filter((doc) => doc !== '').map((doc) => parse(doc, { version: '1.1' }) as unknown)).toEqual(JSON.parse(JSON.stringify(objects)));
  for (const endpoint of endpoints) {
    for (const header of endpoint.spec.headers ?? []) {
      const ref = header.valueFrom?.secretKeyRef;
      expect(header.value, 'a header value is never inlined').toBeUndefined();
      expect(secrets.find((s) => s.metadata.name === ref?.name)?.stringData[ref?.key ?? ''], `${header.name} resolves`).toBeTypeOf('string');
    }
  }
  for (const note of notes) expect(note).not.toMatch(/\n/);
  return { objects, notes, endpoints, secrets, stream };
}

/** A config with one endpoint entry, written as YAML lines under `- `. */
const oneEndpoint = (...lines: string[]): string => `notifications:\n  endpoints:\n    - ${lines.join('\n      ')}\n`;

describe("Distribution's own example configs", () => {
  it('config-cache.yml: two disabled endpoints, one with an Authorization header; includereferences reported', () => {
    const { objects, notes } = convert(readFileSync(join(FIXTURES, 'config-cache.yml'), 'utf8'));
    expect(objects).toEqual([
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'local-8082-headers' }, type: 'Opaque', stringData: { Authorization: 'Bearer <an example token>' } },
      {
        apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'local-8082' },
        spec: {
          url: 'http://localhost:5003/callback',
          headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'local-8082-headers', key: 'Authorization' } } }],
          timeout: '1s', threshold: 10, backoff: '1s', disabled: true,
        },
      },
      {
        apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'local-8083' },
        spec: { url: 'http://localhost:8083/callback', timeout: '1s', threshold: 10, backoff: '1s', disabled: true },
      },
    ]);
    expect(notes).toEqual([expect.stringMatching(/^notifications\.events\.includereferences: .*stays in the registry's config/)]);
  });

  it('config-dev.yml converts like config-cache.yml', () => {
    const { endpoints, secrets } = convert(readFileSync(join(FIXTURES, 'config-dev.yml'), 'utf8'));
    expect(endpoints.map((e) => e.metadata.name)).toEqual(['local-5003', 'local-8083']);
    expect(secrets.map((s) => s.metadata.name)).toEqual(['local-5003-headers']);
  });

  it("configuration.md: every field; the page's `headers: <http.Header>` placeholder is reported, the rest converted", () => {
    const { objects, notes } = convert(readFileSync(join(FIXTURES, 'configuration-md.yml'), 'utf8'));
    expect(objects).toEqual([{
      apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'alistener' },
      spec: {
        url: 'https://my.listener.com/event', timeout: '1s', threshold: 10, backoff: '1s',
        ignoredMediaTypes: ['application/octet-stream'],
        ignore: { mediaTypes: ['application/octet-stream'], actions: ['pull'] },
      },
    }]);
    expect(notes).toEqual([
      expect.stringMatching(/^notifications\.events\.includereferences: /),
      'notifications.endpoints[0] (alistener).headers: is not a mapping of header names to lists of values; no header carried over',
    ]);
  });

  it('notifications.md: `[Bearer <your token, if needed>]` is a flow list of two values (as Go reads it too), sent joined', () => {
    const { secrets, endpoints, notes } = convert(readFileSync(join(FIXTURES, 'notifications-md.yml'), 'utf8'));
    expect(secrets[0]?.stringData).toEqual({ Authorization: 'Bearer <your token, if needed>' });
    expect(endpoints[0]?.spec).toMatchObject({ timeout: '500ms', threshold: 5, backoff: '1s' });
    expect(notes).toEqual([expect.stringMatching(/^notifications\.endpoints\[0\] \(alistener\)\.headers\.Authorization: has 2 values: sent as one header line, joined with ", "/)]);
  });

  it("this repository's examples/registry/config.yml", () => {
    const { endpoints, secrets } = convert(readFileSync(join(ROOT, 'examples', 'registry', 'config.yml'), 'utf8'), { namespace: 'registry' });
    expect(endpoints).toEqual([expect.objectContaining({
      metadata: { name: 'registry-notifier', namespace: 'registry' },
      spec: expect.objectContaining({ url: 'http://registry-notifier.registry-notifier.svc:8080/events', timeout: '5s', threshold: 5, backoff: '1s' }),
    })]);
    expect(secrets).toEqual([expect.objectContaining({ metadata: { name: 'registry-notifier-headers', namespace: 'registry' }, stringData: { Authorization: 'Bearer <TOKEN>' } })]);
  });
});

describe('names', () => {
  it('become DNS-1123 labels, made unique in file order; each change is reported', () => {
    const yaml = `notifications:
  endpoints:
    - {name: My Hook, url: "https://a.example/"}
    - {name: my_hook, url: "https://b.example/"}
    - {url: "https://c.example/"}
    - {name: "日本", url: "https://d.example/"}
    - {name: ${'x'.repeat(80)}, url: "https://e.example/"}
    - {name: 1234, url: "https://f.example/"}
`;
    const { endpoints, notes } = convert(yaml);
    expect(endpoints.map((e) => e.metadata.name)).toEqual(['my-hook', 'my-hook-2', 'endpoint-3', 'endpoint-4', 'x'.repeat(63), '1234']);
    expect(notes).toEqual([
      `notifications.endpoints[0] ("My Hook").name: named "my-hook" (a Kubernetes name: lower-case letters, digits and '-', at most 63 characters)`,
      'notifications.endpoints[1] (my_hook).name: would be "my-hook", which an earlier endpoint took; named "my-hook-2"',
      'notifications.endpoints[2].name: is missing; named "endpoint-3"',
      'notifications.endpoints[3] ("日本").name: has nothing a Kubernetes name can hold; named "endpoint-4"',
      expect.stringMatching(/^notifications\.endpoints\[4\] \("x{64}"\)\.name: named "x{63}"/), // a long name is shown cut, quoted
    ]);
  });

  it('--namespace goes on every object; the Secret is `<name>-headers` in the same namespace', () => {
    const { objects } = convert(oneEndpoint('name: hook', 'url: https://hook.example/', `headers: {X-Token: [${TOKEN}]}`), { namespace: 'team-a' });
    expect(objects.map((o) => [o.kind, o.metadata])).toEqual([
      ['Secret', { name: 'hook-headers', namespace: 'team-a' }],
      ['NotificationEndpoint', { name: 'hook', namespace: 'team-a' }],
    ]);
  });
});

describe('durations', () => {
  it.each([
    ['1s', '1s', undefined],
    ['500ms', '500ms', undefined],
    ['2m30s', '2m30s', undefined],
    ['300us', '0.3ms', undefined],
    ['1.5h', '1.5h', undefined],
    ['"1m0.5us"', '1m0.0000005s', undefined],
    ['500', '0.0005ms', /bare number, which Distribution reads as 500 nanoseconds: written as "0.0005ms" \(if seconds were meant, write "500s"/],
    ['1500000000', '1.5s', /reads as 1500000000 nanoseconds: written as "1.5s"/],
    ['9223372036854775807', '2562047h47m16.854775807s', /bare number/],
    ['0', undefined, /is 0: Distribution uses its default \(1s\) for a duration of 0 or less; left out/],
    ['-1s', undefined, /is "-1s": Distribution uses its default/],
    ['"5"', undefined, /"5" is not a Go duration: a number without a unit .*Distribution refuses the file\); left out/],
    ['5d', undefined, /unknown unit "d"/],
    ['1.5', undefined, /is a number, not a duration/],
    ['1:30', undefined, /"1:30" is not a Go duration/], // no YAML 1.1 sexagesimal 90 in Go's yaml.v2
    ['9223372036854775808', undefined, /too large for a Go duration/],
    ['[1s]', undefined, /is a list, not a duration/],
  ])('timeout: %s → %j', (given, written, message) => {
    const { endpoints, notes } = convert(oneEndpoint('name: d', 'url: https://d.example/', `timeout: ${given}`, `backoff: ${given}`));
    expect(endpoints[0]?.spec.timeout).toBe(written);
    expect(endpoints[0]?.spec.backoff).toBe(written);
    if (message) {
      expect(notes).toEqual([expect.stringMatching(new RegExp(`^notifications\\.endpoints\\[0\\] \\(d\\)\\.timeout: .*${message.source}`)), expect.stringMatching(/\.backoff: /)]);
    } else {
      expect(notes).toEqual([]);
    }
  });
});

describe('threshold', () => {
  it.each([
    ['5', 5, undefined],
    ['5.0', 5, undefined],
    ['0', undefined, /is 0: Distribution uses its default \(10\)/],
    ['-3', undefined, /is -3: Distribution uses its default/],
    ['3000000000', 2147483647, /more than the 2147483647 allowed here; written as 2147483647/],
    ['"5"', undefined, /is a string, not a whole number/],
    ['2.5', undefined, /is a number, not a whole number/],
  ])('%s → %j', (given, written, message) => {
    const { endpoints, notes } = convert(oneEndpoint('name: t', 'url: https://t.example/', `threshold: ${given}`));
    expect(endpoints[0]?.spec.threshold).toBe(written);
    expect(notes).toEqual(message ? [expect.stringMatching(new RegExp(`^notifications\\.endpoints\\[0\\] \\(t\\)\\.threshold: .*${message.source}`))] : []);
  });
});

describe('headers', () => {
  const endpointWith = (headers: string) => convert(oneEndpoint('name: h', 'url: https://h.example/', `headers: ${headers}`));

  it('every value goes to the Secret, several values of one name joined with ", "; no value in a note', () => {
    const { secrets, endpoints, notes } = endpointWith(`{Authorization: [Bearer ${TOKEN}], X-Tags: [a, b, c], X-One: ${TOKEN}-single}`);
    expect(secrets[0]?.stringData).toEqual({ Authorization: `Bearer ${TOKEN}`, 'X-Tags': 'a, b, c', 'X-One': `${TOKEN}-single` });
    expect(endpoints[0]?.spec.headers?.map((h) => h.name)).toEqual(['Authorization', 'X-Tags', 'X-One']);
    expect(notes).toEqual([
      'notifications.endpoints[0] (h).headers.X-One: is a single value, not a list (Distribution refuses that: its values are always lists); carried as one value',
      expect.stringMatching(/^notifications\.endpoints\[0\] \(h\)\.headers\.X-Tags: has 3 values: sent as one header line, joined with ", "/),
    ]);
    expect(notes.join('\n')).not.toContain(TOKEN);
  });

  it('values are the text Go reads into a string (YAML 1.1: 0123 and yes stay as written), kept strings through the YAML stream', () => {
    const { secrets } = endpointWith('{X-Code: [0123], X-Flag: [yes], X-Num: [1_000], X-Null: [~, ok], X-Date: [2001-01-01], X-Time: [1:30]}');
    expect(secrets[0]?.stringData).toEqual({ 'X-Code': '0123', 'X-Flag': 'yes', 'X-Num': '1_000', 'X-Null': 'ok', 'X-Date': '2001-01-01', 'X-Time': '1:30' });
  });

  it('refused names are reported and left out, the others kept', () => {
    const { secrets, notes } = endpointWith(`{Content-Type: [text/plain], content-length: ["1"], Host: [x], webhook-id: [y], Webhook-Signature: [z], "X Bad": [v], X-Good: [${TOKEN}]}`);
    expect(secrets[0]?.stringData).toEqual({ 'X-Good': TOKEN });
    expect(notes.map((n) => n.replace('notifications.endpoints[0] (h).', ''))).toEqual([
      ...['Content-Type', 'content-length', 'Host', 'webhook-id', 'Webhook-Signature'].map((name) =>
        `headers.${name}: is set by registry-notifier itself (Content-Type, Content-Length, Host and webhook-* cannot be configured); left out`),
      'headers["X Bad"]: is not a valid header name (an RFC 7230 token of at most 256 characters); left out',
    ]);
  });

  it('names differing in case are one header (merged, reported); values Go would send differently or we cannot hold are reported', () => {
    const { secrets, notes } = endpointWith('{X-A: [one], x-a: [two], X-Empty: [""], X-Blank: ["  "], X-Cyrillic: ["токен"], X-Ctl: ["a\\u0001b"], X-Nested: [[a]], X-Map: {a: b}, X-None: , X-Line: ["a\\nb  "]}');
    expect(secrets[0]?.stringData).toEqual({ 'X-A': 'one, two', 'X-Line': 'a b' });
    expect(notes.map((n) => n.replace('notifications.endpoints[0] (h).', ''))).toEqual([
      'headers.x-a: merged into header X-A (header names are case-insensitive)',
      'headers.X-Empty[0]: is empty: a header value held in a Secret must not be empty; left out',
      'headers.X-Blank[0]: is empty: a header value held in a Secret must not be empty; left out',
      'headers.X-Cyrillic[0]: holds characters a header value cannot carry here (control characters, or beyond Latin-1); left out',
      'headers.X-Ctl[0]: holds characters a header value cannot carry here (control characters, or beyond Latin-1); left out',
      'headers.X-Nested[0]: is not a single value; left out',
      'headers.X-Map: is a mapping, not a list of values; left out',
      'headers.X-None: has no value, so Distribution sends no such header; left out',
      expect.stringMatching(/^headers\.X-A: has 2 values/),
    ]);
  });

  it('header names that make the same Secret key get distinct keys', () => {
    const { secrets, endpoints } = endpointWith('{"X!a": [1], "X#a": [2]}');
    expect(secrets[0]?.stringData).toEqual({ X_a: '1', 'X_a-2': '2' });
    expect(endpoints[0]?.spec.headers?.map((h) => h.valueFrom?.secretKeyRef.key)).toEqual(['X_a', 'X_a-2']);
  });

  it('an endpoint without headers gets no Secret', () => {
    expect(convert(oneEndpoint('name: n', 'url: https://n.example/', 'headers: {}')).secrets).toEqual([]);
  });
});

describe('url', () => {
  const withUrl = (url: string, ...more: string[]) => convert(oneEndpoint('name: u', `url: ${url}`, ...more));

  it.each([
    ['ftp://files.example/drop', /uses ftp:\/\/ \(registry-notifier sends to http:\/\/ and https:\/\/ only\); the endpoint is left out/],
    ['"http://a b.example/"', /holds spaces or control characters; the endpoint is left out/],
    ['"not a url"', /holds spaces/],
    ['nope', /is not a valid URL; the endpoint is left out/],
    ['""', /is missing or not a string; the endpoint is left out/],
    [`https://h.example/${'p'.repeat(2100)}`, /is longer than 2048 characters/],
  ])('%s is refused: reported, and that endpoint left out while the others convert', (url, message) => {
    const yaml = `notifications:\n  endpoints:\n    - {name: bad, url: ${url}}\n    - {name: good, url: "https://good.example/"}\n`;
    const { endpoints, notes } = convert(yaml);
    expect(endpoints.map((e) => e.metadata.name)).toEqual(['good']);
    expect(notes).toEqual([expect.stringMatching(new RegExp(`^notifications\\.endpoints\\[0\\] \\(bad\\)\\.url: ${message.source}`))]);
  });

  it('user-info moves into the Secret as Basic auth, as Go sends it; never shown in a note', () => {
    const { endpoints, secrets, notes } = withUrl(`"https://hook%40user:${TOKEN}%21@hook.example:8443/in"`);
    expect(endpoints[0]?.spec.url).toBe('https://hook.example:8443/in');
    expect(secrets[0]?.stringData).toEqual({ Authorization: `Basic ${Buffer.from(`hook@user:${TOKEN}!`).toString('base64')}` });
    expect(notes).toEqual(['notifications.endpoints[0] (u).url: user-info moved into the Secret as an Authorization header (Basic), as Go\'s HTTP client sends it']);
    expect(notes.join()).not.toContain(TOKEN);
  });

  it('with an Authorization header, user-info is dropped (Go never sends it then)', () => {
    const { endpoints, secrets, notes } = withUrl(`"https://user:${TOKEN}@hook.example/"`, 'headers: {Authorization: [Bearer abc]}');
    expect(endpoints[0]?.spec.url).toBe('https://hook.example/');
    expect(secrets[0]?.stringData).toEqual({ Authorization: 'Bearer abc' });
    expect(notes).toEqual([expect.stringMatching(/url: user-info removed: with an Authorization header configured/)]);
  });

  it('a query string stays (reported, its values masked in the note); an upper-case scheme is written in lower case', () => {
    const { endpoints, notes } = withUrl(`"HTTPS://hook.example/in?token=${TOKEN}"`);
    expect(endpoints[0]?.spec.url).toBe(`https://hook.example/in?token=${TOKEN}`);
    expect(notes).toEqual(['notifications.endpoints[0] (u).url: has a query string, which stays in the NotificationEndpoint as written (https://hook.example/in?token=***); if it holds a token, move it into a header']);
  });
});

describe('ignore, ignoredmediatypes, disabled and unknown fields', () => {
  it('media types and actions carry over; duplicate actions collapse; unknown actions are reported', () => {
    const { endpoints, notes } = convert(oneEndpoint(
      'name: i', 'url: https://i.example/',
      'ignoredmediatypes: [application/octet-stream, "", 7]',
      'ignore: {mediatypes: [application/vnd.oci.image.config.v1+json], actions: [pull, pull, Pull, delete], extra: 1}',
    ));
    expect(endpoints[0]?.spec).toMatchObject({
      ignoredMediaTypes: ['application/octet-stream'],
      ignore: { mediaTypes: ['application/vnd.oci.image.config.v1+json'], actions: ['pull', 'delete'] },
    });
    expect(notes.map((n) => n.replace('notifications.endpoints[0] (i).', ''))).toEqual([
      'ignoredmediatypes[1]: is empty, which cannot be listed here; left out',
      'ignoredmediatypes[2]: is a whole number, not a media type; left out',
      "ignore.extra: is not a field of Distribution's ignore (mediatypes, actions); left out",
      'ignore.actions[2]: is not an action Distribution sends (pull, push, mount, delete; case matters), so it ignored nothing; left out',
    ]);
  });

  it('an actions-only ignore applies here, unlike Distribution before 3.1.0: reported', () => {
    const { endpoints, notes } = convert(oneEndpoint('name: a', 'url: https://a.example/', 'ignore: {actions: [pull]}'));
    expect(endpoints[0]?.spec.ignore).toEqual({ actions: ['pull'] });
    expect(notes).toEqual(['notifications.endpoints[0] (a).ignore.actions: Distribution before 3.1.0 ignored an actions list without media types; here it applies: pull events are not sent']);
  });

  it.each([
    ['true', true, []],
    ['yes', true, []], // YAML 1.1, as Distribution reads it
    ['false', undefined, []],
    ['"maybe"', undefined, ['notifications.endpoints[0] (x).disabled: is a string, not true or false; left out (the endpoint sends)']],
  ])('disabled: %s', (given, disabled, notes) => {
    const converted = convert(oneEndpoint('name: x', 'url: https://x.example/', `disabled: ${given}`));
    expect(converted.endpoints[0]?.spec.disabled).toBe(disabled);
    expect(converted.notes).toEqual(notes);
  });

  it('fields neither Distribution nor we know are reported, in notifications, events and endpoints', () => {
    const yaml = 'notifications:\n  events: {includereferences: false, verbose: true}\n  retries: 3\n  endpoints:\n    - {name: e, url: "https://e.example/", Timeout: 5s, queue: {size: 10}}\n';
    expect(convert(yaml).notes).toEqual([
      "notifications.retries: is not a field of Distribution's notifications (events, endpoints); left out",
      "notifications.events.verbose: is not a field of Distribution's notifications.events; left out",
      'notifications.endpoints[0] (e).Timeout: is not a field of a Distribution endpoint (nor of a NotificationEndpoint); left out',
      'notifications.endpoints[0] (e).queue: is not a field of a Distribution endpoint (nor of a NotificationEndpoint); left out',
    ]);
  });

  it('YAML merge keys and anchors are read as Distribution reads them', () => {
    const yaml = 'common: &common {timeout: 2s, threshold: 3}\nnotifications:\n  endpoints:\n    - {<<: *common, name: m, url: "https://m.example/"}\n';
    expect(convert(yaml).endpoints[0]?.spec).toEqual({ url: 'https://m.example/', timeout: '2s', threshold: 3 });
  });
});

describe('nothing to convert, and files that are no configuration', () => {
  it.each([
    ['version: 0.1\nstorage: {filesystem: {}}\n', 'notifications: none in this file, so there is nothing to convert'],
    ['notifications: {}\n', 'notifications.endpoints: none in this file, so there is nothing to convert'],
    ['notifications: {endpoints: []}\n', 'notifications.endpoints: none in this file, so there is nothing to convert'],
  ])('%j: no objects, one note', (yaml, note) => {
    expect(convert(yaml)).toMatchObject({ objects: [], notes: [note], stream: '' });
  });

  it('an entry that is not a mapping is reported and skipped', () => {
    const { endpoints, notes } = convert('notifications:\n  endpoints:\n    - just a string\n    - {name: ok, url: "https://ok.example/"}\n');
    expect(endpoints.map((e) => e.metadata.name)).toEqual(['ok']);
    expect(notes).toEqual(['notifications.endpoints[0]: is a string, not an endpoint mapping; left out']);
  });

  it.each([
    ['', /holds nothing, not a Distribution configuration/],
    ['# only a comment\n', /holds nothing/],
    ['- a\n- b\n', /holds a list, not a Distribution configuration/],
    ['just text\n', /holds a string/],
    ['notifications: [a]\n', /notifications is a list, not a mapping/],
    ['notifications: {endpoints: {a: 1}}\n', /^notifications\.endpoints is a mapping, not a list$/],
    ['a: [unclosed\n', /^not valid YAML \(/],
    [`notifications:\n  endpoints: []\nnotifications: {x: "${TOKEN}"}\n`, /^not valid YAML \(DUPLICATE_KEY\): Map keys must be unique/],
    [`a: &a [${'x, '.repeat(9)}x]\nb: &b [${'*a, '.repeat(9)}*a]\nc: &c [${'*b, '.repeat(9)}*b]\nd: [${'*c, '.repeat(9)}*c]\n`, /^unreadable YAML: Excessive alias count/],
  ])('%j throws ConfigImportError, whose message holds no source line', (yaml, message) => {
    let caught: unknown;
    try {
      importDistributionConfig(yaml);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigImportError);
    expect(caught).toMatchObject({ name: 'ConfigImportError', code: 'ERR_CONFIG_IMPORT' });
    const text = (caught as Error).message;
    expect(text).toMatch(message);
    expect(text).not.toContain('\n');
    expect(text).not.toContain(TOKEN);
  });
});
