// The chart's monitoring options beyond the ServiceMonitor: prometheusRule (a PrometheusRule with the README's alerts)
// and grafanaDashboard (a ConfigMap for Grafana's dashboard sidecar). Every option renders and does what its value
// says, the combinations that cannot work fail at render time naming what to set, values.schema.json refuses what
// Prometheus or the CRD would, and the rendered objects pass a server-side dry run on kube-apiserver 1.20 with
// prometheus-operator's PrometheusRule CRD (test/fixtures/crds/). The alerts' behaviour is tested in test/alerts/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { envtestAssets, startCluster, type StartedCluster } from '../support/envtest.ts';
import { skipWithout } from '../support/tools.ts';
import { DryRunClient, droppedFields } from './dry-run.ts';
import { validate } from './json-schema.ts';
import { CHART, CHART_RENDERER, only, render, REPO, tryRender, type Manifest } from './render.ts';
import { defaultValues, mergeValues, SCHEMA } from './values.ts';

const MONITORING = join(import.meta.dirname, 'fixtures/monitoring.values.yaml');
const ALERTS_VALUES = join(REPO, 'test/alerts/values.yaml');
const DASHBOARD = join(CHART, 'dashboards/registry-notifier.json');
const NS = 'registry';
const assets = envtestAssets();
const noRenderer = skipWithout(CHART_RENDERER, 'the chart monitoring tests');

interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
const rulesOf = (objects: Manifest[]): Rule[] =>
  (only(objects, 'PrometheusRule').spec as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const rule = (rules: Rule[], name: string): Rule => {
  const found = rules.find((r) => r.alert === name);
  if (!found) throw new Error(`no alert ${name} in ${rules.map((r) => r.alert).join(', ')}`);
  return found;
};

describe.skipIf(noRenderer)('chart: prometheusRule and grafanaDashboard', () => {
  let objects: Manifest[];

  beforeAll(async () => {
    ({ objects } = await render({ namespace: NS, valuesFiles: [MONITORING] }));
  });

  it('defaults render neither a PrometheusRule nor a dashboard ConfigMap', async () => {
    const defaults = await render({ namespace: NS });
    expect(defaults.objects.filter((o) => o.kind === 'PrometheusRule' || o.kind === 'ConfigMap')).toEqual([]);
  });

  it('the PrometheusRule carries the release labels, the selector labels and annotations, in its namespace', () => {
    const object = only(objects, 'PrometheusRule');
    expect(object.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(object.metadata.name).toBe('rn-registry-notifier');
    expect(object.metadata.namespace).toBe('monitoring');
    expect(object.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack', 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' });
    expect(object.metadata.annotations).toEqual({ 'example.com/owner': 'platform' });
  });

  it('each alert takes its for, severity and thresholds from the values, an alert turned off is gone', () => {
    const rules = rulesOf(objects);
    expect(rules.map((r) => [r.alert, r.for, r.labels.severity])).toEqual([
      ['RegistryNotifierEndpointFailing', '30m', 'critical'],
      ['RegistryNotifierEndpointAutoDisabled', '0m', 'critical'],
      ['RegistryNotifierPendingGrowing', '1h', 'critical'],
      ['RegistryNotifierPendingNearLimit', '1m', 'critical'],
      ['RegistryNotifierEventsDeadLettered', '15m', 'critical'],
      ['RegistryNotifierIngestUnavailable', '15m', 'warning'],
      ['RegistryNotifierIngestUnauthorized', '30m', 'critical'],
      ['RegistryNotifierDown', '10m', 'warning'],
      ['RegistryNotifierStorageUnavailable', '5m', 'warning'],
    ]);
    for (const r of rules) {
      expect(r.labels, r.alert).toEqual({ severity: r.labels.severity, team: 'platform' });
      expect(r.annotations.runbook_url, r.alert).toBe(`https://wiki.example.com/runbooks/registry-notifier#${r.alert.toLowerCase()}`);
      expect(Object.keys(r.annotations).sort(), r.alert).toEqual(['description', 'runbook_url', 'summary']);
      // Every selector is the release's, every window the configured one.
      const selectors = [...r.expr.matchAll(/\b(up|registry_notif\w+)\{([^}]*)\}/g)];
      expect(selectors.length, r.alert).toBeGreaterThan(0);
      for (const [, , matchers] of selectors) expect(matchers, r.alert).toMatch(/^job="notifier",namespace="registry",cluster="eu-1"(,|$)/);
      for (const [window] of r.expr.matchAll(/\[[^\]]*\]/g)) expect(window, r.alert).toBe('[2m]');
      // The description says how long (dead letters: over which window, as they fire at once by default).
      expect(r.annotations.description, r.alert).toContain(r.alert === 'RegistryNotifierEventsDeadLettered' ? 'in the last 2m' : `for ${r.for}`);
    }
    expect(rule(rules, 'RegistryNotifierPendingGrowing').expr).toContain('}) > 1000\n');
    // 0.5 × maxPendingPerEndpoint 20000.
    expect(rule(rules, 'RegistryNotifierPendingNearLimit').expr).toMatch(/\) > 10000$/);
    expect(rule(rules, 'RegistryNotifierPendingNearLimit').annotations.description).toContain('above 50% of maxPendingPerEndpoint (20000) for 1m');
    expect(rule(rules, 'RegistryNotifierIngestUnavailable').expr).toMatch(/\n> 0\.01$/);
    expect(rule(rules, 'RegistryNotifierIngestUnauthorized').expr).toMatch(/\) > 0\.1$/);
  });

  it('without a seriesSelector, alerts select what the chart\'s ServiceMonitor scrapes: job from the Service\'s name label, the release namespace', async () => {
    const { objects: own } = await render({ release: 'registry-notifier', namespace: NS, valuesFiles: [ALERTS_VALUES] });
    const monitor = only(own, 'ServiceMonitor').spec as { jobLabel: string };
    const service = only(own, 'Service');
    const job = service.metadata.labels?.[monitor.jobLabel];
    expect(job).toBe('registry-notifier');
    const rules = rulesOf(own);
    expect(rules).toHaveLength(10);
    for (const r of rules) {
      for (const [, , matchers] of r.expr.matchAll(/\b(up|registry_notif\w+)\{([^}]*)\}/g)) expect(matchers, r.alert).toMatch(/^job="registry-notifier",namespace="registry"(,|$)/);
    }
    const renamed = rulesOf((await render({ namespace: NS, valuesFiles: [ALERTS_VALUES], set: { nameOverride: 'notifier' } })).objects);
    expect(rule(renamed, 'RegistryNotifierDown').expr).toContain('up{job="notifier",namespace="registry"}');
    // A scrape of your own: the ServiceMonitor may be off once the selector is given.
    const custom = await render({ namespace: NS, set: { 'prometheusRule.enabled': true, 'prometheusRule.seriesSelector': 'job="mine"' } });
    expect(custom.objects.some((o) => o.kind === 'ServiceMonitor')).toBe(false);
    expect(rule(rulesOf(custom.objects), 'RegistryNotifierDown').expr).toContain('absent(up{job="mine"})');
  });

  it('the dashboard ConfigMap holds exactly dashboards/registry-notifier.json, with the sidecar\'s label and the folder annotation', () => {
    const map = only(objects, 'ConfigMap');
    expect(map.metadata.name).toBe('rn-registry-notifier-dashboard');
    expect(map.metadata.namespace).toBe('monitoring');
    expect(map.metadata.labels).toMatchObject({ 'example.com/grafana-dashboard': 'registry', team: 'platform', 'app.kubernetes.io/instance': 'rn' });
    expect(map.metadata.annotations).toEqual({ grafana_folder: 'Registry' });
    const data = map.data as Record<string, string>;
    expect(Object.keys(data)).toEqual(['registry-notifier.json']);
    expect(data['registry-notifier.json']).toBe(readFileSync(DASHBOARD, 'utf8').trimEnd());
  });

  it('the default dashboard label is the one kube-prometheus-stack\'s sidecar looks for', async () => {
    const { objects: own } = await render({ namespace: NS, set: { 'grafanaDashboard.enabled': true } });
    const map = only(own, 'ConfigMap');
    expect(map.metadata.labels?.grafana_dashboard).toBe('1');
    expect(map.metadata.namespace).toBe(NS);
    const dashboard = JSON.parse((map.data as Record<string, string>)['registry-notifier.json']!) as { uid: string; templating: { list: { name: string }[] } };
    expect(dashboard.uid).toBe('registry-notifier');
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'namespace', 'endpoint']);
  });

  it('combinations that cannot work fail at render time and say exactly what to set', async () => {
    const cases: [Record<string, string | number | boolean>, string][] = [
      [{ 'prometheusRule.enabled': true }, 'prometheusRule.enabled needs registry-notifier\'s series in Prometheus: set serviceMonitor.enabled=true, or set prometheusRule.seriesSelector'],
      [{ 'serviceMonitor.enabled': true, 'prometheusRule.enabled': true, 'prometheusRule.rateWindow': '1m' }, 'prometheusRule.rateWindow=1m holds fewer than 4 scrapes of serviceMonitor.interval=30s: set prometheusRule.rateWindow to at least 4 × the interval'],
      [{ 'serviceMonitor.enabled': true, 'serviceMonitor.interval': '1m30s', 'prometheusRule.enabled': true }, 'prometheusRule.rateWindow=5m holds fewer than 4 scrapes of serviceMonitor.interval=1m30s'],
      [
        Object.fromEntries([['serviceMonitor.enabled', true], ['prometheusRule.enabled', true],
          ...['endpointFailing', 'endpointAutoDisabled', 'pendingGrowing', 'pendingNearLimit', 'deadLettered', 'discarded', 'ingestUnavailable', 'ingestUnauthorized', 'down', 'storageUnavailable']
            .map((a) => [`prometheusRule.alerts.${a}.enabled`, false])]) as Record<string, boolean>,
        'every prometheusRule.alerts.*.enabled is false: enable at least one alert, or set prometheusRule.enabled=false',
      ],
      [{ 'grafanaDashboard.enabled': true, 'grafanaDashboard.labels': '{grafana_dashboard: "0"}' }, 'grafanaDashboard.labels must not contain grafana_dashboard, the sidecar\'s label: set its value with grafanaDashboard.labelValue'],
    ];
    for (const [set, message] of cases) {
      const result = await tryRender({ namespace: NS, set });
      expect(result.ok, JSON.stringify(set)).toBe(false);
      if (!result.ok) expect(result.error, JSON.stringify(set)).toContain(message);
    }
    // Exactly 4 scrapes is enough.
    expect((await tryRender({ namespace: NS, set: { 'serviceMonitor.enabled': true, 'serviceMonitor.interval': '15s', 'prometheusRule.enabled': true, 'prometheusRule.rateWindow': '1m' } })).ok).toBe(true);
  });
});

describe('chart: values.schema.json for prometheusRule and grafanaDashboard', () => {
  const check = (override: Record<string, unknown>): string[] =>
    validate(mergeValues(defaultValues(), override), SCHEMA).map((e) => `${e.path}: ${e.message}`);

  it('accepts the every-option file', () => {
    expect(check(parse(readFileSync(MONITORING, 'utf8')) as Record<string, unknown>)).toEqual([]);
  });

  it('refuses what Prometheus or the CRD would refuse, unknown keys and wrong types, naming the path', () => {
    const alert = (name: string, value: Record<string, unknown>): Record<string, unknown> => ({ prometheusRule: { alerts: { [name]: value } } });
    const cases: [Record<string, unknown>, string][] = [
      [alert('endpointFailing', { for: '10 m' }), '$.prometheusRule.alerts.endpointFailing.for: "10 m" does not match'],
      [alert('endpointFailing', { for: '1.5m' }), '$.prometheusRule.alerts.endpointFailing.for: "1.5m" does not match'],
      [alert('endpointFailing', { for: '' }), '$.prometheusRule.alerts.endpointFailing.for'],
      [alert('down', { severity: 'page' }), '$.prometheusRule.alerts.down.severity: "page" is not one of'],
      [alert('down', { threshold: 1 }), '$.prometheusRule.alerts.down.threshold: unknown key "threshold"'],
      [alert('surprise', {}), '$.prometheusRule.alerts.surprise: unknown key "surprise"'],
      [alert('pendingNearLimit', { ratio: 1.5 }), '$.prometheusRule.alerts.pendingNearLimit.ratio: 1.5 is above the maximum 1'],
      [alert('ingestUnavailable', { ratio: 0 }), '$.prometheusRule.alerts.ingestUnavailable.ratio'],
      [alert('ingestUnauthorized', { perSecond: '1' }), '$.prometheusRule.alerts.ingestUnauthorized.perSecond: expected number, got string'],
      [alert('pendingGrowing', { minimum: -1 }), '$.prometheusRule.alerts.pendingGrowing.minimum: -1 is below the minimum 0'],
      [{ prometheusRule: { rateWindow: 300 } }, '$.prometheusRule.rateWindow: expected string, got integer'],
      [{ prometheusRule: { runbookBaseUrl: 'wiki/runbooks' } }, '$.prometheusRule.runbookBaseUrl: "wiki/runbooks" does not match'],
      [{ prometheusRule: { ruleLabels: {} } }, '$.prometheusRule.ruleLabels: unknown key "ruleLabels"'],
      [{ grafanaDashboard: { labelValue: 1 } }, '$.grafanaDashboard.labelValue: expected string, got integer'],
      [{ grafanaDashboard: { labelKey: 'not a label' } }, '$.grafanaDashboard.labelKey: "not a label" does not match'],
      [{ grafanaDashboard: { folder: 'Registry' } }, '$.grafanaDashboard.folder: unknown key "folder"'],
    ];
    for (const [override, message] of cases) expect(check(override).join('\n'), JSON.stringify(override)).toContain(message);
  });
});

describe.skipIf(!assets || noRenderer)('chart: the PrometheusRule and the dashboard ConfigMap pass a server-side dry run (kube-apiserver 1.20)', () => {
  let env: StartedCluster;
  let client: DryRunClient;

  beforeAll(async () => {
    env = await startCluster({ crds: join(REPO, 'test/fixtures/crds') }); // prometheus-operator v0.71.0's PrometheusRule
    client = new DryRunClient(env.cluster);
    for (const name of [NS, 'monitoring']) await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  });

  afterAll(() => env?.stop(() => client?.close()));

  const dryRun = async (objects: Manifest[]): Promise<string[]> => {
    const problems: string[] = [];
    for (const object of objects) {
      const result = await client.dryRunCreate(object);
      if (result.status !== 201) problems.push(`${result.object}: ${result.status} ${result.message}`);
      else for (const path of droppedFields(object, result.stored)) problems.push(`${result.object}: the server dropped or changed ${path}`);
    }
    return problems;
  };
  const monitoringObjects = (objects: Manifest[]): Manifest[] => objects.filter((o) => o.kind === 'PrometheusRule' || o.kind === 'ConfigMap');

  it('every option on, and the defaults with the alerts on', async () => {
    const every = monitoringObjects((await render({ namespace: NS, valuesFiles: [MONITORING] })).objects);
    expect(every.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PrometheusRule']);
    expect(await dryRun(every)).toEqual([]);
    const alerts = monitoringObjects((await render({ release: 'registry-notifier', namespace: NS, valuesFiles: [ALERTS_VALUES], set: { 'grafanaDashboard.enabled': true } })).objects);
    expect(await dryRun(alerts)).toEqual([]);
  });

  it('a rule the CRD refuses is refused (the dry run really validates)', async () => {
    const object = structuredClone(only((await render({ namespace: NS, valuesFiles: [ALERTS_VALUES] })).objects, 'PrometheusRule'));
    (object.spec as { groups: { rules: { for: string }[] }[] }).groups[0]!.rules[0]!.for = '10 minutes';
    const result = await client.dryRunCreate(object);
    expect(result.status).toBe(422);
    expect(result.message).toContain('for');
  });
});
