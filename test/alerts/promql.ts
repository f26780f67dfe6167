// Metric names out of PromQL text (alert expressions, dashboard queries, Grafana's `label_values(...)`), and the
// names a Prometheus text-format exposition declares. Enough of PromQL's lexical rules to tell a metric name from a
// function, a keyword, a label name in a grouping, a string, a duration or a number; not a parser.

// Operators and aggregations are keywords: `sum by (x) (...)` puts `by`, not `(`, after `sum`.
const KEYWORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'atan2', 'inf', 'nan',
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile',
]);

/** The metric names an expression reads, in order of first use. */
export function metricNames(expr: string): string[] {
  const text = expr
    // Grafana's label_values(selector, label): the label is not a metric.
    .replace(/label_values\((.*),\s*[A-Za-z_]\w*\s*\)/g, ' $1 ')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // strings (label values, label_replace arguments)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery windows
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' $1 ') // label lists
    .replace(/\$\{?\w+\}?/g, ' '); // Grafana variables such as $__rate_interval
  const names: string[] = [];
  // A whole identifier, not inside a number (1e3) or a duration (5m), and not a function call.
  for (const match of text.matchAll(/(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    const name = match[1]!;
    if (!KEYWORDS.has(name.toLowerCase()) && !names.includes(name)) names.push(name);
  }
  return names;
}

/** Every name an exposition in the Prometheus text format declares with `# TYPE name type`, with its type. */
export function declaredMetrics(exposition: string): Map<string, string> {
  const declared = new Map<string, string>();
  for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) declared.set(match[1]!, match[2]!);
  return declared;
}

/**
 * The names a query may use for the declared metrics: each name, and for a histogram its `_bucket`, `_sum` and
 * `_count` series (`_sum` and `_count` for a summary).
 */
export function queryableNames(declared: Map<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of declared) {
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`);
  }
  return names;
}
