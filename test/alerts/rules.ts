// What the alert tests read: Prometheus rule groups (the PrometheusRule's spec.groups) and the anchors GitHub gives
// a Markdown file's headings, which the alerts' runbook_url must point at.

/** One rule of a group: an alert (or a recording rule, which the chart has none of). */
export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A rule group, as in a Prometheus rules file and a PrometheusRule's spec.groups. */
export interface RuleGroup {
  name: string;
  rules: Rule[];
}

/**
 * The anchors GitHub makes for the headings of a Markdown text: lower case, punctuation other than `-` and `_` removed,
 * spaces as `-`, a repeated anchor suffixed `-1`, `-2`... Lines inside fenced code blocks are not headings.
 */
export function githubAnchors(markdown: string): string[] {
  const anchors: string[] = [];
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.push(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}
