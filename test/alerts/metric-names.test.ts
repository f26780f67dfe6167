// Every PromQL query the chart ships, in the alerts (the rendered PrometheusRule) and in the Grafana dashboard (its
// panels and template variables), names only metrics the service exports: those registered by the real `Metrics`
// class (its registry rendered, with prom-client's default process metrics), their histogram series, and `up`; and
// every dashboard panel keeps the dashboard's $job, $namespace and (for per-endpoint series) $endpoint filters.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics/metrics.ts';
import { CHART, CHART_RENDERER, only, render } from '../packaging/render.ts';
import { skipWithout } from '../support/tools.ts';
import { declaredMetrics, metricNames, queryableNames } from './promql.ts';
import type { RuleGroup } from './rules.ts';

const HERE = import.meta.dirname;
const DASHBOARD = JSON.parse(readFileSync(join(CHART, 'dashboards/registry-notifier.json'), 'utf8')) as Dashboard;
const noRenderer = skipWithout(CHART_RENDERER, 'the check of the alerts\' metric names (it renders the chart)');

interface Panel { title?: string; targets?: { expr?: string }[]; panels?: Panel[] }
interface Dashboard { panels: Panel[]; templating: { list: { name: string; definition?: string; query?: unknown }[] } }

/** Every query of the dashboard: "where: expr". */
function dashboardQueries(dashboard: Dashboard): [string, string][] {
  const queries: [string, string][] = [];
  const walk = (panels: Panel[]): void => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr) queries.push([`panel "${panel.title}"`, target.expr]);
      walk(panel.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query?: string } | undefined)?.query;
    if (variable.definition) queries.push([`variable $${variable.name}`, variable.definition]);
    if (query && query !== variable.definition && variable.name !== 'datasource') queries.push([`variable $${variable.name}`, query]);
  }
  return queries;
}

/** The names the service exports, read from a real Metrics registry with one endpoint known. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = new Metrics({ endpoints: () => [{ name: 'team-a/hook', pending: 0, ready: true }] });
  metrics.listenerFor('team-a/hook');
  const declared = declaredMetrics(await metrics.render());
  return new Set([...queryableNames(declared), 'up']);
}

describe('metric names in PromQL', () => {
  it('tells metric names from functions, keywords, grouping labels, strings, windows, numbers and Grafana variables', () => {
    expect(metricNames('sum by (endpoint, le) (rate(foo_bucket{a="b",c=~"x|y{1}"}[5m])) / on (x) group_left (y) bar_total > 1e3 and absent(up{job="j"}) offset 5m')).toEqual(['foo_bucket', 'bar_total', 'up']);
    expect(metricNames('histogram_quantile(0.99, sum without (pod) (rate(h_bucket{endpoint=~"$endpoint"}[$__rate_interval])))')).toEqual(['h_bucket']);
    expect(metricNames('label_values(registry_notifier_endpoints{job=~"$job"}, namespace)')).toEqual(['registry_notifier_endpoints']);
    expect(metricNames('count(a) by (b) or vector(0) unless c:recorded:rate5m bool == 1')).toEqual(['a', 'c:recorded:rate5m']);
  });

  it('reads the exported names from the real Metrics registry: ours, Distribution\'s and prom-client\'s defaults', async () => {
    const names = await exportedNames();
    for (const name of ['registry_notifications_events_total', 'registry_notifications_pending_total', 'registry_notifier_storage_available',
      'registry_notifier_event_latency_seconds_bucket', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_p99_seconds', 'up']) {
      expect(names, name).toContain(name);
    }
    // Names that do not exist (docs/api.md: 2.x-era names Distribution 3.x never had) are not there.
    expect(names).not.toContain('registry_notifications_pending');
    expect(names).not.toContain('registry_notifier_storage_available_bucket');
  });

  it('the dashboard queries only exported metrics, and shows every metric of ours and Distribution\'s', async () => {
    const names = await exportedNames();
    const queries = dashboardQueries(DASHBOARD);
    expect(queries.length).toBeGreaterThanOrEqual(20);
    const used = new Set<string>();
    for (const [where, expr] of queries) {
      const found = metricNames(expr);
      expect(found.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const name of found) {
        expect(names, `${where} queries ${name}, which the service does not export: ${expr}`).toContain(name);
        used.add(name.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    const ours = [...names].filter((n) => /^registry_notif/.test(n) && !/_(bucket|sum|count)$/.test(n));
    expect(ours.filter((n) => !used.has(n))).toEqual([]);
  });

  it('every panel query keeps the $job and $namespace filters, and $endpoint wherever its series are per endpoint', async () => {
    const metrics = new Metrics({ endpoints: () => [{ name: 'team-a/hook', pending: 0, ready: true }] });
    metrics.listenerFor('team-a/hook');
    // The metrics whose series carry `endpoint` (those the registry shows without an observation; histograms are
    // caught by their `by (endpoint, le)`).
    const perEndpoint = new Set([...(await metrics.render()).matchAll(/^(\w+)\{[^}]*\bendpoint="/gm)].map((m) => m[1]!));
    expect(perEndpoint).toContain('registry_notifier_auto_disabled');
    const panels = dashboardQueries(DASHBOARD).filter(([where]) => where.startsWith('panel '));
    for (const [where, expr] of panels) {
      const byEndpoint = /\bby\s*\([^)]*\bendpoint\b/.test(expr);
      const selectors = [...expr.matchAll(/\b([A-Za-z_:][\w:]*)\{([^}]*)\}/g)];
      expect(selectors.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const [, name, matchers] of selectors) {
        expect(matchers, `${where}: ${name}`).toMatch(/^job=~"\$job",namespace=~"\$namespace"(,|$)/);
        if (byEndpoint || perEndpoint.has(name!)) expect(matchers, `${where}: ${name}`).toContain('endpoint=~"$endpoint"');
      }
    }
  });

  it.skipIf(noRenderer)('the alerts query only exported metrics', async () => {
    const names = await exportedNames();
    const { objects } = await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(HERE, 'values.yaml')] });
    const rules = (only(objects, 'PrometheusRule').spec as { groups: RuleGroup[] }).groups.flatMap((g) => g.rules);
    expect(rules).toHaveLength(10);
    for (const rule of rules) {
      const found = metricNames(rule.expr);
      expect(found.length, rule.alert).toBeGreaterThan(0);
      for (const name of found) expect(names, `${rule.alert} queries ${name}, which the service does not export`).toContain(name);
    }
  });
});
